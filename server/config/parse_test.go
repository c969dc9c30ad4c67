package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func noEnv(string) (string, bool) { return "", false }

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cairn.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// stripOrigin drops the record of where values came from, for comparisons.
func stripOrigin(c Config) Config {
	c.origin = [numOptions]string{}
	return c
}

func TestParseNoInputIsDefault(t *testing.T) {
	c, err := Parse(nil, noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Fatalf("Parse(nil) = %+v, want Default()", c)
	}
}

// singleOptionCases set one option to a valid value and say how the
// default configuration changes.
func singleOptionCases(t *testing.T) []struct {
	name, value string
	change      func(c *Config)
} {
	return []struct {
		name, value string
		change      func(c *Config)
	}{
		{"name", "m9", func(c *Config) { c.Name = "m9" }},
		{"data-dir", "/x/d", func(c *Config) { c.DataDir = "/x/d" }},
		{"wal-dir", "/x/w", func(c *Config) { c.WALDir = "/x/w" }},
		{"listen-client-urls", "http://127.0.0.2:1, https://127.0.0.3:2",
			func(c *Config) { c.ListenClientURLs = mustURLs(t, "http://127.0.0.2:1", "https://127.0.0.3:2") }},
		{"advertise-client-urls", "http://10.0.0.1:2379",
			func(c *Config) { c.AdvertiseClientURLs = mustURLs(t, "http://10.0.0.1:2379") }},
		{"listen-peer-urls", "http://127.0.0.2:0",
			func(c *Config) { c.ListenPeerURLs = mustURLs(t, "http://127.0.0.2:0") }},
		{"initial-advertise-peer-urls", "http://10.0.0.1:2380",
			func(c *Config) { c.InitialAdvertisePeerURLs = mustURLs(t, "http://10.0.0.1:2380") }},
		{"initial-cluster", "default=http://127.0.0.1:2380,b=http://127.0.0.2:2380", func(c *Config) {
			c.InitialCluster = []Member{
				{Name: "default", PeerURLs: mustURLs(t, "http://127.0.0.1:2380")},
				{Name: "b", PeerURLs: mustURLs(t, "http://127.0.0.2:2380")}}
		}},
		{"initial-cluster-state", "existing", func(c *Config) { c.InitialClusterState = "existing" }},
		{"initial-cluster-token", "tok", func(c *Config) { c.InitialClusterToken = "tok" }},
		{"heartbeat-interval", "50", func(c *Config) { c.HeartbeatInterval = 50 * time.Millisecond }},
		{"election-timeout", "2500", func(c *Config) { c.ElectionTimeout = 2500 * time.Millisecond }},
		{"snapshot-count", "5", func(c *Config) { c.SnapshotCount = 5 }},
		{"quota-backend-bytes", "1024", func(c *Config) { c.QuotaBackendBytes = 1024 }},
		{"max-request-bytes", "2048", func(c *Config) { c.MaxRequestBytes = 2048 }},
		{"latest-cache-bytes", "0", func(c *Config) { c.LatestCacheBytes = 0 }},
		{"watch-progress-notify-interval", "90s", func(c *Config) { c.WatchProgressNotifyInterval = 90 * time.Second }},
		{"corrupt-check-time", "5s", func(c *Config) { c.CorruptCheckTime = 5 * time.Second }},
		{"log-level", "WARN", func(c *Config) { c.LogLevel = slog.LevelWarn }},
		{"log-format", "JSON", func(c *Config) { c.LogFormat = "json" }},
		{"enable-pprof", "true", func(c *Config) { c.EnablePprof = true }},
		{"grpc-server", "GRPC-GO", func(c *Config) { c.GRPCServer = "grpc-go" }},
	}
}

