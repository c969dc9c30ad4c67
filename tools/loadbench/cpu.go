package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-kv/cairn/bench"
)

// clockTick is the unit of the CPU times in /proc/<pid>/stat (USER_HZ,
// which Linux fixes at 100 for every architecture it exports it on).
const clockTick = 10 * time.Millisecond

// procCPU returns the user plus system CPU time the process pid has used,
// from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15) from the text of a
// /proc/<pid>/stat file. The command name (field 2) is in parentheses and
// may itself hold spaces and parentheses, so fields are counted from the
// last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("loadbench: stat without a command name")
	}
	// After ')': field 3 (state) onwards; utime is field 14, stime 15.
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("loadbench: stat has %d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("loadbench: stat CPU field %q: not a tick count", s)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// cpu is the CPU time all running members of c have used so far.
func (c *cluster) cpu() (time.Duration, error) {
	var sum time.Duration
	for _, m := range c.members {
		if m.cmd == nil || m.cmd.Process == nil {
			continue
		}
		d, err := procCPU(m.cmd.Process.Pid)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

// perOp is d per request of r in microseconds (watch: per event delivered);
// 0 when r has none.
func perOp(d time.Duration, r bench.Result) float64 {
	n := r.Requests
	if r.Events > 0 {
		n = r.Events
	}
	if n == 0 {
		return 0
	}
	return float64(d.Nanoseconds()) / 1e3 / float64(n)
}

// medianCPU is the median over runs of the members' (client false) or the
// load client's (client true) CPU time per request, in microseconds; 0 for
// no runs.
func medianCPU(runs []runResult, client bool) float64 {
	var v []float64
	for _, rr := range runs {
		d := rr.memberCPU
		if client {
			d = rr.clientCPU
		}
		v = append(v, perOp(d, rr.res))
	}
	if len(v) == 0 {
		return 0
	}
	return median(v)
}

// cpuTable prints the CPU time per request of every scenario: the members'
// for each server and cluster size (with cairn over etcd when etcd ran) and
// the load client's.
func cpuTable(p printer, rep *report) {
	p("CPU time per request (µs; watch: per event delivered), the median over the runs of each cell: members is the user and system\n")
	p("time of every member process during the run (from `/proc/<pid>/stat`), summed over the cluster; client is cairn-bench's own.\n")
	p("A steadier comparison than throughput on this shared box: it does not move with what else the two cores are running.\n")
	p("cairn/etcd below 1x: cairn spends less.\n\n")
	us := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	if rep.etcd == nil {
		p("| scenario | cairn 1 member | client | cairn 3 members | client |\n|---|---|---|---|---|\n")
		for _, s := range rep.order {
			a, b := rep.pairs[0][s.id], rep.pairs[1][s.id]
			p("| %s | %s | %s | %s | %s |\n", cpuLabel(s.label), us(medianCPU(a.cairn, false)), us(medianCPU(a.cairn, true)),
				us(medianCPU(b.cairn, false)), us(medianCPU(b.cairn, true)))
		}
		p("\n")
		return
	}
	over := func(c, e float64) string {
		if e <= 0 {
			return "—"
		}
		return fmt.Sprintf("%.2fx", c/e)
	}
	p("| scenario | etcd 1 member | cairn 1 member | cairn/etcd | client (etcd / cairn runs) | etcd 3 members | cairn 3 members | cairn/etcd | client (etcd / cairn runs) |\n")
	p("|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range rep.order {
		p("| %s", cpuLabel(s.label))
		for i := range 2 {
			pr := rep.pairs[i][s.id]
			e, c := medianCPU(pr.etcd, false), medianCPU(pr.cairn, false)
			p(" | %s | %s | %s | %s / %s", us(e), us(c), over(c, e), us(medianCPU(pr.etcd, true)), us(medianCPU(pr.cairn, true)))
		}
		p(" |\n")
	}
	p("\n")
}

// cpuLabel is a scenario's label without the note on which figures its
// throughput row shows ("put, 1 client (req/s, p50)" → "put, 1 client").
func cpuLabel(label string) string {
	if i := strings.Index(label, " (req/s"); i >= 0 {
		return label[:i]
	}
	return label
}
