package config

import (
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// optID indexes the options that can come from every source.
type optID int

const (
	optName optID = iota
	optDataDir
	optWALDir
	optListenClientURLs
	optAdvertiseClientURLs
	optListenPeerURLs
	optInitialAdvertisePeerURLs
	optInitialCluster
	optInitialClusterState
	optInitialClusterToken
	optHeartbeatInterval
	optElectionTimeout
	optSnapshotCount
	optQuotaBackendBytes
	optMaxRequestBytes
	optLatestCacheBytes
	optWatchProgressNotifyInterval
	optCorruptCheckTime
	optLogLevel
	optLogFormat
	optEnablePprof
	optGRPCServer
	numOptions
)

// Flags that are not Config fields.
const (
	flagConfigFile = "config-file"
	flagVersion    = "version"
	flagHelp       = "help"
	envPrefix      = "CAIRN_"
)

// option describes one setting: its flag/YAML name, how help shows it, and
// how to read it from and format it back to text.
type option struct {
	id    optID
	name  string // flag name without dashes; also the YAML key
	typ   string // value kind shown in help
	list  bool   // a YAML sequence is accepted and joined with commas
	def   string // default shown in help when not the formatted Default()
	usage string
	set   func(c *Config, v string) error
	get   func(c *Config) string
}

// optionTable returns the options in help order. It is built per call so
// the package holds no mutable state.
func optionTable() []option {
	return []option{
		{optName, "name", "string", false, "", "human-readable name of this member",
			func(c *Config, v string) error { c.Name = v; return nil },
			func(c *Config) string { return c.Name }},
		{optDataDir, "data-dir", "path", false, "<name>.cairn", "directory for all of this member's data",
			func(c *Config, v string) error { c.DataDir = v; return nil },
			func(c *Config) string { return c.DataDir }},
		{optWALDir, "wal-dir", "path", false, "<data-dir>/member/wal", "directory for the write-ahead log",
			func(c *Config, v string) error { c.WALDir = v; return nil },
			func(c *Config) string { return c.WALDir }},
		urlOption(optListenClientURLs, "listen-client-urls", "URLs to listen on for clients",
			func(c *Config) *[]url.URL { return &c.ListenClientURLs }),
		urlOption(optAdvertiseClientURLs, "advertise-client-urls", "client URLs this member tells the cluster and clients",
			func(c *Config) *[]url.URL { return &c.AdvertiseClientURLs }),
		urlOption(optListenPeerURLs, "listen-peer-urls", "URLs to listen on for other members",
			func(c *Config) *[]url.URL { return &c.ListenPeerURLs }),
		urlOption(optInitialAdvertisePeerURLs, "initial-advertise-peer-urls", "peer URLs this member tells the cluster",
			func(c *Config) *[]url.URL { return &c.InitialAdvertisePeerURLs }),
		{optInitialCluster, "initial-cluster", "name=url,...", true, "<name>=<initial-advertise-peer-urls>",
			"members at bootstrap; repeat a name to give it several URLs",
			func(c *Config, v string) (err error) { c.InitialCluster, err = parseCluster(v); return err },
			func(c *Config) string { return c.InitialClusterString() }},
		{optInitialClusterState, "initial-cluster-state", "new|existing", false, "", "new to bootstrap a cluster, existing to join a running one",
			func(c *Config, v string) error { c.InitialClusterState = v; return nil },
			func(c *Config) string { return c.InitialClusterState }},
		{optInitialClusterToken, "initial-cluster-token", "string", false, "", "token that keeps clusters with the same peer URLs apart",
			func(c *Config, v string) error { c.InitialClusterToken = v; return nil },
			func(c *Config) string { return c.InitialClusterToken }},
		msOption(optHeartbeatInterval, "heartbeat-interval", "milliseconds between leader heartbeats (one raft tick)",
			func(c *Config) *time.Duration { return &c.HeartbeatInterval }),
		msOption(optElectionTimeout, "election-timeout", "milliseconds without a leader before a follower calls an election",
			func(c *Config) *time.Duration { return &c.ElectionTimeout }),
		{optSnapshotCount, "snapshot-count", "count", false, "", "applied entries between snapshots",
			func(c *Config, v string) (err error) {
				c.SnapshotCount, err = strconv.ParseUint(v, 10, 64)
				return intErr(err)
			},
			func(c *Config) string { return strconv.FormatUint(c.SnapshotCount, 10) }},
		{optQuotaBackendBytes, "quota-backend-bytes", "bytes", false, "", "database size that raises the space alarm and stops writes",
			func(c *Config, v string) (err error) {
				c.QuotaBackendBytes, err = strconv.ParseInt(v, 10, 64)
				return intErr(err)
			},
			func(c *Config) string { return strconv.FormatInt(c.QuotaBackendBytes, 10) }},
		{optMaxRequestBytes, "max-request-bytes", "bytes", false, "", "largest client request accepted",
			func(c *Config, v string) error {
				n, err := strconv.ParseUint(v, 10, strconv.IntSize)
				c.MaxRequestBytes = uint(n)
				return intErr(err)
			},
			func(c *Config) string { return strconv.FormatUint(uint64(c.MaxRequestBytes), 10) }},
		{optLatestCacheBytes, "latest-cache-bytes", "bytes", false, "",
			"memory for the newest versions of recently written keys (their metadata, and their values where room is left), which spares a put the store lookup of its previous version; 0 turns the cache off",
			func(c *Config, v string) (err error) {
				c.LatestCacheBytes, err = strconv.ParseInt(v, 10, 64)
				return intErr(err)
			},
			func(c *Config) string { return strconv.FormatInt(c.LatestCacheBytes, 10) }},
		{optWatchProgressNotifyInterval, "watch-progress-notify-interval", "duration", false, "",
			"period of progress notifications to watches that ask for them (e.g. 10m; integer nanoseconds also accepted)",
			func(c *Config, v string) (err error) {
				c.WatchProgressNotifyInterval, err = parseDuration(v)
				return err
			},
			func(c *Config) string { return c.WatchProgressNotifyInterval.String() }},
		{optCorruptCheckTime, "corrupt-check-time", "duration", false, "",
			"period of the leader's comparison of every member's store hash (CORRUPT alarm on mismatch); 0 disables",
			func(c *Config, v string) (err error) {
				c.CorruptCheckTime, err = parseDuration(v)
				return err
			},
			func(c *Config) string { return c.CorruptCheckTime.String() }},
		{optLogLevel, "log-level", "level", false, "", "least severe messages logged: debug, info, warn or error",
			func(c *Config, v string) (err error) { c.LogLevel, err = parseLevel(v); return err },
			func(c *Config) string { return levelName(c.LogLevel) }},
		{optLogFormat, "log-format", "text|json", false, "", "log as text or as one JSON object per line",
			func(c *Config, v string) error { c.LogFormat = strings.ToLower(v); return nil },
			func(c *Config) string { return c.LogFormat }},
		{optEnablePprof, "enable-pprof", "bool", false, "", "serve Go runtime profiles under /debug/pprof/ on the client URLs",
			func(c *Config, v string) (err error) {
				c.EnablePprof, err = strconv.ParseBool(v)
				if err != nil {
					return fmt.Errorf("not true or false: %q", v)
				}
				return nil
			},
			func(c *Config) string { return strconv.FormatBool(c.EnablePprof) }},
		{optGRPCServer, "grpc-server", "lean|grpc-go", false, "", "the gRPC server transport: lean (cairn's own, internal/h2rpc) or grpc-go",
			func(c *Config, v string) error { c.GRPCServer = strings.ToLower(v); return nil },
			func(c *Config) string { return c.GRPCServer }},
	}
}

func urlOption(id optID, name, usage string, field func(*Config) *[]url.URL) option {
	return option{id, name, "urls", true, "", "comma-separated " + usage,
		func(c *Config, v string) (err error) { *field(c), err = parseURLs(v); return err },
		func(c *Config) string { return formatURLs(*field(c)) }}
}

func msOption(id optID, name, usage string, field func(*Config) *time.Duration) option {
	return option{id, name, "ms", false, "", usage,
		func(c *Config, v string) (err error) { *field(c), err = parseMillis(v); return err },
		func(c *Config) string { return strconv.FormatInt(field(c).Milliseconds(), 10) }}
}

// envName is the environment variable for flag name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func intErr(err error) error {
	if err == nil {
		return nil
	}
	if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
		return fmt.Errorf("%q is out of range", ne.Num)
	}
	if ne, ok := err.(*strconv.NumError); ok {
		return fmt.Errorf("%q is not a whole non-negative number", ne.Num)
	}
	return err
}

