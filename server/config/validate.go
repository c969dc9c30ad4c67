package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// problems collects validation errors for one Config.
type problems struct {
	c    *Config
	errs []error
}

// add records a problem with option id. msg should name the flag; where
// the value came from a source, that is appended.
func (p *problems) add(id optID, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if from := p.c.origin[id]; from != "" {
		msg += " (set by " + from + ")"
	}
	p.errs = append(p.errs, &Error{Flag: flagName(id), Msg: msg})
}

func flagName(id optID) string {
	for _, o := range optionTable() {
		if o.id == id {
			return o.name
		}
	}
	return ""
}

// Validate reports every setting or combination of settings that cannot
// work, each as an *Error naming the flag to fix, joined with errors.Join.
// It does not change c; call Resolve first for a hand-built Config.
func (c *Config) Validate() error {
	p := &problems{c: c}
	p.member()
	p.urls()
	p.cluster()
	p.raft()
	p.limits()
	p.logging()
	return errors.Join(p.errs...)
}

func (p *problems) member() {
	c := p.c
	switch {
	case c.Name == "":
		p.add(optName, "--name must not be empty")
	case strings.ContainsAny(c.Name, ",="):
		p.add(optName, "--name %q must not contain ',' or '=' (they separate --initial-cluster entries)", c.Name)
	}
	if c.DataDir == "" {
		p.add(optDataDir, "--data-dir must not be empty")
	}
	if c.WALDir == "" {
		p.add(optWALDir, "--wal-dir must not be empty (leave it unset for <data-dir>/member/wal)")
	}
	if c.InitialClusterToken == "" {
		p.add(optInitialClusterToken, "--initial-cluster-token must not be empty")
	}
	if c.InitialClusterState != ClusterStateNew && c.InitialClusterState != ClusterStateExisting {
		p.add(optInitialClusterState, "--initial-cluster-state %q must be %q (bootstrap a cluster) or %q (join a running one)",
			c.InitialClusterState, ClusterStateNew, ClusterStateExisting)
	}
}

func (p *problems) urls() {
	lists := []struct {
		id   optID
		flag string
		us   []url.URL
	}{
		{optListenClientURLs, "--listen-client-urls", p.c.ListenClientURLs},
		{optAdvertiseClientURLs, "--advertise-client-urls", p.c.AdvertiseClientURLs},
		{optListenPeerURLs, "--listen-peer-urls", p.c.ListenPeerURLs},
		{optInitialAdvertisePeerURLs, "--initial-advertise-peer-urls", p.c.InitialAdvertisePeerURLs},
	}
	for _, l := range lists {
		if len(l.us) == 0 {
			p.add(l.id, "%s must list at least one URL, like %s", l.flag, DefaultClientURL)
		}
		seen := map[string]bool{}
		for _, u := range l.us {
			if msg := checkURL(u); msg != "" {
				p.add(l.id, "%s: %s", l.flag, msg)
			}
			if s := u.String(); seen[s] {
				p.add(l.id, "%s lists %s twice", l.flag, s)
			} else {
				seen[s] = true
			}
		}
	}
}

// checkURL returns what is wrong with u as a member URL, or "".
func checkURL(u url.URL) string {
	s := u.String()
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		if u.Opaque != "" || u.Scheme == "" {
			return fmt.Sprintf("%q has no http:// or https:// scheme: write it as http://host:port", s)
		}
		return fmt.Sprintf("%q has scheme %q: use http or https", s, u.Scheme)
	case u.Hostname() == "":
		return fmt.Sprintf("%q has no host: write it as %s://host:port", s, u.Scheme)
	case u.Port() == "":
		return fmt.Sprintf("%q has no port: write it as %s://%s:port", s, u.Scheme, u.Host)
	case u.Path != "" || u.RawPath != "":
		return fmt.Sprintf("%q has a path (%q): remove it, a member URL is scheme://host:port", s, u.Path)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || u.User != nil:
		return fmt.Sprintf("%q has a query, fragment or user info: remove it", s)
	}
	if n, err := strconv.Atoi(u.Port()); err != nil || n > 65535 {
		return fmt.Sprintf("%q has port %q: use 0 to 65535", s, u.Port())
	}
	return ""
}

