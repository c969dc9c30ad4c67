// Command cairn runs one member of a cairn cluster. With no flags it starts
// a single member named "default" with its data in ./default.cairn, serving
// clients on http://127.0.0.1:2379 and peers on http://127.0.0.1:2380.
// `cairn --help` lists every flag; each can also be set through a CAIRN_*
// environment variable or a YAML --config-file.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/cairn-kv/cairn/api/v3rpc"
	"github.com/cairn-kv/cairn/internal/logutil"
	"github.com/cairn-kv/cairn/server"
	"github.com/cairn-kv/cairn/server/config"
)

func main() {
	os.Exit(run())
}

func run() int {
	runtime.GOMAXPROCS(procs(os.Getenv("GOMAXPROCS"), runtime.GOMAXPROCS(0)))
	cfg, err := config.ParseEnviron(os.Args[1:], os.Environ(), os.Stdout)
	switch {
	case errors.Is(err, config.ErrHelp):
		return 0
	case errors.Is(err, config.ErrVersion):
		fmt.Printf("cairn %s (etcd API %s)\n", server.Version, server.Version)
		return 0
	case err != nil:
		fmt.Fprintf(os.Stderr, "cairn: %v\n", err)
		return 2
	}
	log, err := logutil.New(os.Stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cairn: %v\n", err)
		return 2
	}
	srv, err := server.New(context.Background(), cfg, log)
	if err != nil {
		log.Error("cannot start member", "err", err)
		return 1
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := srv.RegisterMetrics(reg); err != nil {
		srv.Close()
		log.Error("cannot register metrics", "err", err)
		return 1
	}
	api := v3rpc.New(v3rpc.Config{
		MaxRequestBytes: cfg.MaxRequestBytes, WatchProgressNotifyInterval: cfg.WatchProgressNotifyInterval,
		Logger: log.With("component", "api"), Metrics: reg, GRPCGo: cfg.GRPCServer == config.GRPCServerGRPCGo,
		ElectionTimeout: cfg.ElectionTimeout,
	}, srv)
	if err := srv.Start(server.ClientAPI{GRPC: api.GRPC(), HTTP: withPprof(api.HTTP(), cfg.EnablePprof)}); err != nil {
		srv.Close()
		log.Error("cannot start member", "err", err)
		return 1
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	select {
	case sig := <-sigc:
		log.Info("received signal; shutting down", "signal", sig.String())
		srv.Stop()
	case <-srv.Done():
	}
	_ = api.Close()
	if err := srv.Err(); err != nil {
		log.Error("member stopped", "err", err)
		return 1
	}
	return 0
}

// procs returns how many processors the Go runtime should use: one more than
// its default of cur, or 0 (leave it) when GOMAXPROCS (env) chose the
// number.
//
// A busy member's Ready loop spends most of its time in fdatasync. During
// the call the runtime lends the loop's processor to other goroutines, and
// when the call returns the loop must wait for a processor to come free
// before it can hand out the batch: in a trace of 64-client puts on two
// CPUs the loop found none after 46% of its fdatasyncs and then waited 106
// µs on average (p99 1.6 ms), about a tenth of the fdatasync itself. With
// one processor spare it finds one more often (BENCHMARKS.md, "Ninth
// pass"). Setting the number turns off the runtime's own updates of it,
// which follow changes of the CPU limit.
func procs(env string, cur int) int {
	if env != "" {
		return 0
	}
	return cur + 1
}
