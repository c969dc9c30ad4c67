package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

const sectionTitle = "## Load: cairn vs etcd"

func sh(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "?"
}

func commit() string {
	c := sh("git", "rev-parse", "--short=12", "HEAD")
	if sh("git", "status", "--porcelain", "--untracked-files=no") != "" {
		c += " (with uncommitted changes)"
	}
	return c
}

func cell(rr runResult, id string) string {
	r := rr.res
	unit := "/s"
	if id == "watch" {
		unit = " events/s"
	}
	s := fmt.Sprintf("%s%s", group(r.PerSecond), unit)
	switch id {
	case "put1":
		s += fmt.Sprintf(" p50 %.2f ms", r.P50Ms)
	case "put64":
		s += fmt.Sprintf(" p99 %.1f ms", r.P99Ms)
	}
	if r.Errors > 0 {
		s += fmt.Sprintf(" (%d errors)", r.Errors)
	}
	return s
}

// group formats v with thousands separators, no decimals.
func group(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// render returns the load section: cairn and etcd measured side by side
// when etcd ran here, else cairn beside the etcd figures.
func render(rep *report) string {
	if rep.etcd != nil {
		return renderSideBySide(rep)
	}
	return renderCairnOnly(rep)
}

// printer appends formatted text to a section.
type printer func(format string, args ...any)

// header prints the title, when the run happened and the machine line, up
// to "over loopback".
func header(p printer, rep *report) {
	p("%s\n\n", sectionTitle)
	p("Written by `make bench` (tools/loadbench) on %s; the whole run took %s.\n\n", rep.started.UTC().Format("2006-01-02 15:04 MST"), rep.took.Round(time.Second))
	p("Machine: `nproc` = %d, CPU %s, kernel %s, %s; commit %s. Load client and all members on the one box over loopback\n",
		runtime.NumCPU(), cpuModel(), sh("uname", "-r"), runtime.Version(), rep.commit)
}

// restartSpan formats the fastest and slowest restart.
func restartSpan(restarts []time.Duration) string {
	mn, mx := restarts[0], restarts[0]
	for _, d := range restarts {
		mn, mx = min(mn, d), max(mx, d)
	}
	return fmt.Sprintf("%.2f-%.2f s (%d restarts)", mn.Seconds(), mx.Seconds(), len(restarts))
}

// latencyRow prints one row of the per-run latency table; server, when not
// empty, fills a server column after members.
func latencyRow(p printer, size int, server string, rr runResult) {
	r := rr.res
	col := ""
	if server != "" {
		col = " " + server + " |"
	}
	p("| %d |%s `%s` | %d | %d | %s | %.2f | %.2f | %.2f | %.2f |\n", size, col, rr.cmd, r.Requests, r.Errors, group(r.PerSecond), r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms)
}

// renderCairnOnly is the section without --etcd: cairn's figures beside the
// issue's etcd figures.
func renderCairnOnly(rep *report) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	header(p, rep)
	p("(members on 127.0.0.1-3, fresh data dirs, default heartbeat/election). etcd v3.7.1's figures are the issue's, measured with etcd's\n")
	p("own benchmark tool on this kind of machine, not on this one. The box is shared with other jobs: treat the figures as rough.\n\n")
	p("Parameters unless stated: 8-byte keys, 256-byte values, random keys over 100,000, 64 clients over 8 connections.\n\n")
	p("| scenario | etcd 1 member | cairn 1 member | etcd 3 members | cairn 3 members |\n|---|---|---|---|---|\n")
	c := &rep.cairn
	for _, s := range rep.order {
		p("| %s | %s | %s | %s | %s |\n", s.label, s.etcd[0], cell(c.runs[0][s.id], s.id), s.etcd[1], cell(c.runs[1][s.id], s.id))
	}
	p("| RSS after writing %s keys (16 B keys, 256 B values) | 458 MiB | %.0f MiB (peak %.0f MiB) | | |\n", group(float64(rep.keys)), c.mem.rss, c.mem.hwm)
	p("| RSS after a restart | 700 MiB | %.0f MiB | | |\n", c.mem.rssAfter)
	p("| restart until healthy with %s keys | 3.1-3.3 s | %s | | |\n\n", group(float64(rep.keys)), restartSpan(c.mem.restarts))
	cpuTable(p, rep)
	p("Latency percentiles of every run (ms; watch: put-to-event latency):\n\n")
	p("| members | command | requests | errors | per second | p50 | p90 | p99 | p99.9 |\n|---|---|---|---|---|---|---|---|---|\n")
	for i, size := range []int{1, 3} {
		for _, s := range rep.order {
			latencyRow(p, size, "", c.runs[i][s.id])
		}
	}
	p("\nThe %s keys were written with `%s` (%.1f s; %d puts per transaction to keep `make bench` short),\n", group(float64(rep.keys)), c.mem.loadCmd, c.mem.loadSecs, 100)
	p("then RSS read from `/proc/<pid>/status` (VmRSS, VmHWM); each restart is SIGTERM, start, poll `/health` every 10 ms until `\"health\":\"true\"`.\n")
	p("Every command ran with `--endpoints <the cluster's client URLs> --json`; the clusters were started by tools/loadbench.\n")
	return b.String()
}

