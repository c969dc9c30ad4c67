package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cairn-kv/cairn/bench"
)

// scenario is one row of the load table.
type scenario struct {
	id, label string
	args      []string // cairn-bench arguments after the scenario's endpoints
	etcd      [2]string
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
		{"put1", "put, 1 client (req/s, p50)", []string{"put", "--clients", "1", "--conns", "1", "--total", n("10000", "200"), "--duration", "10s"}, [2]string{"2,075/s p50 0.46 ms", "1,015/s p50 0.96 ms"}},
		{"put64", "put, 64 clients (req/s, p99)", []string{"put", "--total", n("50000", "500"), "--duration", "15s"}, [2]string{"16,722/s p99 9.7 ms", "6,479/s p99 64 ms"}},
		{"rangel", "range 1 key, linearizable", []string{"range", "--consistency", "l", "--total", n("100000", "500"), "--duration", "10s"}, [2]string{"27,049/s", "16,709/s"}},
		{"ranges", "range 1 key, serializable", []string{"range", "--consistency", "s", "--total", n("100000", "500"), "--duration", "10s"}, [2]string{"30,678/s", "25,801/s"}},
		{"txn", "txn with 1 put", []string{"txn-put", "--total", n("50000", "500"), "--duration", "15s"}, [2]string{"14,842/s", "5,627/s"}},
		{"watch", "watch events/s (1000 watchers, 100 keys)", []string{"watch", "--watchers", "1000", "--watched-keys", "100", "--puts", n("20000", "100"), "--duration", "15s"}, [2]string{"45,155/s", "19,754/s"}},
		{"keepalive", "lease keep-alive", []string{"lease-keepalive", "--total", n("50000", "500"), "--duration", "10s"}, [2]string{"—", "—"}},
	}
}

type runResult struct {
	cmd string
	res bench.Result
}

// report is everything the BENCHMARKS.md section shows.
type report struct {
	started  time.Time
	took     time.Duration
	runs     [2]map[string]runResult // [0] 1 member, [1] 3 members
	order    []scenario
	keys     int
	loadCmd  string
	loadSecs float64
	rss      float64 // MiB after writing the keys
	hwm      float64 // peak while writing
	rssAfter float64 // MiB right after the first restart is healthy
	restarts []time.Duration
}

type driver struct {
	bin, work string
	log       *slog.Logger
	quick     bool
	keys      int
}

// bench runs cairn-bench with args against endpoints and decodes its JSON.
func (d *driver) bench(ctx context.Context, endpoints string, args []string) (runResult, error) {
	full := append(append([]string{}, args...), "--endpoints", endpoints, "--json")
	cmd := exec.CommandContext(ctx, filepath.Join(d.bin, "cairn-bench"), full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	rr := runResult{cmd: "cairn-bench " + strings.Join(args, " ")}
	if jerr := json.Unmarshal(out.Bytes(), &rr.res); jerr != nil {
		return rr, fmt.Errorf("loadbench: %s: %v (%v)\n%s", rr.cmd, jerr, err, errb.String())
	}
	d.log.Info("ran", "cmd", rr.cmd, "per_second", rr.res.PerSecond, "p50_ms", rr.res.P50Ms, "p99_ms", rr.res.P99Ms, "errors", rr.res.Errors)
	return rr, nil
}

func (d *driver) all(ctx context.Context) (*report, error) {
	rep := &report{started: time.Now(), order: scenarios(d.quick), keys: d.keys}
	for i, size := range []int{1, 3} {
		runs, err := d.table(ctx, size, rep.order)
		if err != nil {
			return nil, err
		}
		rep.runs[i] = runs
	}
	if err := d.restartFigures(ctx, rep); err != nil {
		return nil, err
	}
	rep.took = time.Since(rep.started)
	return rep, nil
}

// table runs every scenario against a fresh cluster of size members.
func (d *driver) table(ctx context.Context, size int, order []scenario) (map[string]runResult, error) {
	c, err := newCluster(d.bin, d.work, size)
	if err != nil {
		return nil, err
	}
	if err := c.startAll(); err != nil {
		return nil, err
	}
	defer c.stopAll()
	if err := c.waitHealthy(ctx, 60*time.Second); err != nil {
		return nil, err
	}
	runs := map[string]runResult{}
	for _, s := range order {
		rr, err := d.bench(ctx, c.endpoints(), s.args)
		if err != nil {
			return nil, err
		}
		runs[s.id] = rr
	}
	return runs, nil
}

// restartFigures writes d.keys keys (16-byte keys, 256-byte values) to a
// fresh member, reads its RSS, then restarts it three times, timing each
// start until /health answers true, and reads the RSS after the first.
func (d *driver) restartFigures(ctx context.Context, rep *report) error {
	c, err := newCluster(d.bin, d.work+"/rss", 1)
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
	rr, err := d.bench(ctx, c.endpoints(), args)
	if err != nil {
		return err
	}
	if rr.res.Errors > 0 {
		return fmt.Errorf("loadbench: loading keys: %d errors: %v", rr.res.Errors, rr.res.ErrorSamples)
	}
	rep.loadCmd, rep.loadSecs = rr.cmd, rr.res.Seconds
	m := c.members[0]
	if rep.rss, err = m.statusMiB("VmRSS"); err != nil {
		return err
	}
	if rep.hwm, err = m.statusMiB("VmHWM"); err != nil {
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
		rep.restarts = append(rep.restarts, time.Since(t0))
		if i == 0 {
			if rep.rssAfter, err = m.statusMiB("VmRSS"); err != nil {
				return err
			}
		}
	}
	d.log.Info("restart figures", "rss_mib", rep.rss, "rss_after_restart_mib", rep.rssAfter, "restarts", rep.restarts)
	return nil
}
