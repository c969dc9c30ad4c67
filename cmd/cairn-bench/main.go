// Command cairn-bench loads an etcd-compatible server through the v3 API
// and prints throughput, latency percentiles and error counts. All the
// logic lives in package bench; `cairn-bench -h` lists the scenarios.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/cairn-kv/cairn/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bench.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
