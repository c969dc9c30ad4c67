package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

const usage = `usage: cairn-bench <scenario> [flags]

scenarios:
  put              put random (or sequential) keys
  range            get one key per request (--consistency l or s)
  txn-put          one transaction of --txn-ops puts per request
  watch            --watchers watchers on --watched-keys keys; --puts puts to them
  lease-keepalive  one lease per client, KeepAliveOnce in a loop

Run 'cairn-bench <scenario> -h' for the flags.
`

// ParseArgs parses a command line (scenario first, then flags) into a
// validated Config and whether the output should be JSON. -h returns
// flag.ErrHelp.
func ParseArgs(args []string, stderr io.Writer) (Config, bool, error) {
	cfg := DefaultConfig()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		return cfg, false, flag.ErrHelp
	}
	cfg.Scenario = args[0]
	if !validScenario(cfg.Scenario) {
		fmt.Fprint(stderr, usage)
		return cfg, false, fmt.Errorf("%w: unknown scenario %q", ErrConfig, cfg.Scenario)
	}
	fs := flag.NewFlagSet("cairn-bench "+cfg.Scenario, flag.ContinueOnError)
	fs.SetOutput(stderr)
	endpoints := fs.String("endpoints", strings.Join(cfg.Endpoints, ","), "comma-separated client URLs")
	fs.IntVar(&cfg.Conns, "conns", cfg.Conns, "gRPC connections")
	fs.IntVar(&cfg.Clients, "clients", cfg.Clients, "concurrent clients sharing the connections")
	fs.IntVar(&cfg.Total, "total", cfg.Total, "requests to issue (watch: puts); 0 = until --duration")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "run at most this long; 0 = until --total")
	fs.IntVar(&cfg.KeySize, "key-size", cfg.KeySize, "key size in bytes")
	fs.IntVar(&cfg.ValSize, "val-size", cfg.ValSize, "value size in bytes")
	fs.IntVar(&cfg.KeySpace, "key-space", cfg.KeySpace, "number of distinct keys")
	fs.BoolVar(&cfg.Sequential, "sequential-keys", cfg.Sequential, "keys in sequence instead of at random")
	fs.StringVar(&cfg.Consistency, "consistency", cfg.Consistency, "range: l (linearizable) or s (serializable)")
	fs.IntVar(&cfg.TxnOps, "txn-ops", cfg.TxnOps, "txn-put: puts per transaction")
	fs.IntVar(&cfg.Watchers, "watchers", cfg.Watchers, "watch: number of watchers")
	fs.IntVar(&cfg.WatchedKeys, "watched-keys", cfg.WatchedKeys, "watch: number of distinct watched keys")
	puts := fs.Int("puts", 0, "watch: puts to the watched keys (same as --total)")
	fs.Int64Var(&cfg.LeaseTTL, "lease-ttl", cfg.LeaseTTL, "lease-keepalive: lease TTL in seconds")
	fs.DurationVar(&cfg.DialTimeout, "dial-timeout", cfg.DialTimeout, "connection timeout")
	fs.DurationVar(&cfg.RequestTimeout, "request-timeout", cfg.RequestTimeout, "timeout of each request (counted as an error)")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	if err := fs.Parse(args[1:]); err != nil {
		return cfg, false, err
	}
	if fs.NArg() > 0 {
		return cfg, false, fmt.Errorf("%w: unexpected argument %q", ErrConfig, fs.Arg(0))
	}
	cfg.Endpoints = splitList(*endpoints)
	if *puts > 0 {
		cfg.Total = *puts
	}
	if err := cfg.Validate(); err != nil {
		return cfg, false, err
	}
	return cfg, *asJSON, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Main runs one command line and returns the process exit code: 0 when the
// run finished without request errors, 1 when some requests failed, 2 on a
// usage or connection error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, asJSON, err := ParseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "cairn-bench: %v\n", err)
		return 2
	}
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "cairn-bench: %v\n", err)
		return 2
	}
	if asJSON {
		b, _ := json.Marshal(res)
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		WriteText(stdout, res)
	}
	if res.Errors > 0 {
		return 1
	}
	return 0
}

// WriteText prints res for people.
func WriteText(w io.Writer, r *Result) {
	unit := "req/s"
	if r.Scenario == ScenarioWatch {
		unit = "events/s"
		fmt.Fprintf(w, "%s: %d puts, %d of %d events in %d responses, %.2f s\n", r.Scenario, r.Requests, r.Events, r.ExpectedEvents, r.Responses, r.Seconds)
	} else {
		fmt.Fprintf(w, "%s: %d requests in %.2f s\n", r.Scenario, r.Requests, r.Seconds)
	}
	fmt.Fprintf(w, "throughput: %.1f %s\n", r.PerSecond, unit)
	fmt.Fprintf(w, "latency ms: mean %.3f p50 %.3f p90 %.3f p99 %.3f p99.9 %.3f max %.3f\n",
		r.MeanMs, r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms, r.MaxMs)
	fmt.Fprintf(w, "errors: %d\n", r.Errors)
	for _, s := range r.ErrorSamples {
		fmt.Fprintf(w, "  error: %s\n", s)
	}
}