// parseMillis reads an integer number of milliseconds. Negative values are
// accepted here so that Validate reports them with the option's limits.
func parseMillis(v string) (time.Duration, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		if d, derr := time.ParseDuration(v); derr == nil {
			return 0, fmt.Errorf("%q: give whole milliseconds, e.g. %d", v, d.Milliseconds())
		}
		return 0, fmt.Errorf("%q is not a whole number of milliseconds", v)
	}
	if n > math.MaxInt64/int64(time.Millisecond) || n < math.MinInt64/int64(time.Millisecond) {
		return 0, fmt.Errorf("%q milliseconds is out of range", v)
	}
	return time.Duration(n) * time.Millisecond, nil
}

// parseDuration reads a Go duration ("10m") or, as etcd's environment
// variables take it, an integer number of nanoseconds.
func parseDuration(v string) (time.Duration, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return d, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (e.g. 10m) or whole nanoseconds", v)
	}
	return time.Duration(n), nil
}

type namedLevel struct {
	name  string
	level slog.Level
}

// levelNames lists the accepted --log-level values.
func levelNames() [4]namedLevel {
	return [4]namedLevel{{"debug", slog.LevelDebug}, {"info", slog.LevelInfo}, {"warn", slog.LevelWarn}, {"error", slog.LevelError}}
}

