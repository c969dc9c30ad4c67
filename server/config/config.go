// Package config owns the settings of one cairn member: the Config struct,
// its defaults, where its values come from, and the checks that refuse a
// configuration that cannot work.
//
// # Sources and precedence
//
// Every option has one name, used three ways, with the meaning etcd gives
// it:
//
//   - a command-line flag, --initial-cluster-token=x (or "--name x"; the
//     single-dash spelling -initial-cluster-token=x that etcd accepts works
//     too);
//   - an environment variable, CAIRN_ followed by the name in upper case
//     with dashes turned into underscores: CAIRN_INITIAL_CLUSTER_TOKEN=x;
//   - a key of a YAML mapping in the file named by --config-file (or
//     CAIRN_CONFIG_FILE): "initial-cluster-token: x".
//
// A value from the file is overridden by one from the environment, which is
// overridden by a flag (file < environment < flags). This differs from etcd,
// which ignores flags and environment when a config file is given. An empty
// environment variable counts as unset. CAIRN_VERSION is ignored, because
// container images commonly set it.
//
// Value formats: URL lists and --initial-cluster are comma-separated (in the
// file a YAML sequence of strings may be used instead); --heartbeat-interval
// and --election-timeout are integer milliseconds; sizes are integer bytes.
// --initial-cluster is name=peer-url,...; a name given more than once gets
// all of its URLs, as in etcd.
//
// Three defaults are derived from other options and are filled in by
// Resolve when left empty: --data-dir is "<name>.cairn", --wal-dir is
// "<data-dir>/member/wal", and --initial-cluster is
// "<name>=<initial-advertise-peer-urls>", so a member started with only
// --name runs as a cluster of one.
//
// # Errors
//
// Parse and Validate report every problem they find at once, joined with
// errors.Join. Each problem is an *Error that wraps ErrInvalid and names
// the option as a flag (--heartbeat-interval); a value that cannot be read
// also names its source (flag, environment variable, or file, line and key).
// Unknown flags, unknown YAML keys and, with ParseEnviron, unknown CAIRN_*
// variables are errors, with a suggestion when a known name is close.
// --help and --version end parsing with ErrHelp and ErrVersion.
//
// # Use
//
//	cfg, err := config.ParseEnviron(os.Args[1:], os.Environ(), os.Stdout)
//
// Code that builds a Config by hand starts from Default, changes fields,
// clears the derived ones it wants recomputed (DataDir, WALDir,
// InitialCluster), calls Resolve and then Validate. Args turns a Config
// back into flags, for starting a member as a separate process.
//
// # Concurrency
//
// A Config is a plain value with no internal locking. Parse and Validate
// touch no shared state and may run concurrently; a Config shared between
// goroutines must not be modified.
package config

