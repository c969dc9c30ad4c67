// Command loadbench is `make bench`: it starts 1- and 3-member clusters of
// the built cairn binary on 127.0.0.x with fresh data directories, runs
// every scenario of the load table with bin/cairn-bench, measures RSS and
// restart time with 1M keys, and writes the "## Load: cairn vs etcd"
// section of BENCHMARKS.md (with the machine, the commit and every command).
//
// With --etcd (an etcd v3.7.1 binary, built by tools/build-etcd.sh), an
// etcd cluster of each size runs beside cairn's, both up at once, and every
// scenario runs against both back to back, alternating which goes first;
// RSS and restart time are measured for etcd too, after cairn. The table
// then shows both servers measured here, their ratio and the issue's
// targets. Without it, cairn's figures stand beside etcd's from issue 6.
//
// Members are stopped by PID (SIGTERM, then SIGKILL after 20 s); data
// directories live under a temporary directory removed at the end.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	os.Exit(run())
}

func run() int {
	binDir := flag.String("bin", "bin", "directory with the cairn and cairn-bench binaries")
	out := flag.String("out", "BENCHMARKS.md", "file whose load section is (re)written")
	quick := flag.Bool("quick", false, "tiny runs (checks the driver, figures meaningless)")
	keys := flag.Int("keys", 1000000, "keys written before the RSS and restart measurements")
	etcd := flag.String("etcd", "", "etcd server binary to measure beside cairn (empty: cairn only, the issue's etcd figures)")
	etcdBench := flag.String("etcd-benchmark", "", "with --etcd: etcd's own benchmark tool, to run the put rows with it too against both servers (empty: not run)")
	rounds := flag.Int("rounds", 1, "with --etcd: run every scenario this many times against each server; cells show the median run, ratios the median of the paired ratios")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work, err := os.MkdirTemp("", "cairn-loadbench-")
	if err != nil {
		log.Error("temp dir", "err", err)
		return 1
	}
	defer os.RemoveAll(work)
	abs, err := filepath.Abs(*binDir)
	if err != nil {
		log.Error("bin dir", "err", err)
		return 1
	}
	if *rounds < 1 {
		log.Error("--rounds must be at least 1")
		return 2
	}
	d := &driver{bin: abs, work: work, log: log, quick: *quick, keys: *keys, rounds: *rounds}
	if *etcd != "" {
		if d.etcd, err = filepath.Abs(*etcd); err != nil {
			log.Error("etcd binary", "err", err)
			return 1
		}
	}
	if *etcdBench != "" {
		if *etcd == "" {
			log.Error("--etcd-benchmark needs --etcd")
			return 2
		}
		if d.etcdBench, err = filepath.Abs(*etcdBench); err != nil {
			log.Error("etcd benchmark tool", "err", err)
			return 1
		}
	}
	rep, err := d.all(ctx)
	if err != nil {
		log.Error("load benchmark failed", "err", err)
		return 1
	}
	if err := writeSection(*out, rep); err != nil {
		log.Error("write report", "err", err)
		return 1
	}
	fmt.Printf("wrote %s\n", *out)
	return 0
}