func TestEnablePprofBareFlagAndBadValue(t *testing.T) {
	c, err := Parse([]string{"--enable-pprof"}, noEnv, nil)
	if err != nil || !c.EnablePprof {
		t.Fatalf("--enable-pprof alone: %v, EnablePprof=%v", err, c.EnablePprof)
	}
	c, err = Parse([]string{"--enable-pprof=false"}, noEnv, nil)
	if err != nil || c.EnablePprof {
		t.Fatalf("--enable-pprof=false: %v, EnablePprof=%v", err, c.EnablePprof)
	}
	if _, err := Parse([]string{"--enable-pprof=maybe"}, noEnv, nil); err == nil {
		t.Fatal("--enable-pprof=maybe accepted")
	}
	if c := Default(); c.EnablePprof {
		t.Fatal("pprof on by default")
	}
}

func TestParseEachSourceAlone(t *testing.T) {
	cases := singleOptionCases(t)
	if len(cases) != int(numOptions) {
		t.Fatalf("%d cases for %d options", len(cases), numOptions)
	}
	for _, tc := range cases {
		want := underivedDefault()
		tc.change(&want)
		want.Resolve()
		sources := map[string]func() (Config, error){
			"flag": func() (Config, error) { return Parse([]string{"--" + tc.name + "=" + tc.value}, noEnv, nil) },
			"env": func() (Config, error) {
				return Parse(nil, envOf(map[string]string{envName(tc.name): tc.value}), nil)
			},
			"file": func() (Config, error) {
				p := writeFile(t, fmt.Sprintf("%s: %q\n", tc.name, tc.value))
				return Parse([]string{"--config-file", p}, noEnv, nil)
			},
		}
		for src, parse := range sources {
			got, err := parse()
			if err != nil {
				t.Errorf("%s from %s: %v", tc.name, src, err)
				continue
			}
			if !reflect.DeepEqual(stripOrigin(got), want) {
				t.Errorf("%s from %s:\n got %+v\nwant %+v", tc.name, src, stripOrigin(got), want)
			}
		}
	}
}

func TestParsePrecedenceFileEnvFlags(t *testing.T) {
	file := writeFile(t, `
name: from-file
initial-cluster-token: file-token
heartbeat-interval: 10
snapshot-count: 1
log-format: json
log-level: warn
election-timeout: 3000
`)
	env := map[string]string{
		"CAIRN_CONFIG_FILE":           file,
		"CAIRN_INITIAL_CLUSTER_TOKEN": "env-token",
		"CAIRN_HEARTBEAT_INTERVAL":    "20",
		"CAIRN_SNAPSHOT_COUNT":        "2",
		"CAIRN_MAX_REQUEST_BYTES":     "100",
	}
	args := []string{"--snapshot-count=3", "--heartbeat-interval", "30", "--log-level=error", "--max-request-bytes=200"}
	c, err := Parse(args, envOf(env), nil)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		what      string
		got, want any
	}{
		{"name (file only)", c.Name, "from-file"},
		{"data-dir derived from the file's name", c.DataDir, "from-file.cairn"},
		{"log-format (file only)", c.LogFormat, "json"},
		{"election-timeout (file only)", c.ElectionTimeout, 3 * time.Second},
		{"token (env over file)", c.InitialClusterToken, "env-token"},
		{"heartbeat (flag over env over file)", c.HeartbeatInterval, 30 * time.Millisecond},
		{"snapshot-count (flag over env over file)", c.SnapshotCount, uint64(3)},
		{"log-level (flag over file)", c.LogLevel.String(), "ERROR"},
		{"max-request-bytes (flag over env)", c.MaxRequestBytes, uint(200)},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.what, ch.got, ch.want)
		}
	}
}

func TestParseConfigFileFlagOverridesEnv(t *testing.T) {
	envFile := writeFile(t, "name: env-file\n")
	flagFile := writeFile(t, "name: flag-file\n")
	c, err := Parse([]string{"--config-file=" + flagFile}, envOf(map[string]string{"CAIRN_CONFIG_FILE": envFile}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "flag-file" {
		t.Fatalf("name = %q, want flag-file", c.Name)
	}
}

func TestParseMissingConfigFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "absent.yaml")
	_, err := Parse([]string{"--config-file", p}, noEnv, nil)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v; want not-exist naming %s", err, p)
	}
}

