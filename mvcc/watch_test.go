package mvcc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// watchEnv is a store with a hub that every write notifies.
type watchEnv struct {
	*testStore
	hub *WatchHub
}

func newWatchEnv(t *testing.T, opts WatchHubOptions) *watchEnv {
	ts := openTestStore(t, t.TempDir(), Options{})
	h := NewWatchHub(ts.s, opts)
	t.Cleanup(h.Close) // runs before the store's cleanup
	return &watchEnv{testStore: ts, hub: h}
}

// write applies fn in one batch and notifies the hub, like the apply loop.
func (e *watchEnv) write(fn func(w *Writer)) {
	e.hub.Notify(e.apply(fn))
}

func (e *watchEnv) wput(key, val string) {
	e.t.Helper()
	e.write(func(w *Writer) {
		if _, err := w.Put(&pb.PutRequest{Key: []byte(key), Value: []byte(val)}); err != nil {
			e.t.Fatal(err)
		}
	})
}

func (e *watchEnv) wdel(key, end string) {
	e.t.Helper()
	e.write(func(w *Writer) {
		if _, err := w.DeleteRange(&pb.DeleteRangeRequest{Key: []byte(key), RangeEnd: []byte(end)}); err != nil {
			e.t.Fatal(err)
		}
	})
}

func mustWatch(t *testing.T, st *WatchStream, id int64, key, end string, start int64, o WatchOptions) int64 {
	t.Helper()
	var e []byte
	if end != "" {
		e = []byte(end)
	}
	got, err := st.Watch(id, []byte(key), e, start, o)
	if err != nil {
		t.Fatalf("watch %q: %v", key, err)
	}
	return got
}

func next(t testing.TB, st *WatchStream) *WatchResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := st.Next(ctx)
	if err != nil {
		t.Fatalf("next response: %v", err)
	}
	return r
}

// eventsUntil reads responses until watcher id has an event at rev or a
// response for id reflecting rev; it returns id's events.
func eventsUntil(t testing.TB, st *WatchStream, id, rev int64) []*mvccpb.Event {
	t.Helper()
	var evs []*mvccpb.Event
	for {
		r := next(t, st)
		if r.WatchID != id {
			continue
		}
		if r.Canceled {
			t.Fatalf("watcher %d canceled: %+v", id, r)
		}
		evs = append(evs, r.Events...)
		if r.Revision >= rev || (len(evs) > 0 && evs[len(evs)-1].Kv.ModRevision >= rev) {
			return evs
		}
	}
}

// checkRevs fails unless evs hold exactly one event per revision from..to.
func checkRevs(t testing.TB, name string, evs []*mvccpb.Event, from, to int64) {
	t.Helper()
	if int64(len(evs)) != to-from+1 {
		t.Fatalf("%s: %d events, want revisions %d..%d", name, len(evs), from, to)
	}
	for i, ev := range evs {
		if ev.Kv.ModRevision != from+int64(i) {
			t.Fatalf("%s: event %d at revision %d, want %d (gap or duplicate)", name, i, ev.Kv.ModRevision, from+int64(i))
		}
	}
}

func TestWatchCreatedThenLiveEvents(t *testing.T) {
	e := newWatchEnv(t, WatchHubOptions{})
	e.wput("a", "0") // rev 2
	st := e.hub.NewStream()
	defer st.Close()
	id := mustWatch(t, st, 0, "a", "", 0, WatchOptions{})
	if r := next(t, st); !r.Created || r.WatchID != id || r.Revision != 2 {
		t.Fatalf("created response %+v, want created at revision 2", r)
	}
	e.wput("b", "1") // rev 3: another key
	e.wput("a", "2") // rev 4
	r := next(t, st)
	if len(r.Events) != 1 || r.Events[0].Kv.ModRevision != 4 || r.Revision != 4 || r.Events[0].PrevKv != nil {
		t.Fatalf("live response %+v, want the put at 4 without prev_kv", r)
	}
}

