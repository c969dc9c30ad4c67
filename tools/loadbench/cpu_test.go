package main

import (
	"os"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/bench"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with a space and a parenthesis; utime 1234, stime 56.
	stat := "4242 (cairn (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 1234 56 0 0 20 0 12 0 100 2000000 3000\n"
	got, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1290 * clockTick; got != want {
		t.Fatalf("CPU = %v, want %v", got, want)
	}
	for _, bad := range []string{
		"",
		"4242 cairn S 1",
		"4242 (cairn) S 1 2 3",
		"4242 (cairn) S 1 4242 4242 0 -1 4194560 1000 0 0 0 x 56 0",
		"4242 (cairn) S 1 4242 4242 0 -1 4194560 1000 0 0 0 -5 56 0",
	} {
		if _, err := parseStatCPU(bad); err == nil {
			t.Errorf("parseStatCPU(%q) accepted a malformed line", bad)
		}
	}
}

func TestProcCPUOfThisProcess(t *testing.T) {
	// Burn some CPU so that at least a tick is on the books.
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	d, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 {
		t.Fatalf("CPU of a process that just spun for 50 ms = %v", d)
	}
}

func TestPerOp(t *testing.T) {
	if got := perOp(time.Second, bench.Result{Requests: 1000}); got != 1000 {
		t.Errorf("1 s over 1000 requests = %v µs, want 1000", got)
	}
	if got := perOp(time.Second, bench.Result{Requests: 10, Events: 4000}); got != 250 {
		t.Errorf("watch: 1 s over 4000 events = %v µs, want 250", got)
	}
	if got := perOp(time.Second, bench.Result{}); got != 0 {
		t.Errorf("no requests: %v, want 0", got)
	}
}

func TestCPULabel(t *testing.T) {
	for in, want := range map[string]string{
		"put, 1 client (req/s, p50)":               "put, 1 client",
		"range 1 key, linearizable":                "range 1 key, linearizable",
		"watch events/s (1000 watchers, 100 keys)": "watch events/s (1000 watchers, 100 keys)",
	} {
		if got := cpuLabel(in); got != want {
			t.Errorf("cpuLabel(%q) = %q, want %q", in, got, want)
		}
	}
}
