package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cairn-kv/cairn/bench"
)

// scenario is one row of the load table.
type scenario struct {
	id, label string
	args      []string  // cairn-bench arguments after the scenario's endpoints
	etcd      [2]string // the etcd figures, 1 and 3 members
	target    string    // the goal for cairn/etcd
}

// scenarios are the table: 8-byte keys, 256-byte values, random
// keys over 100,000, 64 clients over 8 connections unless stated.
func scenarios(quick bool) []scenario {
	n := func(full, small string) string {
		if quick {
			return small
		}
		return full
	}
	return []scenario{
		{"put1", "put, 1 client (req/s, p50)", []string{"put", "--clients", "1", "--conns", "1", "--total", n("10000", "200"), "--duration", "10s"}, [2]string{"2,075/s p50 0.46 ms", "1,015/s p50 0.96 ms"}, "p50 ≤ 0.7x"},
		{"put64", "put, 64 clients (req/s, p99)", []string{"put", "--total", n("50000", "500"), "--duration", "15s"}, [2]string{"16,722/s p99 9.7 ms", "6,479/s p99 64 ms"}, "≥ 1.5x, p99 ≤ 0.5x"},
		{"rangel", "range 1 key, linearizable", []string{"range", "--consistency", "l", "--total", n("100000", "500"), "--duration", "10s"}, [2]string{"27,049/s", "16,709/s"}, "≥ 1.3x"},
		{"ranges", "range 1 key, serializable", []string{"range", "--consistency", "s", "--total", n("100000", "500"), "--duration", "10s"}, [2]string{"30,678/s", "25,801/s"}, "≥ 1.2x"},
		{"txn", "txn with 1 put", []string{"txn-put", "--total", n("50000", "500"), "--duration", "15s"}, [2]string{"14,842/s", "5,627/s"}, "≥ 1.5x"},
		{"watch", "watch events/s (1000 watchers, 100 keys)", []string{"watch", "--watchers", "1000", "--watched-keys", "100", "--puts", n("20000", "100"), "--duration", "15s"}, [2]string{"45,155/s", "19,754/s"}, "≥ 1.5x"},
		{"keepalive", "lease keep-alive", []string{"lease-keepalive", "--total", n("50000", "500"), "--duration", "10s"}, [2]string{"—", "—"}, "—"},
	}
}

type runResult struct {
	cmd string
	res bench.Result
	// memberCPU is the CPU time every member of the cluster used during
	// the run, clientCPU the load client's.
	memberCPU, clientCPU time.Duration
}

// Names of the servers under test; they also prefix clusters' data dirs.
const (
	cairnName = "cairn"
	etcdName  = "etcd"
)

// report is everything the BENCHMARKS.md section shows.
type report struct {
	started     time.Time
	commit      string // the tree's commit when the run began (binaries are built just before)
	took        time.Duration
	order       []scenario
	keys        int
	cairn       results
	etcd        *results // nil: etcd not measured here (no --etcd)
	etcdVersion string   // first line of `etcd --version`
	rounds      int
	pairs       [2]map[string]*pairRuns // side by side: every round's runs by scenario id
	// The same, run with etcd's benchmark tool (--etcd-benchmark); xorder
	// is empty without it.
	xorder []scenario
	xpairs [2]map[string]*pairRuns
}

// results are one server's measurements.
type results struct {
	runs [2]map[string]runResult // [0] 1 member, [1] 3 members; the median run of the rounds
	mem  memFigures
}

// pairRuns are one scenario's runs against both servers, one pair per
// round, and the order they ran in.
type pairRuns struct {
	etcd, cairn []runResult
	etcdFirst   []bool
}

// memFigures are the RSS and restart measurements of one server.
type memFigures struct {
	loadCmd  string
	loadSecs float64
	rss      float64 // MiB after writing the keys
	hwm      float64 // peak while writing
	rssAfter float64 // MiB right after the first restart is healthy
	restarts []time.Duration
}

// of returns the results of the server called name.
func (rep *report) of(name string) *results {
	if name == etcdName {
		return rep.etcd
	}
	return &rep.cairn
}

// server is one binary under test.
type server struct {
	name, bin string
}

type driver struct {
	bin, work string // bin: the directory holding cairn and cairn-bench
	etcd      string // path of the etcd binary; empty: cairn only
	etcdBench string // path of etcd's benchmark tool; empty: not run
	rounds    int    // times each scenario runs against each server (side by side)
	log       *slog.Logger
	quick     bool
	keys      int
}

