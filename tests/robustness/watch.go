package robustness

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// WatchEvent is one event the watcher received, with the modification
// revision and value of the key's previous version (PrevRev 0: none).
type WatchEvent struct {
	Rev       int64
	Key       string
	Value     string
	Delete    bool
	PrevRev   int64
	PrevValue string
}

// watcher watches the whole keyspace from revision 1 with previous values
// and records every event; when its channel closes (a fault canceled the stream) it resumes
// from the revision after the last event. mu guards events and last.
type watcher struct {
	mu     sync.Mutex
	events []WatchEvent
	last   int64 // revision of the last event or progress seen
	errs   []string
}

func (w *watcher) run(ctx context.Context, cli *clientv3.Client) {
	next := int64(1)
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range cli.Watch(wctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(next), clientv3.WithPrevKV()) {
			if err := resp.Err(); err != nil {
				w.mu.Lock()
				w.errs = append(w.errs, err.Error())
				w.mu.Unlock()
				break
			}
			w.mu.Lock()
			for _, ev := range resp.Events {
				we := WatchEvent{
					Rev: ev.Kv.ModRevision, Key: string(ev.Kv.Key), Value: string(ev.Kv.Value),
					Delete: ev.Type == mvccpb.DELETE,
				}
				if ev.PrevKv != nil {
					we.PrevRev, we.PrevValue = ev.PrevKv.ModRevision, string(ev.PrevKv.Value)
				}
				w.events = append(w.events, we)
				next = ev.Kv.ModRevision + 1
			}
			w.last = max(w.last, next-1)
			w.mu.Unlock()
		}
		cancel()
	}
}

// waitFor waits until the watcher has seen revision rev.
func (w *watcher) waitFor(rev int64, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		w.mu.Lock()
		last := w.last
		w.mu.Unlock()
		if last >= rev {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("watch reached revision %d, want %d within %v", last, rev, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkWatch checks the events on their own and against the acknowledged
// writes: strictly increasing revisions, no gaps, each event once, each
// event's previous version the key's last put before it (none after a
// delete or at creation), every acknowledged write present with its key and
// value, and every put carrying a value some client tried to write.
func checkWatch(events []WatchEvent, h *History, finalRev int64) []string {
	var bad []string
	report := func(format string, args ...any) {
		if len(bad) < 20 {
			bad = append(bad, fmt.Sprintf(format, args...))
		}
	}
	byRev := map[int64]WatchEvent{}
	lastOf := map[string]WatchEvent{}
	for i, ev := range events {
		var wantRev int64
		var wantValue string
		if last, ok := lastOf[ev.Key]; ok && !last.Delete {
			wantRev, wantValue = last.Rev, last.Value
		}
		if ev.PrevRev != wantRev || ev.PrevValue != wantValue {
			report("watch: event at rev %d (%s) has previous version %d %q, want %d %q", ev.Rev, ev.Key, ev.PrevRev, ev.PrevValue, wantRev, wantValue)
		}
		lastOf[ev.Key] = ev
		if i > 0 {
			prev := events[i-1]
			if ev.Rev <= prev.Rev {
				report("watch: event %d at rev %d (%s) after rev %d (%s): not strictly increasing", i, ev.Rev, ev.Key, prev.Rev, prev.Key)
			} else if ev.Rev != prev.Rev+1 {
				report("watch: gap between rev %d and %d", prev.Rev, ev.Rev)
			}
		}
		byRev[ev.Rev] = ev
		if !ev.Delete && len(ev.Key) > 0 && ev.Key[0] == 'k' && !h.written[ev.Key][ev.Value] {
			report("watch: put %s=%q at rev %d was never written", ev.Key, ev.Value, ev.Rev)
		}
	}
	if len(events) > 0 && events[len(events)-1].Rev != finalRev {
		report("watch: last event at rev %d, final revision %d", events[len(events)-1].Rev, finalRev)
	}
	if len(events) > 0 && events[0].Rev != 2 {
		report("watch: first event at rev %d, want 2", events[0].Rev)
	}
	for _, op := range h.ops {
		in, out := op.Input.(Input), op.Output.(Output)
		if out.Unknown {
			continue
		}
		var want WatchEvent
		switch {
		case in.Kind == OpPut, in.Kind == OpTxn && out.Succeeded:
			want = WatchEvent{Rev: out.Rev, Key: in.Key, Value: in.Value}
		case in.Kind == OpDelete && out.Deleted == 1:
			want = WatchEvent{Rev: out.Rev, Key: in.Key, Delete: true}
		default:
			continue
		}
		got, ok := byRev[want.Rev]
		got.PrevRev, got.PrevValue = 0, "" // checked above
		if !ok || got != want {
			report("watch: acknowledged %s of %s=%q at rev %d: watch has %+v (present %v)", in.Kind, in.Key, in.Value, want.Rev, got, ok)
		}
	}
	return bad
}
