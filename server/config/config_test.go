package config

import (
	"errors"
	"log/slog"
	"net/url"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func mustURLs(t testing.TB, ss ...string) []url.URL {
	t.Helper()
	var out []url.URL
	for _, s := range ss {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *u)
	}
	return out
}

func TestDefault(t *testing.T) {
	c := Default()
	want := Config{
		Name:                        "default",
		DataDir:                     "default.cairn",
		WALDir:                      filepath.Join("default.cairn", "member", "wal"),
		ListenClientURLs:            mustURLs(t, "http://127.0.0.1:2379"),
		AdvertiseClientURLs:         mustURLs(t, "http://127.0.0.1:2379"),
		ListenPeerURLs:              mustURLs(t, "http://127.0.0.1:2380"),
		InitialAdvertisePeerURLs:    mustURLs(t, "http://127.0.0.1:2380"),
		InitialCluster:              []Member{{Name: "default", PeerURLs: mustURLs(t, "http://127.0.0.1:2380")}},
		InitialClusterState:         "new",
		InitialClusterToken:         "cairn-cluster",
		HeartbeatInterval:           100 * time.Millisecond,
		ElectionTimeout:             time.Second,
		SnapshotCount:               10000,
		QuotaBackendBytes:           2 * 1024 * 1024 * 1024,
		MaxRequestBytes:             1572864,
		LatestCacheBytes:            16 << 20,
		WatchProgressNotifyInterval: 10 * time.Minute,
		CorruptCheckTime:            time.Minute,
		LogLevel:                    slog.LevelInfo,
		LogFormat:                   "text",
		GRPCServer:                  "lean",
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("Default() =\n%+v\nwant\n%+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Default() does not validate: %v", err)
	}
	if got := c.ElectionTicks(); got != 10 {
		t.Errorf("ElectionTicks() = %d, want 10", got)
	}
}

func TestDefaultCopiesAreIndependent(t *testing.T) {
	a, b := Default(), Default()
	a.ListenClientURLs[0].Host = "10.0.0.1:1"
	a.InitialCluster[0].PeerURLs[0].Host = "10.0.0.1:2"
	if b.ListenClientURLs[0].Host != "127.0.0.1:2379" || b.InitialCluster[0].PeerURLs[0].Host != "127.0.0.1:2380" {
		t.Fatal("Default() results share slices")
	}
	if a.InitialAdvertisePeerURLs[0].Host != "127.0.0.1:2380" {
		t.Fatal("the derived InitialCluster shares a slice with InitialAdvertisePeerURLs")
	}
}

func TestResolveKeepsSetFields(t *testing.T) {
	c := Default()
	c.Name, c.DataDir, c.WALDir, c.InitialCluster = "m1", "", "", nil
	c.Resolve()
	if c.DataDir != "m1.cairn" || c.WALDir != filepath.Join("m1.cairn", "member", "wal") ||
		c.InitialClusterString() != "m1=http://127.0.0.1:2380" {
		t.Fatalf("derived fields: %q %q %q", c.DataDir, c.WALDir, c.InitialClusterString())
	}
	c.DataDir, c.WALDir = "/d", "/w"
	c.Resolve()
	if c.DataDir != "/d" || c.WALDir != "/w" {
		t.Fatalf("Resolve overwrote set fields: %q %q", c.DataDir, c.WALDir)
	}
}

func TestElectionTicks(t *testing.T) {
	for _, tc := range []struct {
		hb, et time.Duration
		want   int
	}{
		{100 * time.Millisecond, time.Second, 10},
		{50 * time.Millisecond, 1200 * time.Millisecond, 24},
		{300 * time.Millisecond, 1000 * time.Millisecond, 3},
		{0, time.Second, 0},
	} {
		c := Config{HeartbeatInterval: tc.hb, ElectionTimeout: tc.et}
		if got := c.ElectionTicks(); got != tc.want {
			t.Errorf("ElectionTicks(%v, %v) = %d, want %d", tc.hb, tc.et, got, tc.want)
		}
	}
}

func TestArgsRoundTrip(t *testing.T) {
	c := Default()
	c.Name = "b"
	c.DataDir = "/var/lib/b"
	c.WALDir = "/fast/wal"
	c.ListenClientURLs = mustURLs(t, "http://127.0.0.2:0", "https://127.0.0.3:2379")
	c.ListenPeerURLs = mustURLs(t, "http://127.0.0.2:2380")
	c.InitialAdvertisePeerURLs = mustURLs(t, "http://127.0.0.2:2380", "http://10.0.0.2:2380")
	c.InitialCluster = []Member{
		{Name: "a", PeerURLs: mustURLs(t, "http://127.0.0.1:2380")},
		{Name: "b", PeerURLs: mustURLs(t, "http://127.0.0.2:2380", "http://10.0.0.2:2380")},
	}
	c.InitialClusterState = ClusterStateExisting
	c.HeartbeatInterval, c.ElectionTimeout = 50*time.Millisecond, 700*time.Millisecond
	c.SnapshotCount, c.QuotaBackendBytes, c.MaxRequestBytes = 7, 1<<20, 4096
	c.LogLevel, c.LogFormat = slog.LevelDebug, LogFormatJSON
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := Parse(c.Args(), noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, c) {
		t.Fatalf("Parse(Args()) =\n%+v\nwant\n%+v", got, c)
	}
}

func TestErrorWrapsErrInvalid(t *testing.T) {
	c := Default()
	c.SnapshotCount = 0
	err := c.Validate()
	var ce *Error
	if !errors.Is(err, ErrInvalid) || !errors.As(err, &ce) || ce.Flag != "snapshot-count" {
		t.Fatalf("Validate() = %v; want an *Error for snapshot-count wrapping ErrInvalid", err)
	}
}
