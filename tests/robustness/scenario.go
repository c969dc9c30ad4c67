package robustness

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/cairn-kv/cairn/tests/framework"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Scenario is one run: a 3-member cluster behind peer proxies, Workers
// clients of KV traffic plus a lease client and a watcher for Duration,
// faults drawn from Faults one at a time, then the checks.
type Scenario struct {
	Name     string
	Seed     uint64
	Duration time.Duration
	Faults   []string
	Workers  int
	Interval time.Duration // between one worker's operations
	// DirectPeers leaves the peer proxies out (faults that need them
	// cannot be used).
	DirectPeers bool
	// SmallCache runs the members with a latest-version cache too small
	// for any value (--latest-cache-bytes=1500): puts find their previous
	// version's metadata only, and the prev_kv watcher's values are read
	// when the batch ends.
	SmallCache bool
}

// Result is what a run found.
type Result struct {
	Ops, Unknown, Events int
	Faults               []string
	Problems             []string
	Artifacts            string // directory with the history, visualization and logs (failures only)
}

// Run runs sc and reports every problem as a test error, keeping the
// artifacts of a failing run under artifactsDir.
func Run(t *testing.T, sc Scenario, artifactsDir string) Result {
	if sc.Workers == 0 {
		sc.Workers = 8
	}
	if sc.Interval == 0 {
		sc.Interval = 60 * time.Millisecond
	}
	t.Logf("scenario %s seed %d duration %v faults %v small cache %v", sc.Name, sc.Seed, sc.Duration, sc.Faults, sc.SmallCache)
	var extra []string
	if sc.SmallCache {
		extra = []string{"--latest-cache-bytes=1500"}
	}
	c := framework.Start(t, framework.Options{Size: 3, PeerProxy: !sc.DirectPeers, Extra: extra})
	all := append([]*framework.Member(nil), c.Members...)
	rng := rand.New(rand.NewPCG(sc.Seed, 0x5eed))
	h := newHistory()
	w := &watcher{}
	var res Result

	ctx, cancel := context.WithCancel(context.Background())
	watchCtx, stopWatch := context.WithCancel(context.Background())
	var wg, wwg sync.WaitGroup
	defer func() {
		cancel()
		stopWatch()
		wg.Wait()
		wwg.Wait()
		if t.Failed() && res.Artifacts == "" { // a fault or a wait failed the test
			res.Artifacts = saveArtifacts(t, sc, h, w, appendNew(all, c.Members), artifactsDir)
			t.Logf("seed %d: artifacts in %s", sc.Seed, res.Artifacts)
		}
	}()
	wwg.Add(1)
	clients := []*clientv3.Client{c.Client(), c.Client()}
	go func() { defer wwg.Done(); w.run(watchCtx, clients[0]) }()
	for i := range sc.Workers {
		cli := c.Client()
		clients = append(clients, cli)
		wk := &worker{id: i, cli: cli, rng: rand.New(rand.NewPCG(sc.Seed, uint64(i))), h: h, seen: map[string]Output{}}
		wg.Add(1)
		go func() { defer wg.Done(); wk.run(ctx, sc.Interval) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); leaseLoop(ctx, clients[1], h, 200*time.Millisecond) }()

	inj := &injector{t: t, c: c, rng: rng, log: t.Logf}
	end := time.Now().Add(sc.Duration)
	for len(sc.Faults) > 0 && time.Now().Before(end) {
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond) // the schedule's quiet time
		fault := sc.Faults[rng.IntN(len(sc.Faults))]
		res.Faults = append(res.Faults, fault)
		inj.inject(fault)
		all = appendNew(all, c.Members)
		for _, cli := range clients {
			cli.SetEndpoints(c.Endpoints()...) // a replaced member has a new client URL
		}
	}
	if d := time.Until(end); d > 0 {
		time.Sleep(d) // traffic without faults until the end of the run
	}
	cancel()
	wg.Wait()

	finalRev := finalReads(t, c, h, sc.Workers)
	if err := w.waitFor(finalRev, 30*time.Second); err != nil {
		res.Problems = append(res.Problems, err.Error())
	}
	stopWatch()
	wwg.Wait()
	res.Problems = append(res.Problems, check(t, h, w, finalRev, &res)...)
	if len(res.Problems) > 0 {
		res.Artifacts = saveArtifacts(t, sc, h, w, all, artifactsDir)
		for _, p := range res.Problems {
			t.Errorf("%s seed %d: %s", sc.Name, sc.Seed, p)
		}
		t.Errorf("%s: replay with: go test ./tests/robustness -run TestRobustnessRandom -args -robustness.runs=1 -robustness.seed=%d -robustness.duration=%v; artifacts in %s",
			sc.Name, sc.Seed, sc.Duration, res.Artifacts)
	}
	t.Logf("scenario %s seed %d: %d ops (%d unknown), %d watch events, faults %v, %d problems",
		sc.Name, sc.Seed, res.Ops, res.Unknown, res.Events, res.Faults, len(res.Problems))
	return res
}

