package config

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// flagErrors returns the flags named by the *Errors joined in err.
func flagErrors(t *testing.T, err error) []*Error {
	t.Helper()
	var out []*Error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("%v (%T) is not an *Error", e, e)
		}
		out = append(out, ce)
	}
	if err != nil {
		walk(err)
	}
	return out
}

func TestValidateRejects(t *testing.T) {
	cases := []struct {
		name   string
		change func(c *Config)
		flag   string // the flag the message must name
		want   string // a further part of the message
	}{
		{"empty name", func(c *Config) { c.Name = "" }, "name", "must not be empty"},
		{"name with comma", func(c *Config) { c.Name = "a,b"; c.InitialCluster[0].Name = "a,b" }, "name", "','"},
		{"empty data dir", func(c *Config) { c.DataDir = "" }, "data-dir", "empty"},
		{"empty wal dir", func(c *Config) { c.WALDir = "" }, "wal-dir", "empty"},
		{"no listen client urls", func(c *Config) { c.ListenClientURLs = nil }, "listen-client-urls", "at least one URL"},
		{"no listen peer urls", func(c *Config) { c.ListenPeerURLs = nil }, "listen-peer-urls", "at least one URL"},
		{"no advertise client urls", func(c *Config) { c.AdvertiseClientURLs = nil }, "advertise-client-urls", "at least one URL"},
		{"non-http scheme", func(c *Config) { c.ListenClientURLs = mustURLs(t, "unix://127.0.0.1:1") }, "listen-client-urls", `scheme "unix"`},
		{"missing scheme", func(c *Config) { c.AdvertiseClientURLs = mustURLs(t, "localhost:2379") }, "advertise-client-urls", "http://host:port"},
		{"missing port", func(c *Config) { c.ListenPeerURLs = mustURLs(t, "http://127.0.0.1") }, "listen-peer-urls", "no port"},
		{"missing host", func(c *Config) { c.ListenPeerURLs = mustURLs(t, "http://:2380") }, "listen-peer-urls", "no host"},
		{"url with path", func(c *Config) { c.ListenClientURLs = mustURLs(t, "http://127.0.0.1:2379/v3") }, "listen-client-urls", "path"},
		{"url with slash", func(c *Config) { c.ListenClientURLs = mustURLs(t, "http://127.0.0.1:2379/") }, "listen-client-urls", "path"},
		{"url with query", func(c *Config) { c.ListenClientURLs = mustURLs(t, "http://127.0.0.1:2379?x=1") }, "listen-client-urls", "query"},
		{"port out of range", func(c *Config) { c.ListenClientURLs = mustURLs(t, "http://127.0.0.1:70000") }, "listen-client-urls", "65535"},
		{"duplicate listen url", func(c *Config) { c.ListenClientURLs = mustURLs(t, "http://127.0.0.1:1", "http://127.0.0.1:1") }, "listen-client-urls", "twice"},
		{"name not in cluster", func(c *Config) { c.Name = "x" }, "initial-cluster",
			`member "x" is not in --initial-cluster "default=http://127.0.0.1:2380": add x=<peer-url> or fix --name`},
		{"advertise disagrees", func(c *Config) { c.InitialAdvertisePeerURLs = mustURLs(t, "http://127.0.0.9:2380") }, "initial-advertise-peer-urls", "disagrees"},
		{"empty cluster", func(c *Config) { c.InitialCluster = nil }, "initial-cluster", "empty"},
		{"duplicate member name", func(c *Config) {
			c.InitialCluster = append(c.InitialCluster, Member{Name: "default", PeerURLs: mustURLs(t, "http://127.0.0.2:2380")})
		}, "initial-cluster", `names member "default" twice`},
		{"duplicate peer url", func(c *Config) {
			c.InitialCluster = append(c.InitialCluster, Member{Name: "b", PeerURLs: mustURLs(t, "http://127.0.0.1:2380")})
		}, "initial-cluster", "to both"},
		{"member without url", func(c *Config) { c.InitialCluster = append(c.InitialCluster, Member{Name: "b"}) }, "initial-cluster", "no peer URL"},
		{"member without name", func(c *Config) {
			c.InitialCluster = append(c.InitialCluster, Member{PeerURLs: mustURLs(t, "http://127.0.0.2:2380")})
		}, "initial-cluster", "without a name"},
		{"bad member url", func(c *Config) {
			c.InitialCluster = append(c.InitialCluster, Member{Name: "b", PeerURLs: mustURLs(t, "http://127.0.0.2:2380/p")})
		}, "initial-cluster", "path"},
		{"bad state", func(c *Config) { c.InitialClusterState = "join" }, "initial-cluster-state", `"new"`},
		{"empty token", func(c *Config) { c.InitialClusterToken = "" }, "initial-cluster-token", "empty"},
		{"zero heartbeat", func(c *Config) { c.HeartbeatInterval = 0 }, "heartbeat-interval", "more than 0"},
		{"negative heartbeat", func(c *Config) { c.HeartbeatInterval = -time.Millisecond }, "heartbeat-interval", "got -1"},
		{"election under 5 heartbeats", func(c *Config) { c.ElectionTimeout = 499 * time.Millisecond }, "election-timeout", "raise it to 500"},
		{"election over 50s", func(c *Config) { c.ElectionTimeout = 50001 * time.Millisecond }, "election-timeout", "at most 50000"},
		{"zero snapshot count", func(c *Config) { c.SnapshotCount = 0 }, "snapshot-count", "more than 0"},
		{"zero quota", func(c *Config) { c.QuotaBackendBytes = 0 }, "quota-backend-bytes", "100 GiB"},
		{"negative quota", func(c *Config) { c.QuotaBackendBytes = -1 }, "quota-backend-bytes", "got -1"},
		{"quota over 100GiB", func(c *Config) { c.QuotaBackendBytes = 100<<30 + 1 }, "quota-backend-bytes", "100 GiB"},
		{"zero max request", func(c *Config) { c.MaxRequestBytes = 0 }, "max-request-bytes", "64 MiB"},
		{"negative latest cache", func(c *Config) { c.LatestCacheBytes = -1 }, "latest-cache-bytes", "0 (off)"},
		{"latest cache over 64GiB", func(c *Config) { c.LatestCacheBytes = 64<<30 + 1 }, "latest-cache-bytes", "64 GiB"},
		{"max request over 64MiB", func(c *Config) { c.MaxRequestBytes = 64<<20 + 1 }, "max-request-bytes", "64 MiB"},
		{"odd log level", func(c *Config) { c.LogLevel = slog.LevelInfo + 1 }, "log-level", "debug, info, warn or error"},
		{"bad log format", func(c *Config) { c.LogFormat = "xml" }, "log-format", `"json"`},
		{"bad grpc server", func(c *Config) { c.GRPCServer = "netty" }, "grpc-server", `"grpc-go"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.change(&c)
			err := c.Validate()
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate() = %v, want ErrInvalid", err)
			}
			errs := flagErrors(t, err)
			if len(errs) != 1 {
				t.Fatalf("want exactly one problem, got %v", err)
			}
			e := errs[0]
			if e.Flag != tc.flag || !strings.Contains(e.Error(), "--"+tc.flag) || !strings.Contains(e.Error(), tc.want) {
				t.Errorf("got %q (flag %q); want it to name --%s and contain %q", e.Error(), e.Flag, tc.flag, tc.want)
			}
		})
	}
}

func TestValidateAcceptsBoundaries(t *testing.T) {
	c := Default()
	c.ElectionTimeout = 5 * c.HeartbeatInterval
	c.QuotaBackendBytes = MaxQuotaBackendBytes
	c.MaxRequestBytes = MaxMaxRequestBytes
	c.SnapshotCount = 1
	c.InitialAdvertisePeerURLs = mustURLs(t, "https://[::1]:2380", "http://127.0.0.1:2380")
	c.InitialCluster = []Member{{Name: "default", PeerURLs: mustURLs(t, "http://127.0.0.1:2380", "https://[::1]:2380")}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.HeartbeatInterval, c.ElectionTimeout = 10*time.Second, MaxElectionTimeout
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateReportsAllProblems(t *testing.T) {
	c := Default()
	c.HeartbeatInterval = 0
	c.SnapshotCount = 0
	c.LogFormat = "xml"
	c.InitialClusterState = ""
	got := map[string]bool{}
	for _, e := range flagErrors(t, c.Validate()) {
		got[e.Flag] = true
	}
	for _, f := range []string{"heartbeat-interval", "snapshot-count", "log-format", "initial-cluster-state"} {
		if !got[f] {
			t.Errorf("no problem reported for --%s (got %v)", f, got)
		}
	}
}

func TestParseValidatesAndNamesSource(t *testing.T) {
	p := writeFile(t, "snapshot-count: 0\n")
	_, err := Parse([]string{"--config-file", p, "--heartbeat-interval=0"},
		envOf(map[string]string{"CAIRN_LOG_FORMAT": "xml"}), nil)
	msg := err.Error()
	for _, want := range []string{
		"--snapshot-count must be more than 0 (set by config file",
		"--log-format \"xml\" must be \"text\" or \"json\" (set by environment variable CAIRN_LOG_FORMAT)",
		"--heartbeat-interval must be more than 0 ms (got 0)\n",
	} {
		if !strings.Contains(msg+"\n", want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
}

func TestParseRejectsMemberOutsideCluster(t *testing.T) {
	_, err := Parse([]string{"--name=b", "--initial-cluster=a=http://127.0.0.1:2380"}, noEnv, nil)
	want := `member "b" is not in --initial-cluster "a=http://127.0.0.1:2380": add b=<peer-url> or fix --name`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v; want %q", err, want)
	}
}
