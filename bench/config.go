// Package bench is cairn's load generator: it drives any etcd-compatible
// server through the v3 API with the official client
// (go.etcd.io/etcd/client/v3) and reports throughput and latency.
//
// Scenarios: put, range (linearizable or serializable), txn-put (one
// transaction of --txn-ops puts), watch (watchers × watched keys × puts:
// delivered events per second and put-to-event latency, taken from a
// timestamp the putter writes into each value), and lease-keepalive (one
// lease per client, KeepAliveOnce in a loop).
//
// Load shape: --conns gRPC connections (one clientv3.Client each) shared
// round-robin by --clients concurrent clients; each client issues one
// request at a time. A run stops after --total requests or after
// --duration, whichever comes first (at least one must be set). Keys are
// decimal numbers below --key-space, zero-padded to --key-size bytes,
// chosen uniformly at random or in sequence (--sequential-keys); values are
// --val-size bytes.
//
// Latencies go into a fixed-size HDR-style Histogram per client (no lock on
// the request path, bounded memory whatever the run length), merged at the
// end. Results print as text or, with --json, as one JSON object (Result)
// that scripts such as `make bench` read.
//
// Lifecycle: Main parses a command line and runs one scenario; Run runs a
// Config against endpoints; both stop every goroutine and close every
// connection before they return.
package bench

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Errors of configuration.
var (
	ErrConfig = errors.New("bench: invalid configuration")
)

// Scenario names.
const (
	ScenarioPut       = "put"
	ScenarioRange     = "range"
	ScenarioTxnPut    = "txn-put"
	ScenarioWatch     = "watch"
	ScenarioKeepAlive = "lease-keepalive"
)

// Scenarios lists every scenario name in the order of the usage text.
var Scenarios = []string{ScenarioPut, ScenarioRange, ScenarioTxnPut, ScenarioWatch, ScenarioKeepAlive}

// Config is one load run.
type Config struct {
	Scenario    string
	Endpoints   []string
	Conns       int           // gRPC connections
	Clients     int           // concurrent clients sharing the connections
	Total       int           // requests (watch: puts); 0 = bounded by Duration only
	Duration    time.Duration // 0 = bounded by Total only
	KeySize     int           // bytes
	ValSize     int           // bytes
	KeySpace    int           // keys are 0 .. KeySpace-1
	Sequential  bool          // keys in order instead of at random
	Consistency string        // range: "l" (linearizable) or "s" (serializable)
	TxnOps      int           // txn-put: puts per transaction
	Watchers    int           // watch: watchers (spread over the connections)
	WatchedKeys int           // watch: distinct keys watched (watcher i watches key i mod WatchedKeys)
	LeaseTTL    int64         // lease-keepalive: TTL of each lease, seconds
	DialTimeout time.Duration
	// RequestTimeout bounds each request (and opening each watcher), so a
	// stuck server cannot hold a run past --duration.
	RequestTimeout time.Duration
}

// DefaultConfig returns the defaults of every flag (the table
// parameters: 8-byte keys, 256-byte values, 100,000 keys, 64 clients over
// 8 connections).
func DefaultConfig() Config {
	return Config{
		Endpoints: []string{"127.0.0.1:2379"}, Conns: 8, Clients: 64,
		KeySize: 8, ValSize: 256, KeySpace: 100000, Consistency: "l", TxnOps: 1,
		Watchers: 1000, WatchedKeys: 100, LeaseTTL: 30, DialTimeout: 5 * time.Second,
		RequestTimeout: 10 * time.Second,
	}
}

// Validate reports the first invalid field, wrapping ErrConfig.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case !validScenario(c.Scenario):
		return bad("unknown scenario %q", c.Scenario)
	case len(c.Endpoints) == 0:
		return bad("no endpoints")
	case c.Conns < 1:
		return bad("--conns must be at least 1")
	case c.Clients < 1:
		return bad("--clients must be at least 1")
	case c.DialTimeout <= 0 || c.RequestTimeout <= 0:
		return bad("--dial-timeout and --request-timeout must be positive")
	case c.Total < 0 || c.Duration < 0:
		return bad("--total and --duration must not be negative")
	case c.Total == 0 && c.Duration == 0:
		return bad("set --total or --duration (or both)")
	case c.KeySpace < 1:
		return bad("--key-space must be at least 1")
	case c.KeySize < 1 || c.KeySize < digits(c.KeySpace-1):
		return bad("--key-size %d cannot hold %d distinct keys (need %d bytes)", c.KeySize, c.KeySpace, digits(c.KeySpace-1))
	case c.ValSize < 0:
		return bad("--val-size must not be negative")
	case c.Consistency != "l" && c.Consistency != "s":
		return bad("--consistency must be l or s, not %q", c.Consistency)
	case c.TxnOps < 1:
		return bad("--txn-ops must be at least 1")
	case c.TxnOps > 1 && c.Sequential && c.TxnOps > c.KeySpace:
		return bad("--txn-ops larger than --key-space repeats a key in one txn")
	}
	if c.Scenario == ScenarioWatch {
		if c.Watchers < 1 || c.WatchedKeys < 1 || c.WatchedKeys > c.KeySpace {
			return bad("watch needs --watchers >= 1 and 1 <= --watched-keys <= --key-space")
		}
		if c.ValSize < 8 {
			return bad("watch needs --val-size >= 8 to carry the put timestamp")
		}
	}
	if c.Scenario == ScenarioKeepAlive && c.LeaseTTL < 1 {
		return bad("--lease-ttl must be at least 1")
	}
	return nil
}

func validScenario(s string) bool {
	for _, n := range Scenarios {
		if s == n {
			return true
		}
	}
	return false
}

func digits(n int) int { return len(strconv.Itoa(n)) }

// Result is the outcome of one run.
type Result struct {
	Scenario  string  `json:"scenario"`
	Requests  uint64  `json:"requests"` // successful requests (watch: puts)
	Errors    uint64  `json:"errors"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"` // requests/s (watch: events/s)
	// Latencies in milliseconds (watch: put-to-event).
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
	// Watch only.
	Events         uint64 `json:"events,omitempty"`
	ExpectedEvents uint64 `json:"expected_events,omitempty"`
	// Responses is how many watch responses carried those events: the
	// server may put several of a watcher's events in one.
	Responses uint64 `json:"responses,omitempty"`
	// First few distinct error messages, for diagnosis.
	ErrorSamples []string `json:"error_samples,omitempty"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func (r *Result) fill(h *Histogram, elapsed time.Duration, count uint64) {
	r.Seconds = elapsed.Seconds()
	if r.Seconds > 0 {
		r.PerSecond = math.Round(float64(count)/r.Seconds*10) / 10
	}
	r.MeanMs, r.MaxMs = ms(h.Mean()), ms(h.Max())
	r.P50Ms, r.P90Ms = ms(h.Percentile(0.5)), ms(h.Percentile(0.9))
	r.P99Ms, r.P999Ms = ms(h.Percentile(0.99)), ms(h.Percentile(0.999))
}