func appendNew(all, ms []*framework.Member) []*framework.Member {
	seen := map[*framework.Member]bool{}
	for _, m := range all {
		seen[m] = true
	}
	for _, m := range ms {
		if !seen[m] {
			all = append(all, m)
		}
	}
	return all
}

// finalReads reads every key linearizably once the faults are over and
// returns the highest revision seen.
func finalReads(t *testing.T, c *framework.Cluster, h *History, client int) int64 {
	cli := c.Client()
	var rev int64
	deadline := time.Now().Add(30 * time.Second)
	for _, k := range Keys {
		for {
			call := h.now()
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			resp, err := cli.Get(ctx, k)
			cancel()
			if err == nil {
				h.add(client, Input{Kind: OpGet, Key: k}, call, kvOutput(resp))
				rev = max(rev, resp.Header.Revision)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("final read of %s: %v", k, err)
			}
			time.Sleep(50 * time.Millisecond) // poll until the deadline
		}
	}
	return rev
}

func check(t *testing.T, h *History, w *watcher, finalRev int64, res *Result) []string {
	ops := h.finish()
	res.Ops = len(ops)
	for _, op := range ops {
		if op.Output.(Output).Unknown {
			res.Unknown++
		}
	}
	var bad []string
	start := time.Now()
	switch r, _ := porcupine.CheckOperationsVerbose(KVModel(), ops, 2*time.Minute); r {
	case porcupine.Ok:
	case porcupine.Illegal:
		bad = append(bad, "porcupine: history is not linearizable")
	default:
		bad = append(bad, "porcupine: check timed out (history too large to decide)")
	}
	t.Logf("porcupine checked %d ops in %v", len(ops), time.Since(start).Round(time.Millisecond))
	w.mu.Lock()
	var events []WatchEvent
	for _, ev := range w.events {
		if ev.Rev <= finalRev {
			events = append(events, ev)
		}
	}
	w.mu.Unlock()
	res.Events = len(events)
	h.mu.Lock()
	defer h.mu.Unlock()
	bad = append(bad, checkWatch(events, h, finalRev)...)
	bad = append(bad, h.anomalies...)
	for _, r := range h.serializabe {
		if r.Exists && !h.written[r.Key][r.Value] {
			bad = append(bad, fmt.Sprintf("serializable read of %s returned %q, never written", r.Key, r.Value))
		}
	}
	return bad
}

// saveArtifacts writes the history, porcupine's visualization, the watch
// events and every member's log to dir/<name>-<seed>.
func saveArtifacts(t *testing.T, sc Scenario, h *History, w *watcher, ms []*framework.Member, dir string) string {
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "cairn-robustness")
	}
	dir = filepath.Join(dir, fmt.Sprintf("%s-%d-%d", sc.Name, sc.Seed, time.Now().Unix()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("artifacts: %v", err)
		return ""
	}
	ops := h.finish()
	sort.Slice(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	writeJSON(t, filepath.Join(dir, "history.json"), ops)
	w.mu.Lock()
	writeJSON(t, filepath.Join(dir, "watch.json"), map[string]any{"events": w.events, "errors": w.errs})
	w.mu.Unlock()
	model := KVModel()
	_, info := porcupine.CheckOperationsVerbose(model, ops, 2*time.Minute)
	if err := porcupine.VisualizePath(model, info, filepath.Join(dir, "porcupine.html")); err != nil {
		t.Logf("visualize: %v", err)
	}
	for _, m := range ms {
		_ = os.WriteFile(filepath.Join(dir, m.Name+".log"), []byte(m.Logs()), 0o644)
	}
	return dir
}

func writeJSON(t *testing.T, path string, v any) {
	b, err := json.MarshalIndent(v, "", " ")
	if err == nil {
		err = os.WriteFile(path, b, 0o644)
	}
	if err != nil {
		t.Logf("write %s: %v", path, err)
	}
}