import (
	"log/slog"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Config is the complete configuration of one member. The zero value is not
// usable: start from Default or Parse.
type Config struct {
	// Name is this member's human-readable name; it must appear in
	// InitialCluster.
	Name string
	// DataDir holds all of the member's data; WALDir holds the log and
	// defaults to DataDir/member/wal.
	DataDir, WALDir string

	ListenClientURLs         []url.URL // addresses to serve clients on
	AdvertiseClientURLs      []url.URL // client addresses told to the cluster
	ListenPeerURLs           []url.URL // addresses to serve other members on
	InitialAdvertisePeerURLs []url.URL // peer addresses told to the cluster

	// InitialCluster lists the members at bootstrap, in the order given.
	InitialCluster []Member
	// InitialClusterState is ClusterStateNew or ClusterStateExisting.
	InitialClusterState string
	// InitialClusterToken keeps two clusters bootstrapped with the same
	// peer URLs apart.
	InitialClusterToken string

	HeartbeatInterval time.Duration // leader heartbeat period: one raft tick
	ElectionTimeout   time.Duration // at least 5 heartbeats, at most 50 s

	SnapshotCount     uint64 // applied entries between snapshots
	QuotaBackendBytes int64  // database size that triggers the space alarm
	MaxRequestBytes   uint   // largest client request accepted
	LatestCacheBytes  int64  // budget of the store's latest-version cache; 0: off

	// WatchProgressNotifyInterval is the period of progress notifications
	// to watches that ask for them.
	WatchProgressNotifyInterval time.Duration

	// CorruptCheckTime is the period of the leader's comparison of the
	// members' store hashes; 0 disables it.
	CorruptCheckTime time.Duration

	LogLevel  slog.Level // one of Debug, Info, Warn, Error
	LogFormat string     // LogFormatText or LogFormatJSON

	// EnablePprof serves net/http/pprof under /debug/pprof/ on the client
	// HTTP handler (off by default: profiles expose internals).
	EnablePprof bool

	// GRPCServer is the gRPC server transport: GRPCServerLean (the default;
	// internal/h2rpc, cairn's own HTTP/2 transport) or GRPCServerGRPCGo
	// (grpc-go's server).
	GRPCServer string

	// origin says where each option's value came from, for messages; ""
	// means a default.
	origin [numOptions]string
}

// Member is one entry of the initial cluster.
type Member struct {
	Name     string
	PeerURLs []url.URL
}

// Values of InitialClusterState, LogFormat and GRPCServer.
const (
	ClusterStateNew      = "new"
	ClusterStateExisting = "existing"
	LogFormatText        = "text"
	LogFormatJSON        = "json"
	GRPCServerLean       = "lean"
	GRPCServerGRPCGo     = "grpc-go"
)

// Defaults and limits.
const (
	DefaultName                = "default"
	DefaultClientURL           = "http://127.0.0.1:2379"
	DefaultPeerURL             = "http://127.0.0.1:2380"
	DefaultInitialClusterToken = "cairn-cluster"
	DefaultHeartbeatInterval   = 100 * time.Millisecond
	DefaultElectionTimeout     = 1000 * time.Millisecond
	DefaultSnapshotCount       = 10000
	DefaultQuotaBackendBytes   = 2 << 30
	DefaultLatestCacheBytes    = 16 << 20 // mvcc.DefaultLatestCacheBytes, for library users of mvcc
	DefaultMaxRequestBytes     = 1572864  // 1.5 MiB

	DefaultWatchProgressNotifyInterval = 10 * time.Minute
	DefaultCorruptCheckTime            = time.Minute

	MaxElectionTimeout   = 50 * time.Second
	MinElectionHeartbeat = 5 // ElectionTimeout >= 5 * HeartbeatInterval
	MaxQuotaBackendBytes = 100 << 30
	MaxLatestCacheBytes  = 64 << 30
	MaxMaxRequestBytes   = 64 << 20
)

// Default returns the configuration of a single member named "default"
// serving on 127.0.0.1, with its derived fields filled in.
func Default() Config {
	c := underivedDefault()
	c.Resolve()
	return c
}

// underivedDefault is Default with DataDir, WALDir and InitialCluster empty,
// the starting point of Parse.
func underivedDefault() Config {
	client := url.URL{Scheme: "http", Host: "127.0.0.1:2379"}
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:2380"}
	return Config{
		Name:                        DefaultName,
		ListenClientURLs:            []url.URL{client},
		AdvertiseClientURLs:         []url.URL{client},
		ListenPeerURLs:              []url.URL{peer},
		InitialAdvertisePeerURLs:    []url.URL{peer},
		InitialClusterState:         ClusterStateNew,
		InitialClusterToken:         DefaultInitialClusterToken,
		HeartbeatInterval:           DefaultHeartbeatInterval,
		ElectionTimeout:             DefaultElectionTimeout,
		SnapshotCount:               DefaultSnapshotCount,
		QuotaBackendBytes:           DefaultQuotaBackendBytes,
		MaxRequestBytes:             DefaultMaxRequestBytes,
		LatestCacheBytes:            DefaultLatestCacheBytes,
		WatchProgressNotifyInterval: DefaultWatchProgressNotifyInterval,
		CorruptCheckTime:            DefaultCorruptCheckTime,
		LogLevel:                    slog.LevelInfo,
		LogFormat:                   LogFormatText,
		GRPCServer:                  GRPCServerLean,
	}
}

// Resolve fills the derived fields that are empty: DataDir from Name,
// WALDir from DataDir, InitialCluster from Name and
// InitialAdvertisePeerURLs. Fields already set are kept.
func (c *Config) Resolve() {
	if c.DataDir == "" && c.Name != "" {
		c.DataDir = c.Name + ".cairn"
	}
	if c.WALDir == "" && c.DataDir != "" {
		c.WALDir = filepath.Join(c.DataDir, "member", "wal")
	}
	if len(c.InitialCluster) == 0 && c.Name != "" && len(c.InitialAdvertisePeerURLs) > 0 {
		c.InitialCluster = []Member{{Name: c.Name, PeerURLs: slices.Clone(c.InitialAdvertisePeerURLs)}}
	}
}

// ElectionTicks is the election timeout in raft ticks (heartbeat
// intervals), the value for raft.Config.ElectionTick. It is 0 when
// HeartbeatInterval is not positive.
func (c *Config) ElectionTicks() int {
	if c.HeartbeatInterval <= 0 {
		return 0
	}
	return int(c.ElectionTimeout / c.HeartbeatInterval)
}

// Self returns this member's entry of InitialCluster.
func (c *Config) Self() (Member, bool) {
	for _, m := range c.InitialCluster {
		if m.Name == c.Name {
			return m, true
		}
	}
	return Member{}, false
}

// InitialClusterString formats InitialCluster as the flag takes it:
// name=url,name=url.
func (c *Config) InitialClusterString() string {
	return formatCluster(c.InitialCluster)
}

// Args returns command-line flags that make Parse rebuild c (apart from
// where each value came from), for starting a member as a process.
func (c *Config) Args() []string {
	opts := optionTable()
	args := make([]string, 0, len(opts))
	for _, o := range opts {
		args = append(args, "--"+o.name+"="+o.get(c))
	}
	return args
}

func formatCluster(ms []Member) string {
	var b strings.Builder
	for _, m := range ms {
		for _, u := range m.PeerURLs {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(m.Name + "=" + u.String())
		}
	}
	return b.String()
}

func formatURLs(us []url.URL) string {
	s := make([]string, len(us))
	for i := range us {
		s[i] = us[i].String()
	}
	return strings.Join(s, ",")
}
