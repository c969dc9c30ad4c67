package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-kv/cairn/bench"
)

// The etcd figures were taken with etcd's own load tool
// (tools/benchmark of the etcd repository). With --etcd-benchmark the put
// rows also run with it against both servers: a check that cairn's lead does
// not come from our load client.

// etcdToolScenarios are the put rows of scenarios (their labels and
// targets) in etcd benchmark's flags: the same keys, values and key space
// as the cairn-bench rows. The tool has no --duration; a run is bounded by
// --total and by etcdToolTimeout.
func etcdToolScenarios(quick bool) []scenario {
	rows := map[string]scenario{}
	for _, sc := range scenarios(quick) {
		rows[sc.id] = sc
	}
	put := func(id, clients, conns, total, quickTotal string) scenario {
		if quick {
			total = quickTotal
		}
		sc := rows[id]
		sc.args = []string{"--clients", clients, "--conns", conns,
			"put", "--key-size", "8", "--val-size", "256", "--key-space-size", "100000", "--total", total}
		return sc
	}
	return []scenario{put("put1", "1", "1", "3000", "100"), put("put64", "64", "8", "30000", "500")}
}

// etcdToolTimeout bounds one run of etcd's tool.
const etcdToolTimeout = 2 * time.Minute

// etcdTool runs etcd's benchmark tool with args against cluster c of the
// server called name and parses its report, taking CPU times as bench does.
func (d *driver) etcdTool(ctx context.Context, name string, c *cluster, args []string) (runResult, error) {
	ctx, cancel := context.WithTimeout(ctx, etcdToolTimeout)
	defer cancel()
	full := append([]string{"--endpoints", c.endpoints(), "--precise"}, args...)
	cmd := exec.CommandContext(ctx, d.etcdBench, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb // stderr: a progress bar and gRPC's logs
	rr := runResult{cmd: "benchmark " + strings.Join(args, " ")}
	runErr, err := measured(c, name, cmd, &rr)
	if err != nil {
		return rr, err
	}
	if runErr != nil {
		return rr, fmt.Errorf("loadbench: %s: %v\n%s", rr.cmd, runErr, tail(errb.String(), 2000))
	}
	if rr.res, err = parseEtcdBenchmark(out.Bytes()); err != nil {
		return rr, fmt.Errorf("loadbench: %s: %w\n%s", rr.cmd, err, tail(out.String(), 2000))
	}
	d.logRun(name, rr)
	return rr, nil
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// parseEtcdBenchmark reads the report etcd's benchmark tool prints (run
// with --precise): the summary's Total and Requests/sec, the latency
// distribution's percentiles (seconds) and the error distribution's counts.
// A report without Requests/sec or without the 50th and 99th percentiles is
// an error: the run measured nothing.
func parseEtcdBenchmark(out []byte) (bench.Result, error) {
	var r bench.Result
	var haveRPS, haveTotal bool
	pct := map[string]*float64{"50": &r.P50Ms, "90": &r.P90Ms, "99": &r.P99Ms, "99.9": &r.P999Ms}
	seen := map[string]bool{}
	inErrors := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "Error distribution:":
			inErrors = true
		case inErrors && strings.HasPrefix(line, "["):
			num, msg, ok := strings.Cut(line[1:], "]")
			n, err := strconv.ParseUint(num, 10, 64)
			if !ok || err != nil {
				return r, fmt.Errorf("etcd benchmark report: error line %q", line)
			}
			r.Errors += n
			if len(r.ErrorSamples) < 5 {
				r.ErrorSamples = append(r.ErrorSamples, strings.TrimSpace(msg))
			}
		case strings.HasPrefix(line, "Requests/sec:"):
			v, err := reportFloat(strings.TrimPrefix(line, "Requests/sec:"), "")
			if err != nil {
				return r, fmt.Errorf("etcd benchmark report: %q: %w", line, err)
			}
			r.PerSecond, haveRPS = math.Round(v*10)/10, true
		case strings.HasPrefix(line, "Total:"):
			v, err := reportFloat(strings.TrimPrefix(line, "Total:"), " secs.")
			if err != nil {
				return r, fmt.Errorf("etcd benchmark report: %q: %w", line, err)
			}
			r.Seconds, haveTotal = v, true
		case strings.HasPrefix(line, "Average:"):
			v, err := reportFloat(strings.TrimPrefix(line, "Average:"), " secs.")
			if err != nil {
				return r, fmt.Errorf("etcd benchmark report: %q: %w", line, err)
			}
			r.MeanMs = msOf(v)
		case strings.HasPrefix(line, "Slowest:"):
			v, err := reportFloat(strings.TrimPrefix(line, "Slowest:"), " secs.")
			if err != nil {
				return r, fmt.Errorf("etcd benchmark report: %q: %w", line, err)
			}
			r.MaxMs = msOf(v)
		default:
			p, rest, ok := strings.Cut(line, "% in ")
			if !ok {
				continue
			}
			dst := pct[p]
			if dst == nil {
				continue
			}
			v, err := reportFloat(rest, " secs.")
			if err != nil {
				return r, fmt.Errorf("etcd benchmark report: %q: %w", line, err)
			}
			*dst, seen[p] = msOf(v), true
		}
	}
	if err := sc.Err(); err != nil {
		return r, fmt.Errorf("etcd benchmark report: %w", err)
	}
	if !haveRPS || !haveTotal || !seen["50"] || !seen["99"] {
		return r, errors.New("etcd benchmark report: no Total, Requests/sec or 50th and 99th percentiles in it")
	}
	r.Requests = uint64(math.Round(r.PerSecond * r.Seconds))
	return r, nil
}

// reportFloat parses one number of the report, with suffix (a unit) after
// it; it must be finite and not negative.
func reportFloat(s, suffix string) (float64, error) {
	s = strings.TrimSpace(s)
	if suffix != "" {
		var ok bool
		if s, ok = strings.CutSuffix(s, suffix); !ok {
			return 0, fmt.Errorf("no %q after the number", suffix)
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, err
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, fmt.Errorf("%v is not a measurement", v)
	}
	return v, nil
}

// msOf rounds seconds to milliseconds with three decimals, as cairn-bench
// reports them.
func msOf(sec float64) float64 { return math.Round(sec*1e6) / 1e3 }