func parseLevel(v string) (slog.Level, error) {
	for _, l := range levelNames() {
		if strings.EqualFold(v, l.name) {
			return l.level, nil
		}
	}
	return 0, fmt.Errorf("%q is not one of debug, info, warn, error", v)
}

func levelName(l slog.Level) string {
	for _, n := range levelNames() {
		if n.level == l {
			return n.name
		}
	}
	return l.String()
}

// splitList splits a comma-separated list, trimming spaces around items.
// An empty or all-space string is an empty list; an empty item is an error.
func splitList(v string) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	items := strings.Split(v, ",")
	for i := range items {
		items[i] = strings.TrimSpace(items[i])
		if items[i] == "" {
			return nil, fmt.Errorf("%q has an empty item: remove the extra comma", v)
		}
	}
	return items, nil
}

// parseURLs reads a comma-separated URL list. Only syntax is checked here;
// Validate checks scheme, host, port and path.
func parseURLs(v string) ([]url.URL, error) {
	items, err := splitList(v)
	if err != nil {
		return nil, err
	}
	us := make([]url.URL, 0, len(items))
	for _, s := range items {
		u, err := parseURL(s)
		if err != nil {
			return nil, err
		}
		us = append(us, u)
	}
	return us, nil
}

func parseURL(s string) (url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		if !strings.Contains(s, "://") {
			return url.URL{}, fmt.Errorf("%q is not a URL: write it as http://host:port", s)
		}
		return url.URL{}, fmt.Errorf("%q is not a URL: %v", s, unwrapURLError(err))
	}
	return *u, nil
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// parseCluster reads name=url,name=url. Entries with the same name are
// merged into one member, as etcd does; members keep first-seen order.
func parseCluster(v string) ([]Member, error) {
	items, err := splitList(v)
	if err != nil {
		return nil, err
	}
	var ms []Member
	index := map[string]int{}
	for _, item := range items {
		name, raw, ok := strings.Cut(item, "=")
		name, raw = strings.TrimSpace(name), strings.TrimSpace(raw)
		if !ok || name == "" || raw == "" {
			return nil, fmt.Errorf("entry %q is not name=peer-url", item)
		}
		u, err := parseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("entry %q: %w", item, err)
		}
		i, seen := index[name]
		if !seen {
			i = len(ms)
			index[name] = i
			ms = append(ms, Member{Name: name})
		}
		ms[i].PeerURLs = append(ms[i].PeerURLs, u)
	}
	return ms, nil
}
