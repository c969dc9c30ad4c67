package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// watchDrain is how long the watch scenario waits, after the last put, for
// events still on their way before it counts the missing ones as errors.
const watchDrain = 10 * time.Second

// watchSink collects put-to-event latencies of one connection's watchers.
type watchSink struct {
	mu sync.Mutex // guards h
	h  Histogram
}

// watchState is the shared state of the watch scenario.
type watchState struct {
	sinks    []*watchSink
	events   atomic.Uint64
	resps    atomic.Uint64 // responses that carried events
	expected atomic.Uint64
	lastNano atomic.Int64 // arrival time of the latest event
}

// watchersOf returns how many watchers watch key number k: watcher i
// watches key i mod cfg.WatchedKeys.
func watchersOf(cfg *Config, k int) uint64 {
	n := cfg.Watchers / cfg.WatchedKeys
	if k < cfg.Watchers%cfg.WatchedKeys {
		n++
	}
	return uint64(n)
}

// runWatch opens cfg.Watchers watchers spread over the connections, each on
// one of cfg.WatchedKeys keys, then has cfg.Clients clients put to the
// watched keys (cfg.Total puts or cfg.Duration), each value starting with
// the put's start time. It reports delivered events per second (from the
// first put to the last event) and the put-to-event latency.
func runWatch(ctx context.Context, cfg *Config, p *pool) (*Result, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := &watchState{}
	for range p.clis {
		st.sinks = append(st.sinks, &watchSink{})
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range cfg.Watchers {
		ch := p.client(i).Watch(wctx, keyName(i%cfg.WatchedKeys, cfg.KeySize), clientv3.WithCreatedNotify())
		select {
		case resp, ok := <-ch:
			if !ok || resp.Err() != nil || !resp.Created {
				return nil, fmt.Errorf("bench: open watcher %d: %v", i, resp.Err())
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(cfg.RequestTimeout):
			return nil, fmt.Errorf("bench: open watcher %d: no answer within --request-timeout %v", i, cfg.RequestTimeout)
		}
		sink := st.sinks[i%len(st.sinks)]
		wg.Go(func() { st.receive(ch, sink) })
	}

	val := randomBytes(cfg.ValSize)
	errs := &errorLog{}
	start := time.Now()
	puts, putElapsed := loop(ctx, cfg, p, newWorkers(cfg, p), errs, func(ctx context.Context, w *worker, n int) error {
		k := w.keyNum(cfg, n) % cfg.WatchedKeys
		v := make([]byte, len(val))
		copy(v, val)
		binary.BigEndian.PutUint64(v, uint64(time.Now().UnixNano()))
		// Count before the put so the drain never sees events > expected
		// for long; undo on failure.
		st.expected.Add(watchersOf(cfg, k))
		_, err := w.cli.Put(ctx, keyName(k, cfg.KeySize), string(v))
		if err != nil {
			st.expected.Add(^(watchersOf(cfg, k) - 1))
		}
		return err
	})
	st.wait(ctx, start.Add(putElapsed).Add(watchDrain))

	var h Histogram
	for _, s := range st.sinks {
		s.mu.Lock()
		h.Merge(&s.h)
		s.mu.Unlock()
	}
	events, expected := st.events.Load(), st.expected.Load()
	res := &Result{
		Scenario: cfg.Scenario, Requests: puts.Count(), Errors: errs.n.Load(), ErrorSamples: errs.samples,
		Events: events, ExpectedEvents: expected, Responses: st.resps.Load(),
	}
	if events < expected {
		res.Errors += expected - events
		res.ErrorSamples = append(res.ErrorSamples, fmt.Sprintf("%d events not delivered within %v", expected-events, watchDrain))
	}
	end := putElapsed
	if last := st.lastNano.Load(); last > 0 {
		end = max(end, time.Unix(0, last).Sub(start))
	}
	res.fill(&h, end, events)
	return res, nil
}

func (st *watchState) receive(ch clientv3.WatchChan, sink *watchSink) {
	for resp := range ch {
		now := time.Now()
		sink.mu.Lock()
		for _, ev := range resp.Events {
			if len(ev.Kv.Value) >= 8 {
				sent := int64(binary.BigEndian.Uint64(ev.Kv.Value))
				sink.h.Record(now.Sub(time.Unix(0, sent)))
			}
		}
		sink.mu.Unlock()
		if len(resp.Events) > 0 {
			st.events.Add(uint64(len(resp.Events)))
			st.resps.Add(1)
			st.lastNano.Store(now.UnixNano())
		}
	}
}

// wait polls until every expected event arrived or the deadline passed.
func (st *watchState) wait(ctx context.Context, deadline time.Time) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for st.events.Load() < st.expected.Load() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