func TestParseFileListsAndPlainScalars(t *testing.T) {
	p := writeFile(t, `name: a
listen-client-urls:
  - http://127.0.0.1:2379
  - http://127.0.0.2:2379
initial-cluster: [a=http://127.0.0.1:2380, "b=http://127.0.0.2:2380"]
heartbeat-interval: 20
election-timeout: 200
quota-backend-bytes: 4096
`)
	c, err := Parse([]string{"--config-file", p}, noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := formatURLs(c.ListenClientURLs); got != "http://127.0.0.1:2379,http://127.0.0.2:2379" {
		t.Errorf("listen-client-urls = %s", got)
	}
	if got := c.InitialClusterString(); got != "a=http://127.0.0.1:2380,b=http://127.0.0.2:2380" {
		t.Errorf("initial-cluster = %s", got)
	}
	if c.HeartbeatInterval != 20*time.Millisecond || c.ElectionTimeout != 200*time.Millisecond || c.QuotaBackendBytes != 4096 {
		t.Errorf("numbers: %v %v %d", c.HeartbeatInterval, c.ElectionTimeout, c.QuotaBackendBytes)
	}
}

func TestParseEmptyFile(t *testing.T) {
	for _, content := range []string{"", "# only a comment\n", "---\n"} {
		c, err := Parse([]string{"--config-file", writeFile(t, content)}, noEnv, nil)
		if err != nil || !reflect.DeepEqual(stripOrigin(c), Default()) {
			t.Errorf("file %q: %v, %+v", content, err, c)
		}
	}
}

func TestParseInitialClusterMergesRepeatedNames(t *testing.T) {
	c, err := Parse([]string{
		"--name=a",
		"--initial-advertise-peer-urls=http://127.0.0.3:2380,http://127.0.0.1:2380",
		"--initial-cluster=a=http://127.0.0.1:2380,b=http://127.0.0.2:2380,a=http://127.0.0.3:2380",
	}, noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Member{
		{Name: "a", PeerURLs: mustURLs(t, "http://127.0.0.1:2380", "http://127.0.0.3:2380")},
		{Name: "b", PeerURLs: mustURLs(t, "http://127.0.0.2:2380")},
	}
	if !reflect.DeepEqual(c.InitialCluster, want) {
		t.Fatalf("InitialCluster = %+v, want %+v", c.InitialCluster, want)
	}
}

func TestParseEtcdSingleDashFlags(t *testing.T) {
	c, err := Parse([]string{"-name", "m1", "-initial-cluster=m1=http://127.0.0.1:2380",
		"--initial-cluster-token", "-name", "-data-dir", "/d"}, noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "m1" || c.InitialClusterToken != "-name" || c.DataDir != "/d" {
		t.Fatalf("got name %q token %q data-dir %q", c.Name, c.InitialClusterToken, c.DataDir)
	}
}

func TestParseEmptyEnvIsUnset(t *testing.T) {
	c, err := Parse(nil, envOf(map[string]string{"CAIRN_NAME": "", "CAIRN_SNAPSHOT_COUNT": ""}), nil)
	if err != nil || c.Name != DefaultName || c.SnapshotCount != DefaultSnapshotCount {
		t.Fatalf("got %v, name %q count %d", err, c.Name, c.SnapshotCount)
	}
}

func TestParseHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "-help"} {
		var out bytes.Buffer
		_, err := Parse([]string{arg}, noEnv, &out)
		if !errors.Is(err, ErrHelp) {
			t.Fatalf("%s: err = %v, want ErrHelp", arg, err)
		}
		help := out.String()
		lines := strings.Split(help, "\n")
		for _, o := range optionTable() {
			var found []string
			for _, l := range lines {
				if strings.HasPrefix(strings.TrimSpace(l), "--"+o.name+" ") {
					found = append(found, l)
				}
			}
			if len(found) != 1 {
				t.Errorf("%s: want one line for --%s, got %q", arg, o.name, found)
				continue
			}
			if !strings.Contains(found[0], envName(o.name)) || !strings.Contains(found[0], "(default ") {
				t.Errorf("%s: line for --%s lacks its env var or default: %q", arg, o.name, found[0])
			}
		}
		for _, s := range []string{"--config-file", "CAIRN_CONFIG_FILE", "--version", "--help"} {
			if !strings.Contains(help, s) {
				t.Errorf("%s: help does not mention %s", arg, s)
			}
		}
		if !strings.Contains(help, `--heartbeat-interval ms`) || !strings.Contains(help, `(default "100"`) {
			t.Errorf("help lacks the heartbeat default:\n%s", help)
		}
	}
}

func TestParseVersion(t *testing.T) {
	var out bytes.Buffer
	if _, err := Parse([]string{"--version"}, noEnv, &out); !errors.Is(err, ErrVersion) || out.Len() != 0 {
		t.Fatalf("err = %v, output %q; want ErrVersion and no output", err, out.String())
	}
}

func TestParseUnknownFlag(t *testing.T) {
	_, err := Parse([]string{"--nmae=x"}, noEnv, nil)
	var ce *Error
	if !errors.As(err, &ce) || ce.Source != SourceFlag || !strings.Contains(err.Error(), "--nmae") ||
		!strings.Contains(err.Error(), "did you mean --name?") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseUnexpectedArgument(t *testing.T) {
	_, err := Parse([]string{"--name=a", "stray"}, noEnv, nil)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `"stray"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestParseEnvironRejectsUnknownVariables(t *testing.T) {
	environ := []string{"PATH=/bin", "CAIRN_VERSION=1.2.3", "CAIRN_NAME=n", "CAIRN_INITIAL_CLUSTER_TOKN=x", "CAIRN_ZZZ=1"}
	_, err := ParseEnviron(nil, environ, nil)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	msg := err.Error()
	for _, want := range []string{"CAIRN_INITIAL_CLUSTER_TOKN", "did you mean CAIRN_INITIAL_CLUSTER_TOKEN?", "CAIRN_ZZZ"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %v", want, msg)
		}
	}
	if strings.Contains(msg, "CAIRN_VERSION") || strings.Contains(msg, "CAIRN_NAME") {
		t.Errorf("error names a known variable: %v", msg)
	}
}

func TestParseEnvironMatchesParse(t *testing.T) {
	environ := []string{"CAIRN_NAME=n1", "CAIRN_SNAPSHOT_COUNT=9", "CAIRN_NAME=ignored", "OTHER=x"}
	a, err := ParseEnviron([]string{"--log-level=debug"}, environ, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]string{"--log-level=debug"}, envOf(map[string]string{"CAIRN_NAME": "n1", "CAIRN_SNAPSHOT_COUNT": "9"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) || a.Name != "n1" {
		t.Fatalf("ParseEnviron = %+v\nParse = %+v", a, b)
	}
}

func TestParseNilEnvAndStdout(t *testing.T) {
	if _, err := Parse([]string{"--help"}, nil, nil); !errors.Is(err, ErrHelp) {
		t.Fatalf("err = %v, want ErrHelp", err)
	}
	c, err := Parse([]string{"--name=n"}, nil, nil)
	if err != nil || c.Name != "n" {
		t.Fatalf("got %v, %q", err, c.Name)
	}
}

func TestParseFlagWithoutValue(t *testing.T) {
	_, err := Parse([]string{"--name"}, noEnv, nil)
	var ce *Error
	if !errors.As(err, &ce) || ce.Source != SourceFlag || !strings.Contains(err.Error(), "--name") {
		t.Fatalf("err = %v", err)
	}
}