// TestWatchCatchUpThenLiveUnderConcurrentWrites starts watchers from past
// revisions while a writer keeps writing; each must see every revision
// from its start exactly once, in order. Small queues force watchers in and
// out of the unsynced set.
func TestWatchCatchUpThenLiveUnderConcurrentWrites(t *testing.T) {
	e := newWatchEnv(t, WatchHubOptions{QueueEvents: 4})
	const total = 300
	for i := 0; i < 50; i++ {
		e.wput(fmt.Sprintf("k%03d", i), "v")
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 50; i < total; i++ {
			e.wput(fmt.Sprintf("k%03d", i), "v")
		}
	}()
	last := int64(total + 1)
	starts := []int64{2, 20, 51, 0}
	errs := make(chan error, len(starts))
	for _, start := range starts {
		st := e.hub.NewStream()
		defer st.Close()
		id := mustWatch(t, st, 0, "k", "l", start, WatchOptions{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			created := next(t, st)
			from := start
			if from == 0 {
				from = created.Revision + 1
			}
			evs := eventsUntil(t, st, id, last)
			if int64(len(evs)) != last-from+1 {
				errs <- fmt.Errorf("start %d: %d events, want %d..%d", start, len(evs), from, last)
				return
			}
			for i, ev := range evs {
				if ev.Kv.ModRevision != from+int64(i) {
					errs <- fmt.Errorf("start %d: event %d at %d, want %d", start, i, ev.Kv.ModRevision, from+int64(i))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestWatchSlowWatcherDoesNotBlockWrites never reads a watcher while
// writing far more than its queue holds, then reads every event in order.
func TestWatchSlowWatcherDoesNotBlockWrites(t *testing.T) {
	e := newWatchEnv(t, WatchHubOptions{QueueEvents: 8})
	st := e.hub.NewStream()
	defer st.Close()
	id := mustWatch(t, st, 0, "", "\x00", 0, WatchOptions{PrevKV: true})
	const n = 400
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			e.wput(fmt.Sprintf("k%d", i%17), fmt.Sprint(i))
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("writes blocked behind a watcher that does not read")
	}
	e.hub.mu.Lock()
	_, unsynced := e.hub.unsynced[st.watchers[id]]
	e.hub.mu.Unlock()
	if !unsynced {
		t.Fatal("the slow watcher is still synced after overflowing its queue")
	}
	evs := eventsUntil(t, st, id, n+1)
	checkRevs(t, "slow watcher", evs, 2, n+1)
	for i, ev := range evs {
		if string(ev.Kv.Value) != fmt.Sprint(i) || (i >= 17 && ev.PrevKv == nil) {
			t.Fatalf("event %d: %v", i, ev)
		}
	}
	// It is synced again: a new write arrives live.
	e.wput("z", "live")
	if evs := eventsUntil(t, st, id, n+2); len(evs) != 1 || string(evs[0].Kv.Key) != "z" {
		t.Fatalf("after catching up: %v", evs)
	}
}

func TestWatchOneRevisionIsOneResponse(t *testing.T) {
	e := newWatchEnv(t, WatchHubOptions{QueueEvents: 1})
	for i := 0; i < 5; i++ {
		e.wput(fmt.Sprintf("p/%d", i), "v")
	}
	st := e.hub.NewStream()
	defer st.Close()
	live := mustWatch(t, st, 0, "p/", "p0", 0, WatchOptions{})
	past := mustWatch(t, st, 0, "p/", "p0", 2, WatchOptions{})
	e.wdel("p/", "p0") // one revision, five events
	rev := e.s.Rev()
	for seen := map[int64]bool{}; !seen[live] || !seen[past]; {
		r := next(t, st)
		var inRev int
		for _, ev := range r.Events {
			if ev.Kv.ModRevision == rev {
				inRev++
			}
		}
		if inRev != 0 && inRev != 5 {
			t.Fatalf("watcher %d: revision %d split: %d of 5 events in one response", r.WatchID, rev, inRev)
		}
		if inRev == 5 {
			seen[r.WatchID] = true
		}
	}
}

func TestWatchFiltersAndPrevKV(t *testing.T) {
	e := newWatchEnv(t, WatchHubOptions{})
	e.wput("a", "1") // history: put 2 (created), put 3, delete 4
	e.wput("a", "2")
	e.wdel("a", "")
	P, D := mvccpb.PUT, mvccpb.DELETE
	cases := []struct {
		name string
		o    WatchOptions
		want []mvccpb.Event_EventType
	}{
		{"noput", WatchOptions{NoPut: true}, []mvccpb.Event_EventType{D, D}},
		{"nodelete", WatchOptions{NoDelete: true, PrevKV: true}, []mvccpb.Event_EventType{P, P, P, P}},
		{"prevkv", WatchOptions{PrevKV: true}, []mvccpb.Event_EventType{P, P, D, P, P, D}},
		{"plain", WatchOptions{}, []mvccpb.Event_EventType{P, P, D, P, P, D}},
	}
	streams := make([]*WatchStream, len(cases))
	for i, c := range cases {
		streams[i] = e.hub.NewStream()
		defer streams[i].Close()
		mustWatch(t, streams[i], 7, "a", "", 2, c.o)
	}
	e.wput("a", "3") // live: put 5 (created again), put 6, delete 7
	e.wput("a", "4")
	e.wdel("a", "")
	for i, c := range cases {
		var got []mvccpb.Event_EventType
		for len(got) < len(c.want) {
			r := next(t, streams[i])
			for _, ev := range r.Events {
				got = append(got, ev.Type)
				created := ev.Kv.ModRevision == 2 || ev.Kv.ModRevision == 5
				if hasPrev, wantPrev := ev.PrevKv != nil, c.o.PrevKV && !created; hasPrev != wantPrev {
					t.Errorf("%s: event at %d has prev_kv %v, want %v", c.name, ev.Kv.ModRevision, hasPrev, wantPrev)
				}
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: events %v, want %v", c.name, got, c.want)
		}
	}
}

func TestWatchCompactionCancels(t *testing.T) {
	e := newWatchEnv(t, WatchHubOptions{})
	for i := 0; i < 9; i++ {
		e.wput("k", fmt.Sprint(i)) // revs 2..10
	}
	if err := e.compact(6); err != nil {
		t.Fatal(err)
	}
	st := e.hub.NewStream()
	defer st.Close()
	old := mustWatch(t, st, 0, "k", "", 3, WatchOptions{})
	atCompact := mustWatch(t, st, 0, "k", "", 6, WatchOptions{})
	after := mustWatch(t, st, 0, "k", "", 7, WatchOptions{})
	got := map[int64][]*mvccpb.Event{}
	var canceled *WatchResponse
	for len(got[atCompact]) < 4 || len(got[after]) < 4 || canceled == nil {
		r := next(t, st)
		switch {
		case r.Created:
		case r.Canceled:
			canceled = r
		default:
			got[r.WatchID] = append(got[r.WatchID], r.Events...)
		}
	}
	if canceled.WatchID != old || canceled.CompactRevision != 6 {
		t.Fatalf("canceled response %+v, want watcher %d canceled at compact revision 6", canceled, old)
	}
	checkRevs(t, "from the compaction revision", got[atCompact], 7, 10)
	checkRevs(t, "after the compaction revision", got[after], 7, 10)
	if !st.Cancel(old) || st.Cancel(old) {
		t.Fatal("a compacted watcher's ID stays taken until canceled, once")
	}
}

// TestWatchUnsyncedWatcherFallsBehindCompaction lets a blocked watcher fall
// behind a compaction: it gets what was queued, then the cancellation.
func TestWatchUnsyncedWatcherFallsBehindCompaction(t *testing.T) {
	e := newWatchEnv(t, WatchHubOptions{QueueEvents: 4})
	st := e.hub.NewStream()
	defer st.Close()
	id := mustWatch(t, st, 0, "k", "", 0, WatchOptions{})
	for i := 0; i < 20; i++ {
		e.wput("k", fmt.Sprint(i)) // revs 2..21
	}
	if err := e.compact(15); err != nil {
		t.Fatal(err)
	}
	var evs []*mvccpb.Event
	for {
		r := next(t, st)
		if r.Created {
			continue
		}
		if r.Canceled {
			if r.WatchID != id || r.CompactRevision != 15 {
				t.Fatalf("canceled %+v, want compact revision 15", r)
			}
			break
		}
		evs = append(evs, r.Events...)
	}
	if len(evs) == 0 || len(evs) >= 14 {
		t.Fatalf("%d events before the cancellation, want the queued ones only", len(evs))
	}
	checkRevs(t, "before cancel", evs, 2, int64(len(evs))+1)
}

func TestWatchIDsErrorsAndCancel(t *testing.T) {
	e := newWatchEnv(t, WatchHubOptions{})
	st := e.hub.NewStream()
	defer st.Close()
	a := mustWatch(t, st, 0, "a", "", 0, WatchOptions{})
	b := mustWatch(t, st, 0, "b", "", 0, WatchOptions{})
	c := mustWatch(t, st, 5, "c", "", 0, WatchOptions{})
	if a != 0 || b != 1 || c != 5 {
		t.Fatalf("ids %d %d %d, want 0 1 5", a, b, c)
	}
	for range 3 {
		next(t, st)
	}
	if _, err := st.Watch(5, []byte("x"), nil, 0, WatchOptions{}); !errors.Is(err, ErrWatcherDuplicateID) {
		t.Fatalf("duplicate id: %v", err)
	}
	if r := next(t, st); r.WatchID != InvalidWatchID || !r.Created || !r.Canceled || r.CancelReason != ErrWatcherDuplicateID.Error() {
		t.Fatalf("duplicate id response %+v", r)
	}
	if _, err := st.Watch(0, []byte("b"), []byte("a"), 0, WatchOptions{}); !errors.Is(err, ErrEmptyWatcherRange) {
		t.Fatalf("empty range: %v", err)
	}
	next(t, st)
	if !st.Cancel(a) || st.Cancel(a) || st.Cancel(99) {
		t.Fatal("cancel: want true once, false for unknown IDs")
	}
	if r := next(t, st); r.WatchID != a || !r.Canceled || r.Created {
		t.Fatalf("cancel response %+v", r)
	}
	e.wput("a", "1")
	e.wput("b", "1")
	if r := next(t, st); r.WatchID != b {
		t.Fatalf("after cancel of %d: response %+v", a, r)
	}
	if d := mustWatch(t, st, 0, "d", "", 0, WatchOptions{}); d != 2 {
		t.Fatalf("next automatic id %d, want 2", d)
	}
}

func TestWatchProgress(t *testing.T) {
	e := newWatchEnv(t, WatchHubOptions{QueueEvents: 2})
	st := e.hub.NewStream()
	defer st.Close()
	if !st.RequestProgress() {
		t.Fatal("a stream without watchers is trivially synced")
	}
	id := mustWatch(t, st, 0, "a", "", 0, WatchOptions{ProgressNotify: true})
	next(t, st)
	e.wput("b", "1")
	st.ProgressTick() // no events since creation: a progress response
	if r := next(t, st); r.WatchID != id || len(r.Events) != 0 || r.Revision != 2 || r.Created || r.Canceled {
		t.Fatalf("tick response %+v, want progress at 2", r)
	}
	e.wput("a", "1")
	next(t, st) // the event clears the quiet flag
	st.ProgressTick()
	e.wput("b", "2")
	st.ProgressTick()
	if r := next(t, st); r.WatchID != id || r.Revision != 4 || len(r.Events) != 0 {
		t.Fatalf("second tick response %+v, want progress at 4 only after a quiet interval", r)
	}
	if !st.RequestProgress() {
		t.Fatal("progress request with every watcher synced refused")
	}
	if r := next(t, st); r.WatchID != InvalidWatchID || r.Revision != 4 {
		t.Fatalf("stream progress %+v, want -1 at 4", r)
	}
	// An unsynced watcher (blocked behind a full queue) holds the reply back.
	for i := 0; i < 6; i++ {
		e.wput("a", fmt.Sprint(i))
	}
	if st.RequestProgress() {
		t.Fatal("progress request answered while a watcher is unsynced")
	}
	evs := eventsUntil(t, st, id, e.s.Rev())
	checkRevs(t, "after progress", evs, 5, e.s.Rev())
	deadline := time.Now().Add(10 * time.Second)
	for !st.RequestProgress() {
		if time.Now().After(deadline) {
			t.Fatal("watcher never synced again")
		}
		time.Sleep(time.Millisecond) // poll: the catch-up goroutine moves it
	}
	if r := next(t, st); r.WatchID != InvalidWatchID || r.Revision != e.s.Rev() {
		t.Fatalf("stream progress %+v after catching up", r)
	}
}

// switchHistory is a History whose store can be replaced, like the
// member's store when it installs a state copy.
type switchHistory struct {
	mu sync.Mutex
	s  *Store
}

func (h *switchHistory) get() *Store { h.mu.Lock(); defer h.mu.Unlock(); return h.s }
func (h *switchHistory) Rev() int64  { return h.get().Rev() }
func (h *switchHistory) CompactRev() int64 {
	return h.get().CompactRev()
}
func (h *switchHistory) Events(ctx context.Context, from int64, key, end []byte, limit int) ([]*mvccpb.Event, int64, error) {
	return h.get().Events(ctx, from, key, end, limit)
}

// TestWatchRestoreResumesOnNewStore swaps the store for one further along
// the same history: watchers resume from their next revision on it, or are
// canceled if it is compacted past them.
func TestWatchRestoreResumesOnNewStore(t *testing.T) {
	oldS := openTestStore(t, t.TempDir(), Options{})
	newS := openTestStore(t, t.TempDir(), Options{})
	for i := 0; i < 10; i++ {
		if i < 4 {
			oldS.put("k", fmt.Sprint(i))
		}
		newS.put("k", fmt.Sprint(i)) // the same history, further: revs 2..11
	}
	src := &switchHistory{s: oldS.s}
	h := NewWatchHub(src, WatchHubOptions{})
	defer h.Close()
	st := h.NewStream()
	defer st.Close()
	id := mustWatch(t, st, 0, "k", "", 0, WatchOptions{})
	next(t, st)
	src.mu.Lock()
	src.s = newS.s
	src.mu.Unlock()
	h.Restore(newS.s.Rev())
	checkRevs(t, "after restore", eventsUntil(t, st, id, 11), 6, 11)

	// A second swap to a store compacted past the watcher's next revision.
	third := openTestStore(t, t.TempDir(), Options{})
	for i := 0; i < 15; i++ {
		third.put("k", fmt.Sprint(i)) // revs 2..16
	}
	if err := third.compact(14); err != nil {
		t.Fatal(err)
	}
	src.mu.Lock()
	src.s = third.s
	src.mu.Unlock()
	h.Restore(third.s.Rev())
	if r := next(t, st); r.WatchID != id || !r.Canceled || r.CompactRevision != 14 {
		t.Fatalf("after restore past compaction: %+v", r)
	}
}

func TestWatchStreamCloseEndsNext(t *testing.T) {
	e := newWatchEnv(t, WatchHubOptions{})
	st := e.hub.NewStream()
	mustWatch(t, st, 0, "a", "", 0, WatchOptions{})
	next(t, st) // created
	errc := make(chan error, 1)
	go func() {
		_, err := st.Next(context.Background())
		errc <- err
	}()
	st.Close()
	if err := <-errc; !errors.Is(err, ErrWatchStreamClosed) {
		t.Fatalf("next after close: %v", err)
	}
	e.wput("a", "1") // no watcher left to notify
	if e.hub.unsyncedLen() != 0 || e.hub.syncedLen() != 0 {
		t.Fatal("closed stream left watchers in the hub")
	}
}

func (h *WatchHub) unsyncedLen() int { h.mu.Lock(); defer h.mu.Unlock(); return len(h.unsynced) }
func (h *WatchHub) syncedLen() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := len(h.ranges)
	for _, ws := range h.keys {
		n += len(ws)
	}
	return n
}

// Batches queued for a watcher while the consumer is away are sent as one
// response, in revision order, with the newest revision; a stream-wide
// progress response, a response for the watcher without events, or the
// consumer taking the response ends the merging; so does the byte bound.
func TestWatchQueuedBatchesCoalesce(t *testing.T) {
	e := newWatchEnv(t, WatchHubOptions{})
	st := e.hub.NewStream()
	defer st.Close()
	a := mustWatch(t, st, 0, "a", "", 0, WatchOptions{})
	b := mustWatch(t, st, 0, "b", "", 0, WatchOptions{})
	next(t, st)
	next(t, st) // created, created
	first := e.s.Rev() + 1
	for i := range 5 {
		e.wput("a", fmt.Sprint(i))
		e.wput("b", fmt.Sprint(i))
	}
	ra, rb := next(t, st), next(t, st)
	if ra.WatchID != a || rb.WatchID != b {
		t.Fatalf("responses for %d, %d; want %d then %d", ra.WatchID, rb.WatchID, a, b)
	}
	for i := range 5 {
		if len(ra.Events) != 5 || len(rb.Events) != 5 ||
			ra.Events[i].Kv.ModRevision != first+int64(2*i) || rb.Events[i].Kv.ModRevision != first+int64(2*i+1) {
			t.Fatalf("coalesced events: a %v, b %v", ra.Events, rb.Events)
		}
	}
	if ra.Revision != first+8 || rb.Revision != first+9 {
		t.Fatalf("response revisions %d, %d; want %d, %d", ra.Revision, rb.Revision, first+8, first+9)
	}

	// A progress response between batches: the later batch stays after it.
	e.wput("a", "x")
	if !st.RequestProgress() {
		t.Fatal("progress request refused")
	}
	e.wput("a", "y")
	rev := e.s.Rev()
	r1, r2, r3 := next(t, st), next(t, st), next(t, st)
	if len(r1.Events) != 1 || r2.WatchID != InvalidWatchID || r2.Revision != rev-1 || len(r3.Events) != 1 || r3.Events[0].Kv.ModRevision != rev {
		t.Fatalf("around a progress response: %v / %v / %v", r1, r2, r3)
	}

	// Taking a response closes it: a batch queued after that is new.
	e.wput("a", "z")
	r := next(t, st)
	e.wput("a", "zz")
	if r2 := next(t, st); len(r.Events) != 1 || len(r2.Events) != 1 {
		t.Fatalf("after the consumer took a response: %d then %d events", len(r.Events), len(r2.Events))
	}

	// The byte bound: values of 600 KiB do not share a response.
	big := string(make([]byte, 600<<10))
	e.wput("a", big)
	e.wput("a", big)
	if r1, r2 := next(t, st), next(t, st); len(r1.Events) != 1 || len(r2.Events) != 1 {
		t.Fatalf("two 600 KiB events: %d and %d per response", len(r1.Events), len(r2.Events))
	}
}