// ratio is the cairn/etcd cell of scenario id: throughput, and for the put
// rows the latency percentile the target is about; over several
// rounds, the median of the rounds' paired ratios, with the throughput
// ratios' range.
func ratio(id string, pr *pairRuns) string {
	var thr, lat []float64
	for r := range min(len(pr.etcd), len(pr.cairn)) {
		e, c := pr.etcd[r].res, pr.cairn[r].res
		if e.PerSecond <= 0 {
			return "—"
		}
		thr = append(thr, c.PerSecond/e.PerSecond)
		switch id {
		case "put1":
			lat = append(lat, c.P50Ms/e.P50Ms)
		case "put64":
			lat = append(lat, c.P99Ms/e.P99Ms)
		}
	}
	if len(thr) == 0 {
		return "—"
	}
	s := fmt.Sprintf("%.2fx", median(thr))
	if len(thr) > 1 {
		s += fmt.Sprintf(" (%.2f-%.2f)", slices.Min(thr), slices.Max(thr))
	}
	switch id {
	case "put1":
		s += fmt.Sprintf(", p50 %.2fx", median(lat))
	case "put64":
		s += fmt.Sprintf(", p99 %.2fx", median(lat))
	}
	return s
}

// median of v (the mean of the middle two for an even count).
func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// memCells formats one server's RSS and restart cells.
func memCells(mf memFigures) (rss, after, restart string) {
	return fmt.Sprintf("%.0f MiB (peak %.0f MiB)", mf.rss, mf.hwm), fmt.Sprintf("%.0f MiB", mf.rssAfter), restartSpan(mf.restarts)
}

// renderSideBySide is the section with etcd measured here: both servers'
// figures, their ratio and the target, then the etcd
// figures for reference.
func renderSideBySide(rep *report) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	header(p, rep)
	version := "v" + strings.TrimPrefix(rep.etcdVersion, "etcd Version: ")
	p("(members on 127.0.0.1-3, fresh data dirs, default heartbeat/election). etcd %s (`%s` from `etcd --version`; built from the\n", version, rep.etcdVersion)
	p("Go module proxy by tools/build-etcd.sh) ran side by side with cairn: for each cluster size an etcd and a cairn cluster were up at\n")
	p("once (different ports), and each scenario ran the same cairn-bench command against both, back to back, alternating which went\n")
	p("first from row to row (etcd in the first row), so that slow spells of this shared box hit both. The box is shared with other jobs:\n")
	p("compare within a row rather than across runs.")
	if rep.rounds > 1 {
		p(" Every scenario ran %d times against each server (the order alternating per round too): a cell is the run with the\n", rep.rounds)
		p("median throughput, cairn/etcd the median of the %d paired ratios with their range in brackets.", rep.rounds)
	}
	p("\n\n")
	p("Parameters unless stated: 8-byte keys, 256-byte values, random keys over 100,000, 64 clients over 8 connections.\n")
	p("cairn/etcd: cairn's throughput over etcd's (above 1x: cairn faster) and, in the put rows, cairn's p50 or p99 over etcd's (below\n")
	p("1x: cairn quicker); target: the issue's goal for that ratio.\n\n")
	p("| scenario | etcd 1 member | cairn 1 member | cairn/etcd | etcd 3 members | cairn 3 members | cairn/etcd | target |\n")
	p("|---|---|---|---|---|---|---|---|\n")
	e, c := rep.etcd, &rep.cairn
	for _, s := range rep.order {
		p("| %s | %s | %s | %s | %s | %s | %s | %s |\n", s.label,
			cell(e.runs[0][s.id], s.id), cell(c.runs[0][s.id], s.id), ratio(s.id, rep.pairs[0][s.id]),
			cell(e.runs[1][s.id], s.id), cell(c.runs[1][s.id], s.id), ratio(s.id, rep.pairs[1][s.id]), s.target)
	}
	keys := group(float64(rep.keys))
	eRSS, eAfter, eRestart := memCells(e.mem)
	cRSS, cAfter, cRestart := memCells(c.mem)
	p("| RSS after writing %s keys (16 B keys, 256 B values) | %s | %s | | | | | ≤ 180 MiB |\n", keys, eRSS, cRSS)
	p("| RSS after a restart | %s | %s | | | | | no higher than after writing |\n", eAfter, cAfter)
	p("| restart until healthy with %s keys | %s | %s | | | | | ≤ 1 s |\n\n", keys, eRestart, cRestart)
	cpuTable(p, rep)
	crossCheck(p, rep)
	p("The issue's etcd figures (etcd's own benchmark tool, another machine of this kind):\n\n")
	p("| scenario | etcd 1 member | etcd 3 members |\n|---|---|---|\n")
	for _, s := range rep.order {
		p("| %s | %s | %s |\n", s.label, s.etcd[0], s.etcd[1])
	}
	p("| RSS after writing 1,000,000 keys (16 B keys, 256 B values) | 458 MiB | |\n")
	p("| RSS after a restart | 700 MiB | |\n")
	p("| restart until healthy with 1,000,000 keys | 3.1-3.3 s | |\n\n")
	p("Latency percentiles of every run, in the order they ran (ms; watch: put-to-event latency):\n\n")
	p("| members | server | command | requests | errors | per second | p50 | p90 | p99 | p99.9 |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for i, size := range []int{1, 3} {
		for r := range rep.rounds {
			for j, s := range append(slices.Clone(rep.order), rep.xorder...) {
				pr := rep.pairs[i][s.id]
				if j >= len(rep.order) {
					pr = rep.xpairs[i][s.id]
				}
				if r >= len(pr.etcdFirst) {
					continue
				}
				first, second := pr.cairn[r], pr.etcd[r]
				fn, sn := cairnName, etcdName
				if pr.etcdFirst[r] {
					first, second, fn, sn = second, first, sn, fn
				}
				latencyRow(p, size, fn, first)
				latencyRow(p, size, sn, second)
			}
		}
	}
	p("\nThe %s keys were written to a fresh one-member cluster of each server in turn (cairn's, then etcd's; never both at once)\n", keys)
	p("with `%s` (cairn %.1f s, etcd %.1f s; %d puts per transaction to keep `make bench` short),\n", c.mem.loadCmd, c.mem.loadSecs, e.mem.loadSecs, 100)
	p("then RSS read from `/proc/<pid>/status` (VmRSS, VmHWM); each restart is SIGTERM, start, poll `/health` every 10 ms until `\"health\":\"true\"`.\n")
	p("Every cairn-bench command ran with `--endpoints <the cluster's client URLs> --json`")
	if len(rep.xorder) > 0 {
		p(", every benchmark command with `--endpoints <the same> --precise`")
	}
	p("; the clusters were started by tools/loadbench.\n")
	return b.String()
}