// servers returns the binaries under test: cairn, then etcd when given.
func (d *driver) servers() []server {
	s := []server{{cairnName, filepath.Join(d.bin, "cairn")}}
	if d.etcd != "" {
		s = append(s, server{etcdName, d.etcd})
	}
	return s
}

// etcdFirst reports whether scenario number i runs against etcd before
// cairn (even i) or after (odd i): alternating, so that slow spells of the
// shared box hit both servers alike.
func etcdFirst(i int) bool { return i%2 == 0 }

// runOrder returns d's servers in the order they run scenario number i.
func (d *driver) runOrder(i int) []server {
	s := d.servers() // cairn first
	if etcdFirst(i) {
		slices.Reverse(s)
	}
	return s
}

// bench runs cairn-bench with args against cluster c of the server called
// name, decodes its JSON and takes the CPU time the members and the client
// used.
func (d *driver) bench(ctx context.Context, name string, c *cluster, args []string) (runResult, error) {
	full := append(append([]string{}, args...), "--endpoints", c.endpoints(), "--json")
	cmd := exec.CommandContext(ctx, filepath.Join(d.bin, "cairn-bench"), full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	rr := runResult{cmd: "cairn-bench " + strings.Join(args, " ")}
	runErr, err := measured(c, name, cmd, &rr)
	if err != nil {
		return rr, err
	}
	if jerr := json.Unmarshal(out.Bytes(), &rr.res); jerr != nil {
		return rr, fmt.Errorf("loadbench: %s: %v (%v)\n%s", rr.cmd, jerr, runErr, errb.String())
	}
	d.logRun(name, rr)
	return rr, nil
}

// measured runs cmd, a load client against cluster c of the server called
// name, and sets rr's CPU times: the members' during the run and the
// client's. runErr is cmd's own error; err a failure to read the members'.
func measured(c *cluster, name string, cmd *exec.Cmd, rr *runResult) (runErr, err error) {
	before, err := c.cpu()
	if err != nil {
		return nil, fmt.Errorf("loadbench: CPU time of %s: %w", name, err)
	}
	runErr = cmd.Run()
	after, err := c.cpu()
	if err != nil {
		return runErr, fmt.Errorf("loadbench: CPU time of %s: %w", name, err)
	}
	rr.memberCPU = after - before
	if ps := cmd.ProcessState; ps != nil {
		rr.clientCPU = ps.UserTime() + ps.SystemTime()
	}
	return runErr, nil
}

// logRun logs one run's headline figures.
func (d *driver) logRun(name string, rr runResult) {
	d.log.Info("ran", "server", name, "cmd", rr.cmd, "per_second", rr.res.PerSecond, "p50_ms", rr.res.P50Ms, "p99_ms", rr.res.P99Ms, "errors", rr.res.Errors,
		"member_cpu_us_per_op", perOp(rr.memberCPU, rr.res), "client_cpu_us_per_op", perOp(rr.clientCPU, rr.res))
}

func (d *driver) all(ctx context.Context) (*report, error) {
	rep := &report{started: time.Now(), commit: commit(), order: scenarios(d.quick), keys: d.keys}
	if d.etcd != "" {
		v, err := exec.CommandContext(ctx, d.etcd, "--version").Output()
		if err != nil {
			return nil, fmt.Errorf("loadbench: %s --version: %w", d.etcd, err)
		}
		rep.etcd = &results{}
		rep.etcdVersion, _, _ = strings.Cut(strings.TrimSpace(string(v)), "\n")
	}
	rep.rounds = d.rounds
	if d.etcd != "" && d.etcdBench != "" {
		rep.xorder = etcdToolScenarios(d.quick)
	}
	for i, size := range []int{1, 3} {
		pairs, xpairs, err := d.table(ctx, size, rep.order, rep.xorder)
		if err != nil {
			return nil, err
		}
		rep.pairs[i], rep.xpairs[i] = pairs, xpairs
		rep.cairn.runs[i] = map[string]runResult{}
		if rep.etcd != nil {
			rep.etcd.runs[i] = map[string]runResult{}
		}
		for id, pr := range pairs {
			rep.cairn.runs[i][id] = medianRun(pr.cairn)
			if rep.etcd != nil {
				rep.etcd.runs[i][id] = medianRun(pr.etcd)
			}
		}
	}
	// One server at a time: the other's cluster is stopped meanwhile.
	for _, s := range d.servers() {
		if err := d.restartFigures(ctx, s, &rep.of(s.name).mem); err != nil {
			return nil, err
		}
	}
	rep.took = time.Since(rep.started)
	return rep, nil
}

// table starts a fresh cluster of size members of every server, all up at
// once, and runs every scenario against each server back to back (in
// runOrder), d.rounds times over (once without etcd): in each round the
// cairn-bench scenarios of order, then those of xorder with etcd's
// benchmark tool. It returns the runs by scenario id, of order and of
// xorder.
func (d *driver) table(ctx context.Context, size int, order, xorder []scenario) (pairs, xpairs map[string]*pairRuns, err error) {
	clusters := map[string]*cluster{}
	for _, s := range d.servers() {
		c, err := newCluster(s.name, s.bin, d.work, size)
		if err != nil {
			return nil, nil, err
		}
		if err := c.startAll(); err != nil {
			return nil, nil, err
		}
		defer c.stopAll()
		clusters[s.name] = c
	}
	for _, c := range clusters {
		if err := c.waitHealthy(ctx, 60*time.Second); err != nil {
			return nil, nil, err
		}
	}
	rounds := 1
	if d.etcd != "" {
		rounds = d.rounds
	}
	pairs, xpairs = map[string]*pairRuns{}, map[string]*pairRuns{}
	type runner func(ctx context.Context, name string, c *cluster, args []string) (runResult, error)
	for r := range rounds {
		for i, sc := range append(slices.Clone(order), xorder...) {
			into, run := pairs, runner(d.bench)
			if i >= len(order) {
				into, run = xpairs, d.etcdTool
			}
			pr := into[sc.id]
			if pr == nil {
				pr = &pairRuns{}
				into[sc.id] = pr
			}
			// Alternate per row and per round.
			pr.etcdFirst = append(pr.etcdFirst, etcdFirst(i+r))
			for _, s := range d.runOrder(i + r) {
				rr, err := run(ctx, s.name, clusters[s.name], sc.args)
				if err != nil {
					return nil, nil, fmt.Errorf("loadbench: %s, %d members: %w", s.name, size, err)
				}
				if s.name == etcdName {
					pr.etcd = append(pr.etcd, rr)
				} else {
					pr.cairn = append(pr.cairn, rr)
				}
			}
		}
	}
	return pairs, xpairs, nil
}

// medianRun is the run with the median throughput (the lower middle one
// of an even count).
func medianRun(runs []runResult) runResult {
	if len(runs) == 0 {
		return runResult{}
	}
	s := slices.Clone(runs)
	slices.SortFunc(s, func(a, b runResult) int { return cmp.Compare(a.res.PerSecond, b.res.PerSecond) })
	return s[(len(s)-1)/2]
}

// restartFigures writes d.keys keys (16-byte keys, 256-byte values) to a
// fresh member of s, reads its RSS, then restarts it three times, timing
// each start until /health answers true, and reads the RSS after the first.
func (d *driver) restartFigures(ctx context.Context, s server, mf *memFigures) error {
	c, err := newCluster(s.name, s.bin, d.work+"/rss", 1)
	if err != nil {
		return err
	}
	if err := c.startAll(); err != nil {
		return err
	}
	defer c.stopAll()
	if err := c.waitHealthy(ctx, 60*time.Second); err != nil {
		return err
	}
	const ops = 100
	args := []string{"txn-put", "--txn-ops", fmt.Sprint(ops), "--sequential-keys", "--key-size", "16", "--val-size", "256",
		"--key-space", fmt.Sprint(d.keys), "--total", fmt.Sprint(d.keys / ops), "--clients", "16", "--conns", "4"}
	rr, err := d.bench(ctx, s.name, c, args)
	if err != nil {
		return err
	}
	if rr.res.Errors > 0 {
		return fmt.Errorf("loadbench: loading keys into %s: %d errors: %v", s.name, rr.res.Errors, rr.res.ErrorSamples)
	}
	mf.loadCmd, mf.loadSecs = rr.cmd, rr.res.Seconds
	m := c.members[0]
	if mf.rss, err = m.statusMiB("VmRSS"); err != nil {
		return err
	}
	if mf.hwm, err = m.statusMiB("VmHWM"); err != nil {
		return err
	}
	for i := range 3 {
		m.stop()
		t0 := time.Now()
		if err := c.start(m, "new"); err != nil {
			return err
		}
		if err := c.waitHealthy(ctx, 120*time.Second); err != nil {
			return err
		}
		mf.restarts = append(mf.restarts, time.Since(t0))
		if i == 0 {
			if mf.rssAfter, err = m.statusMiB("VmRSS"); err != nil {
				return err
			}
		}
	}
	d.log.Info("restart figures", "server", s.name, "rss_mib", mf.rss, "rss_after_restart_mib", mf.rssAfter, "restarts", mf.restarts)
	return nil
}