func (p *problems) cluster() {
	c := p.c
	if len(c.InitialCluster) == 0 {
		p.add(optInitialCluster, "--initial-cluster is empty: give name=peer-url for every initial member")
		return
	}
	names := map[string]bool{}
	owner := map[string]string{} // peer URL -> member name
	for _, m := range c.InitialCluster {
		switch {
		case m.Name == "":
			p.add(optInitialCluster, "--initial-cluster has a member without a name: write name=peer-url")
		case names[m.Name]:
			p.add(optInitialCluster, "--initial-cluster names member %q twice: give each member a different name", m.Name)
		}
		names[m.Name] = true
		if len(m.PeerURLs) == 0 {
			p.add(optInitialCluster, "--initial-cluster member %q has no peer URL", m.Name)
		}
		for _, u := range m.PeerURLs {
			if msg := checkURL(u); msg != "" {
				p.add(optInitialCluster, "--initial-cluster member %q: %s", m.Name, msg)
			}
			s := u.String()
			if prev, dup := owner[s]; dup {
				p.add(optInitialCluster, "--initial-cluster gives peer URL %s to both %q and %q: each member needs its own", s, prev, m.Name)
				continue
			}
			owner[s] = m.Name
		}
	}
	if c.Name == "" {
		return
	}
	self, ok := c.Self()
	if !ok {
		p.add(optInitialCluster, "member %q is not in --initial-cluster %q: add %s=<peer-url> or fix --name",
			c.Name, c.InitialClusterString(), c.Name)
		return
	}
	if !sameURLs(self.PeerURLs, c.InitialAdvertisePeerURLs) {
		p.add(optInitialAdvertisePeerURLs, "--initial-advertise-peer-urls %q disagrees with member %q in --initial-cluster (%q): make them list the same URLs",
			formatURLs(c.InitialAdvertisePeerURLs), c.Name, formatURLs(self.PeerURLs))
	}
}

// sameURLs reports whether a and b hold the same URLs in any order.
func sameURLs(a, b []url.URL) bool {
	as, bs := strings.Split(formatURLs(a), ","), strings.Split(formatURLs(b), ",")
	slices.Sort(as)
	slices.Sort(bs)
	return slices.Equal(slices.Compact(as), slices.Compact(bs))
}

// ms formats d as the flags take it.
func ms(d time.Duration) string {
	if d%time.Millisecond == 0 {
		return strconv.FormatInt(d.Milliseconds(), 10)
	}
	return d.String()
}

func (p *problems) raft() {
	c := p.c
	hb, et := c.HeartbeatInterval, c.ElectionTimeout
	if hb <= 0 {
		p.add(optHeartbeatInterval, "--heartbeat-interval must be more than 0 ms (got %s)", ms(hb))
	} else if et < MinElectionHeartbeat*hb {
		p.add(optElectionTimeout, "--election-timeout (%s ms) must be at least %d times --heartbeat-interval (%s ms): raise it to %s or more",
			ms(et), MinElectionHeartbeat, ms(hb), ms(MinElectionHeartbeat*hb))
	}
	if et > MaxElectionTimeout {
		p.add(optElectionTimeout, "--election-timeout must be at most %s ms (got %s)", ms(MaxElectionTimeout), ms(et))
	}
	if c.SnapshotCount == 0 {
		p.add(optSnapshotCount, "--snapshot-count must be more than 0")
	}
}

func (p *problems) limits() {
	c := p.c
	if c.QuotaBackendBytes <= 0 || c.QuotaBackendBytes > MaxQuotaBackendBytes {
		p.add(optQuotaBackendBytes, "--quota-backend-bytes must be from 1 to %d (100 GiB) (got %d)",
			int64(MaxQuotaBackendBytes), c.QuotaBackendBytes)
	}
	if c.LatestCacheBytes < 0 || c.LatestCacheBytes > MaxLatestCacheBytes {
		p.add(optLatestCacheBytes, "--latest-cache-bytes must be from 0 (off) to %d (64 GiB) (got %d)",
			int64(MaxLatestCacheBytes), c.LatestCacheBytes)
	}
	if c.MaxRequestBytes == 0 || c.MaxRequestBytes > MaxMaxRequestBytes {
		p.add(optMaxRequestBytes, "--max-request-bytes must be from 1 to %d (64 MiB) (got %d)",
			MaxMaxRequestBytes, c.MaxRequestBytes)
	}
	if c.WatchProgressNotifyInterval <= 0 {
		p.add(optWatchProgressNotifyInterval, "--watch-progress-notify-interval must be positive (got %s)", c.WatchProgressNotifyInterval)
	}
	if c.CorruptCheckTime < 0 {
		p.add(optCorruptCheckTime, "--corrupt-check-time must not be negative (got %s)", c.CorruptCheckTime)
	}
}

func (p *problems) logging() {
	c := p.c
	switch c.LogLevel {
	case slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError:
	default:
		p.add(optLogLevel, "--log-level %s must be debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != LogFormatText && c.LogFormat != LogFormatJSON {
		p.add(optLogFormat, "--log-format %q must be %q or %q", c.LogFormat, LogFormatText, LogFormatJSON)
	}
	if c.GRPCServer != GRPCServerLean && c.GRPCServer != GRPCServerGRPCGo {
		p.add(optGRPCServer, "--grpc-server %q must be %q or %q", c.GRPCServer, GRPCServerLean, GRPCServerGRPCGo)
	}
}