// crossCheck prints the rows run with etcd's benchmark tool, if any: both
// servers' figures, cairn/etcd as in the main table, and the members' CPU
// time per request.
func crossCheck(p printer, rep *report) {
	if len(rep.xorder) == 0 {
		return
	}
	p("The put rows again with etcd's own load tool (`benchmark`, tools/benchmark of etcd %s, built from the Go module proxy by\n", strings.TrimPrefix(rep.etcdVersion, "etcd Version: "))
	p("tools/build-etcd-benchmark.sh), the tool the issue's etcd figures came from, run in the same rounds against the same clusters\n")
	p("right after the cairn-bench rows; the same keys, values and key space (its commands are in the latency table below). Member CPU\n")
	p("is per request, as above.\n\n")
	p("| scenario | etcd 1 member | cairn 1 member | cairn/etcd | member CPU, cairn / etcd | etcd 3 members | cairn 3 members | cairn/etcd | member CPU, cairn / etcd | target |\n")
	p("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range rep.xorder {
		p("| %s", s.label)
		for i := range 2 {
			pr := rep.xpairs[i][s.id]
			e, c := medianCPU(pr.etcd, false), medianCPU(pr.cairn, false)
			cpu := "—"
			if e > 0 {
				cpu = fmt.Sprintf("%.0f / %.0f µs (%.2fx)", c, e, c/e)
			}
			p(" | %s | %s | %s | %s", cell(medianRun(pr.etcd), s.id), cell(medianRun(pr.cairn), s.id), ratio(s.id, pr), cpu)
		}
		p(" | %s |\n", s.target)
	}
	p("\n")
}

// writeSection replaces the load section of path (up to the next "## "
// heading) or appends it.
func writeSection(path string, rep *report) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	text := string(old)
	sec := render(rep)
	if i := strings.Index(text, sectionTitle); i >= 0 {
		rest := text[i+len(sectionTitle):]
		end := len(text)
		if j := strings.Index(rest, "\n## "); j >= 0 {
			end = i + len(sectionTitle) + j + 1
		}
		text = text[:i] + sec + suffixSep(text[end:]) + text[end:]
	} else {
		text = strings.TrimRight(text, "\n") + "\n\n" + sec
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

func suffixSep(rest string) string {
	if rest == "" {
		return ""
	}
	return "\n"
}
