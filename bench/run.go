package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// pool is the run's connections; client i uses clis[i % len(clis)].
type pool struct{ clis []*clientv3.Client }

func dial(ctx context.Context, cfg *Config) (*pool, error) {
	p := &pool{}
	for range cfg.Conns {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints: cfg.Endpoints, DialTimeout: cfg.DialTimeout, Logger: zap.NewNop(), Context: ctx,
		})
		if err != nil {
			p.close()
			return nil, fmt.Errorf("bench: connect to %v: %w", cfg.Endpoints, err)
		}
		p.clis = append(p.clis, cli)
	}
	// The client dials lazily and requests wait for a connection, so probe
	// once: an unreachable cluster is a clear error, not a hung run.
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := p.clis[0].Get(pctx, "cairn-bench-probe", clientv3.WithSerializable(), clientv3.WithCountOnly()); err != nil {
		p.close()
		return nil, fmt.Errorf("bench: no answer from %v within --dial-timeout %v: %w", cfg.Endpoints, cfg.DialTimeout, err)
	}
	return p, nil
}

func (p *pool) close() {
	for _, c := range p.clis {
		_ = c.Close()
	}
}

func (p *pool) client(i int) *clientv3.Client { return p.clis[i%len(p.clis)] }

// keyName formats key number n zero-padded to size bytes.
func keyName(n, size int) string {
	s := strconv.Itoa(n)
	if len(s) >= size {
		return s
	}
	b := make([]byte, size)
	pad := size - len(s)
	for i := range pad {
		b[i] = '0'
	}
	copy(b[pad:], s)
	return string(b)
}

// worker is one load client's state.
type worker struct {
	id  int
	cli *clientv3.Client
	rng *rand.Rand
	h   Histogram
}

// keyNum returns the key number for request n: n itself in sequential
// mode, a uniform random one otherwise.
func (w *worker) keyNum(cfg *Config, n int) int {
	if cfg.Sequential {
		return n % cfg.KeySpace
	}
	return w.rng.IntN(cfg.KeySpace)
}

// errorLog counts errors and keeps the first few distinct messages.
type errorLog struct {
	n       atomic.Uint64
	mu      sync.Mutex // guards samples
	samples []string
}

func (e *errorLog) add(err error) {
	e.n.Add(1)
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.samples) >= 5 {
		return
	}
	msg := err.Error()
	for _, s := range e.samples {
		if s == msg {
			return
		}
	}
	e.samples = append(e.samples, msg)
}

// opFunc issues request number n on behalf of w.
type opFunc func(ctx context.Context, w *worker, n int) error

// loop runs op on cfg.Clients workers until cfg.Total requests were
// issued or cfg.Duration passed. Requests in flight at the deadline finish
// and count. It returns the merged latency histogram and the elapsed time.
func loop(ctx context.Context, cfg *Config, p *pool, ws []*worker, errs *errorLog, op opFunc) (*Histogram, time.Duration) {
	var next atomic.Int64
	start := time.Now()
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = start.Add(cfg.Duration)
	}
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() {
			for ctx.Err() == nil {
				n := int(next.Add(1) - 1)
				if cfg.Total > 0 && n >= cfg.Total {
					return
				}
				if !deadline.IsZero() && time.Now().After(deadline) {
					return
				}
				t0 := time.Now()
				rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
				err := op(rctx, w, n)
				cancel()
				if err != nil {
					errs.add(err)
					continue
				}
				w.h.Record(time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var h Histogram
	for _, w := range ws {
		h.Merge(&w.h)
	}
	return &h, elapsed
}

func newWorkers(cfg *Config, p *pool) []*worker {
	ws := make([]*worker, cfg.Clients)
	for i := range ws {
		ws[i] = &worker{id: i, cli: p.client(i), rng: rand.New(rand.NewPCG(uint64(i)+1, uint64(time.Now().UnixNano())))}
	}
	return ws
}

// Run runs cfg once and returns its result. Request errors are counted in
// the result; the error return is for a configuration or connection
// failure, or ctx ending.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p, err := dial(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer p.close()
	var res *Result
	switch cfg.Scenario {
	case ScenarioWatch:
		res, err = runWatch(ctx, &cfg, p)
	case ScenarioKeepAlive:
		res, err = runKeepAlive(ctx, &cfg, p)
	default:
		res, err = runSimple(ctx, &cfg, p)
	}
	if err != nil {
		return nil, err
	}
	return res, ctx.Err()
}

// runSimple runs put, range and txn-put.
func runSimple(ctx context.Context, cfg *Config, p *pool) (*Result, error) {
	val := string(randomBytes(cfg.ValSize))
	var op opFunc
	switch cfg.Scenario {
	case ScenarioPut:
		op = func(ctx context.Context, w *worker, n int) error {
			_, err := w.cli.Put(ctx, keyName(w.keyNum(cfg, n), cfg.KeySize), val)
			return err
		}
	case ScenarioRange:
		var opts []clientv3.OpOption
		if cfg.Consistency == "s" {
			opts = append(opts, clientv3.WithSerializable())
		}
		op = func(ctx context.Context, w *worker, n int) error {
			_, err := w.cli.Get(ctx, keyName(w.keyNum(cfg, n), cfg.KeySize), opts...)
			return err
		}
	case ScenarioTxnPut:
		op = func(ctx context.Context, w *worker, n int) error {
			ops := make([]clientv3.Op, cfg.TxnOps)
			base := w.keyNum(cfg, n*cfg.TxnOps)
			for j := range ops {
				// Consecutive keys: distinct within the txn as etcd requires.
				ops[j] = clientv3.OpPut(keyName((base+j)%cfg.KeySpace, cfg.KeySize), val)
			}
			_, err := w.cli.Txn(ctx).Then(ops...).Commit()
			return err
		}
	}
	errs := &errorLog{}
	h, elapsed := loop(ctx, cfg, p, newWorkers(cfg, p), errs, op)
	res := &Result{Scenario: cfg.Scenario, Requests: h.Count(), Errors: errs.n.Load(), ErrorSamples: errs.samples}
	res.fill(h, elapsed, h.Count())
	return res, nil
}

func randomBytes(n int) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return b
}

// runKeepAlive grants one lease per client, then renews it in a loop.
func runKeepAlive(ctx context.Context, cfg *Config, p *pool) (*Result, error) {
	ws := newWorkers(cfg, p)
	ids := make([]clientv3.LeaseID, len(ws))
	for i, w := range ws {
		gctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
		resp, err := w.cli.Grant(gctx, cfg.LeaseTTL)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("bench: grant lease: %w", err)
		}
		ids[i] = resp.ID
	}
	defer func() {
		for i, w := range ws {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_, _ = w.cli.Revoke(rctx, ids[i])
			cancel()
		}
	}()
	errs := &errorLog{}
	h, elapsed := loop(ctx, cfg, p, ws, errs, func(ctx context.Context, w *worker, _ int) error {
		_, err := w.cli.KeepAliveOnce(ctx, ids[w.id])
		return err
	})
	res := &Result{Scenario: cfg.Scenario, Requests: h.Count(), Errors: errs.n.Load(), ErrorSamples: errs.samples}
	res.fill(h, elapsed, h.Count())
	return res, nil
}
