package e2e

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/bench"
	"github.com/cairn-kv/cairn/tests/framework"
)

// TestBenchScenariosAgainstOneMember runs every cairn-bench scenario briefly
// against a real member and checks the JSON result: every field a script
// reads is there, requests were made, and nothing failed.
func TestBenchScenariosAgainstOneMember(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 1})
	ep := strings.Join(c.Endpoints(), ",")
	runs := [][]string{
		{"put", "--total", "300"},
		{"put", "--total", "50", "--conns", "1", "--sequential-keys", "--clients", "1"},
		{"range", "--total", "300", "--consistency", "l"},
		{"range", "--total", "300", "--consistency", "s", "--duration", "20s"},
		{"txn-put", "--total", "100", "--txn-ops", "5"},
		{"watch", "--puts", "100", "--watchers", "40", "--watched-keys", "10", "--clients", "4", "--conns", "2"},
		{"lease-keepalive", "--total", "200", "--clients", "8", "--conns", "2"},
	}
	for _, args := range runs {
		t.Run(strings.Join(args[:1], ""), func(t *testing.T) {
			var out, errb bytes.Buffer
			// Common flags first: a run's own flags come later and win.
			args = append([]string{args[0], "--endpoints", ep, "--json", "--clients", "8"}, args[1:]...)
			code := bench.Main(framework.Context(t, 60*time.Second), args, &out, &errb)
			if code != 0 {
				t.Fatalf("%v: exit %d\nstdout %s\nstderr %s", args, code, out.String(), errb.String())
			}
			var fields map[string]any
			if err := json.Unmarshal(out.Bytes(), &fields); err != nil {
				t.Fatalf("%v: output not JSON: %v\n%s", args, err, out.String())
			}
			for _, f := range []string{"scenario", "requests", "errors", "seconds", "per_second", "p50_ms", "p90_ms", "p99_ms", "p999_ms"} {
				if _, ok := fields[f]; !ok {
					t.Errorf("%v: no %q in %s", args, f, out.String())
				}
			}
			var r bench.Result
			_ = json.Unmarshal(out.Bytes(), &r)
			if r.Scenario != args[0] || r.Errors != 0 || r.Requests == 0 || r.PerSecond <= 0 || r.P50Ms <= 0 || r.P99Ms < r.P50Ms {
				t.Fatalf("%v: bad result %+v", args, r)
			}
			if r.Scenario == bench.ScenarioWatch && (r.Events != r.ExpectedEvents || r.Events != r.Requests*4) {
				t.Fatalf("watch: %d events, expected %d (4 watchers per key × %d puts)", r.Events, r.ExpectedEvents, r.Requests)
			}
			if r.Scenario == bench.ScenarioWatch && (r.Responses == 0 || r.Responses > r.Events) {
				t.Fatalf("watch: %d events in %d responses", r.Events, r.Responses)
			}
		})
	}
}
