package mvcc

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// benchHistory synthesizes the history the benchmark notifies: revision r
// (from 2 on) is one put of key "k" with value r.
type benchHistory struct{ rev atomic.Int64 }

func (h *benchHistory) Rev() int64        { return h.rev.Load() }
func (h *benchHistory) CompactRev() int64 { return 0 }
func (h *benchHistory) Events(ctx context.Context, from int64, key, end []byte, limit int) ([]*mvccpb.Event, int64, error) {
	rev := h.rev.Load()
	var evs []*mvccpb.Event
	for r := from; r <= rev; r++ {
		if limit > 0 && len(evs) >= limit {
			return evs, r, nil
		}
		evs = append(evs, benchEvent(r))
	}
	return evs, max(from, rev+1), nil
}

func benchEvent(rev int64) *mvccpb.Event {
	return &mvccpb.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{
		Key: []byte("k"), Value: []byte(fmt.Sprint(rev)), CreateRevision: 2, ModRevision: rev, Version: rev - 1,
	}}
}

// BenchmarkWatchNotifyFanout notifies one event per op to 1000 watchers (on
// 10 streams, each drained by a consumer), all watching the event's key,
// either as the key itself or as a prefix range. It reports the events
// delivered per second.
func BenchmarkWatchNotifyFanout(b *testing.B) {
	for _, mode := range []string{"key", "prefix"} {
		b.Run(mode, func(b *testing.B) {
			const watchers, streams = 1000, 10
			src := &benchHistory{}
			src.rev.Store(1)
			h := NewWatchHub(src, WatchHubOptions{})
			defer h.Close()
			var delivered atomic.Int64
			var wg sync.WaitGroup
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			for s := 0; s < streams; s++ {
				st := h.NewStream()
				for i := 0; i < watchers/streams; i++ {
					end := []byte(nil)
					if mode == "prefix" {
						end = []byte("l")
					}
					if _, err := st.Watch(0, []byte("k"), end, 0, WatchOptions{}); err != nil {
						b.Fatal(err)
					}
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						r, err := st.Next(ctx)
						if err != nil {
							return
						}
						delivered.Add(int64(len(r.Events)))
					}
				}()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				rev := int64(i) + 2
				src.rev.Store(rev)
				h.Notify([]*mvccpb.Event{benchEvent(rev)})
			}
			want := int64(b.N) * watchers
			for delivered.Load() < want {
				if ctx.Err() != nil {
					break
				}
				runtime.Gosched()
			}
			b.StopTimer()
			b.ReportMetric(float64(delivered.Load())/b.Elapsed().Seconds(), "events/s")
			cancel()
			wg.Wait()
		})
	}
}
