package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseBadValueNamesKeyAndSource(t *testing.T) {
	cases := []struct{ name, value, want string }{
		{"heartbeat-interval", "abc", "not a whole number of milliseconds"},
		{"election-timeout", "1s", "give whole milliseconds, e.g. 1000"},
		{"snapshot-count", "-1", "not a whole non-negative number"},
		{"quota-backend-bytes", "2GiB", "not a whole non-negative number"},
		{"max-request-bytes", "99999999999999999999999", "out of range"},
		{"log-level", "verbose", "debug, info, warn, error"},
		{"listen-client-urls", "http://[::1", "not a URL"},
		{"listen-peer-urls", "127.0.0.1:2380", "http://host:port"},
		{"advertise-client-urls", "http://127.0.0.1:1,,http://127.0.0.1:2", "empty item"},
		{"initial-cluster", "a", `entry "a" is not name=peer-url`},
		{"initial-cluster", "=http://127.0.0.1:2380", "is not name=peer-url"},
	}
	for _, tc := range cases {
		sources := []struct {
			source, where string
			parse         func() (Config, error)
		}{
			{SourceFlag, "flag --" + tc.name, func() (Config, error) {
				return Parse([]string{"--" + tc.name, tc.value}, noEnv, nil)
			}},
			{SourceEnv, "environment variable " + envName(tc.name), func() (Config, error) {
				return Parse(nil, envOf(map[string]string{envName(tc.name): tc.value}), nil)
			}},
			{SourceFile, fmt.Sprintf("line 2 key %q", tc.name), func() (Config, error) {
				p := writeFile(t, fmt.Sprintf("name: default\n%s: %q\n", tc.name, tc.value))
				return Parse([]string{"--config-file", p}, noEnv, nil)
			}},
		}
		for _, src := range sources {
			_, err := src.parse()
			errs := flagErrors(t, err)
			if len(errs) != 1 {
				t.Errorf("%s=%q from %s: want one error, got %v", tc.name, tc.value, src.source, err)
				continue
			}
			e := errs[0]
			if e.Source != src.source || e.Flag != tc.name || !strings.Contains(e.Error(), src.where) ||
				!strings.Contains(e.Error(), tc.want) {
				t.Errorf("%s=%q from %s: got %q (source %q, flag %q); want %q and %q",
					tc.name, tc.value, src.source, e.Error(), e.Source, e.Flag, src.where, tc.want)
			}
		}
	}
}

func TestParseFileProblems(t *testing.T) {
	cases := []struct {
		content string
		flag    string // expected Error.Flag
		want    []string
	}{
		{"nmae: x\n", "", []string{`line 1 key "nmae"`, "no such option: did you mean name?"}},
		{"name: a\ninitial_cluster_token: x\n", "", []string{`line 2 key "initial_cluster_token"`, `"initial-cluster-token"`}},
		{"config-file: other.yaml\n", "", []string{"cannot name another config file"}},
		{"version: true\n", "", []string{`key "version"`, "no such option"}},
		{"name: [a, b]\n", "name", []string{`key "name"`, "is a list"}},
		{"name:\n", "name", []string{`key "name"`, "has no value"}},
		{"name: {a: b}\n", "name", []string{`key "name"`, "is a mapping"}},
		{"listen-client-urls: [http://127.0.0.1:1, {a: b}]\n", "listen-client-urls", []string{"list items"}},
		{"name: a\nname: b\n", "name", []string{`line 2 key "name"`, "given twice (first on line 1)"}},
		{"- a\n- b\n", "", []string{"top level must be a mapping"}},
		{"just text\n", "", []string{"top level must be a mapping"}},
		{"name: a\n---\nname: b\n", "", []string{"more than one YAML document"}},
		{"name: [\n", "", []string{"not valid YAML"}},
		{"? [a, b]\n: c\n", "", []string{"a key must be an option name"}},
	}
	for _, tc := range cases {
		p := writeFile(t, tc.content)
		_, err := Parse([]string{"--config-file", p}, noEnv, nil)
		errs := flagErrors(t, err)
		if len(errs) != 1 {
			t.Errorf("file %q: want one error, got %v", tc.content, err)
			continue
		}
		e := errs[0]
		msg := e.Error()
		if e.Source != SourceFile || e.Flag != tc.flag || !strings.Contains(msg, p) {
			t.Errorf("file %q: got %q (source %q, flag %q); want source file, flag %q, naming the path",
				tc.content, msg, e.Source, e.Flag, tc.flag)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("file %q: error %q lacks %q", tc.content, msg, w)
			}
		}
	}
}

func TestParseFileReportsEveryBadKey(t *testing.T) {
	p := writeFile(t, "nmae: a\nheartbeat-interval: x\nsnapshot-count: [1]\nlog-level: warn\n")
	_, err := Parse([]string{"--config-file", p}, noEnv, nil)
	got := map[string]bool{}
	for _, e := range flagErrors(t, err) {
		got[e.Where[strings.LastIndex(e.Where, " ")+1:]] = true
	}
	for _, k := range []string{`"nmae"`, `"heartbeat-interval"`, `"snapshot-count"`} {
		if !got[k] {
			t.Errorf("no error for key %s: %v", k, err)
		}
	}
	if got[`"log-level"`] {
		t.Errorf("error for the good key log-level: %v", err)
	}
}

func FuzzParseConfigFile(f *testing.F) {
	f.Add([]byte("name: a\ninitial-cluster: a=http://127.0.0.1:2380\nheartbeat-interval: 50\n"))
	f.Add([]byte("listen-client-urls: [http://127.0.0.1:1, http://127.0.0.2:1]\n"))
	f.Add([]byte("a: &x [1, *x]\n"))
	f.Add([]byte("name: a\n---\n- x\n"))
	f.Add([]byte("quota-backend-bytes: 0x10\nlog-level: DEBUG\nelection-timeout: 1e3\n"))
	f.Add([]byte("initial-cluster: [a=http://127.0.0.1:2380, a=http://127.0.0.1:2380]\n"))
	dir := f.TempDir()
	path := filepath.Join(dir, "fuzz.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Parse([]string{"--config-file", path}, noEnv, nil)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			return
		}
		if verr := c.Validate(); verr != nil {
			t.Fatalf("Parse accepted a config that Validate rejects: %v", verr)
		}
		again, err := Parse(c.Args(), noEnv, nil)
		if err != nil {
			t.Fatalf("Parse(Args()) of an accepted config: %v", err)
		}
		if a, b := stripOrigin(again), stripOrigin(c); !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", a, b)
		}
	})
}
