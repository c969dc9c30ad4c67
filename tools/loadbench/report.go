package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
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

func render(rep *report) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("%s\n\n", sectionTitle)
	p("Written by `make bench` (tools/loadbench) on %s; the whole run took %s.\n\n", rep.started.UTC().Format("2006-01-02 15:04 MST"), rep.took.Round(time.Second))
	p("Machine: `nproc` = %d, CPU %s, kernel %s, %s; commit %s. Load client and all members on the one box over loopback\n",
		runtime.NumCPU(), cpuModel(), sh("uname", "-r"), runtime.Version(), commit())
	p("(members on 127.0.0.1-3, fresh data dirs, default heartbeat/election). etcd v3.7.1's figures are the issue's, measured with etcd's\n")
	p("own benchmark tool on this kind of machine, not on this one. The box is shared with other jobs: treat the figures as rough.\n\n")
	p("Parameters unless stated: 8-byte keys, 256-byte values, random keys over 100,000, 64 clients over 8 connections.\n\n")
	p("| scenario | etcd 1 member | cairn 1 member | etcd 3 members | cairn 3 members |\n|---|---|---|---|---|\n")
	for _, s := range rep.order {
		p("| %s | %s | %s | %s | %s |\n", s.label, s.etcd[0], cell(rep.runs[0][s.id], s.id), s.etcd[1], cell(rep.runs[1][s.id], s.id))
	}
	mn, mx := rep.restarts[0], rep.restarts[0]
	for _, d := range rep.restarts {
		mn, mx = min(mn, d), max(mx, d)
	}
	p("| RSS after writing %s keys (16 B keys, 256 B values) | 458 MiB | %.0f MiB (peak %.0f MiB) | | |\n", group(float64(rep.keys)), rep.rss, rep.hwm)
	p("| RSS after a restart | 700 MiB | %.0f MiB | | |\n", rep.rssAfter)
	p("| restart until healthy with %s keys | 3.1-3.3 s | %.2f-%.2f s (%d restarts) | | |\n\n", group(float64(rep.keys)), mn.Seconds(), mx.Seconds(), len(rep.restarts))
	p("Latency percentiles of every run (ms; watch: put-to-event latency):\n\n")
	p("| members | command | requests | errors | per second | p50 | p90 | p99 | p99.9 |\n|---|---|---|---|---|---|---|---|---|\n")
	for i, size := range []int{1, 3} {
		for _, s := range rep.order {
			rr := rep.runs[i][s.id]
			r := rr.res
			p("| %d | `%s` | %d | %d | %s | %.2f | %.2f | %.2f | %.2f |\n", size, rr.cmd, r.Requests, r.Errors, group(r.PerSecond), r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms)
		}
	}
	p("\nThe %s keys were written with `%s` (%.1f s; %d puts per transaction to keep `make bench` short),\n", group(float64(rep.keys)), rep.loadCmd, rep.loadSecs, 100)
	p("then RSS read from `/proc/<pid>/status` (VmRSS, VmHWM); each restart is SIGTERM, start, poll `/health` every 10 ms until `\"health\":\"true\"`.\n")
	p("Every command ran with `--endpoints <the cluster's client URLs> --json`; the clusters were started by tools/loadbench.\n")
	return b.String()
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
