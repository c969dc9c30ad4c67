package mvcc

import (
	"bytes"
	"context"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// WatchStream is a group of watchers whose responses reach one consumer in
// order (one gRPC Watch stream). Watch, Cancel, RequestProgress and
// ProgressTick may be called from any goroutine; one consumer calls Next.
type WatchStream struct {
	h *WatchHub

	watchers map[int64]*watcher // guarded by h.mu: by watch ID, including canceled-by-compaction ones
	nextID   int64              // guarded by h.mu: next automatic watch ID
	closed   bool               // guarded by h.mu

	qmu     sync.Mutex
	queue   []queuedResp  // guarded by qmu: responses not yet taken by Next
	qclosed bool          // guarded by qmu
	wide    uint64        // guarded by qmu: stream-wide responses queued so far
	wake    chan struct{} // capacity 1: signals Next
}

type queuedResp struct {
	w *watcher // nil for stream-wide responses
	r *WatchResponse
}

// NewStream opens a stream on the hub. Close releases it.
func (h *WatchHub) NewStream() *WatchStream {
	st := &WatchStream{h: h, watchers: map[int64]*watcher{}, wake: make(chan struct{}, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		st.closed, st.qclosed = true, true
		return st
	}
	h.streams[st] = struct{}{}
	return st
}

// Watch adds a watcher on key (or [key, end) with etcd's meaning of end:
// nil the single key, "\x00" every key >= key; an empty key means "\x00")
// from startRev (0: the next revision). id 0 picks an unused ID. It queues
// the created response (with the hub's revision) before any event. On
// ErrWatcherDuplicateID or ErrEmptyWatcherRange it queues etcd's refusal
// instead: created and canceled, watch ID -1, the error as reason.
func (st *WatchStream) Watch(id int64, key, end []byte, startRev int64, opts WatchOptions) (int64, error) {
	h := st.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(key) == 0 {
		key = []byte{0}
	}
	key, end = bytes.Clone(key), bytes.Clone(end)
	sp := newSpan(key, end)
	var err error
	switch {
	case sp.empty() || st.closed:
		err = ErrEmptyWatcherRange
	case startRev < 0:
		err = ErrCompacted
	case id == 0:
		for st.watchers[st.nextID] != nil {
			st.nextID++
		}
		id = st.nextID
		st.nextID++
	case st.watchers[id] != nil:
		err = ErrWatcherDuplicateID
	}
	if err != nil {
		st.push(nil, &WatchResponse{WatchID: InvalidWatchID, Created: true, Canceled: true, CancelReason: err.Error(), Revision: h.rev}, 0)
		return InvalidWatchID, err
	}
	w := &watcher{st: st, id: id, key: key, end: end, sp: sp, opts: opts, startRev: startRev, quiet: true}
	st.watchers[id] = w
	st.push(w, &WatchResponse{WatchID: id, Created: true, Revision: h.rev}, 0)
	if opts.PrevKV {
		h.prevKV.Add(1) // before it can get events: see WantsPrevValues
	}
	if startRev == 0 || startRev > h.rev {
		w.next = max(startRev, h.rev+1)
		if !opts.PrevKV {
			h.addSyncedLocked(w)
			return id, nil
		}
		w.fromNow = startRev == 0
	} else {
		w.next = startRev
	}
	w.state = stateUnsynced
	h.unsynced[w] = struct{}{}
	h.kickSync()
	return id, nil
}

// Reject queues a refusal of a watch request that never reached the hub
// (created and canceled, watch ID -1, reason given).
func (st *WatchStream) Reject(reason string) {
	rev := st.h.Rev()
	st.push(nil, &WatchResponse{WatchID: InvalidWatchID, Created: true, Canceled: true, CancelReason: reason, Revision: rev}, 0)
}

// Cancel removes a watcher, drops its undelivered responses and queues the
// canceled response. It reports false (and queues nothing) for an unknown
// ID.
func (st *WatchStream) Cancel(id int64) bool {
	h := st.h
	h.mu.Lock()
	defer h.mu.Unlock()
	w := st.watchers[id]
	if w == nil {
		return false
	}
	delete(st.watchers, id)
	h.removeLocked(w)
	st.qmu.Lock()
	kept := st.queue[:0]
	for _, q := range st.queue {
		if q.w != w {
			kept = append(kept, q)
		}
	}
	clear(st.queue[len(kept):])
	st.queue = kept
	st.qmu.Unlock()
	st.push(nil, &WatchResponse{WatchID: id, Canceled: true, Revision: h.rev}, 0)
	return true
}

// RequestProgress queues a progress response for the whole stream (watch ID
// -1, the hub's revision) if every watcher of the stream is synced and has
// reached its start revision, and reports whether it was; like etcd 3.7,
// an unanswerable request is dropped and a stream without watchers gets no
// reply.
func (st *WatchStream) RequestProgress() bool {
	h := st.h
	h.mu.Lock()
	defer h.mu.Unlock()
	live := 0
	for _, w := range st.watchers {
		if w.state == stateGone {
			continue
		}
		if w.state != stateSynced || h.rev < w.startRev {
			return false
		}
		live++
	}
	if live > 0 {
		st.push(nil, &WatchResponse{WatchID: InvalidWatchID, Revision: h.rev}, 0)
	}
	return true
}

// ProgressTick is the periodic progress notification: every watcher that
// asked for it, received no events since the previous tick, and is synced
// gets an empty response with the hub's revision.
func (st *WatchStream) ProgressTick() {
	h := st.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range st.watchers {
		if !w.opts.ProgressNotify || w.state == stateGone {
			continue
		}
		st.qmu.Lock()
		quiet := w.quiet
		w.quiet = true
		st.qmu.Unlock()
		if quiet && w.state == stateSynced && h.rev >= w.startRev {
			st.push(w, &WatchResponse{WatchID: w.id, Revision: h.rev}, 0)
		}
	}
}

// Next returns the next response, waiting for one until ctx ends or the
// stream is closed (ErrWatchStreamClosed).
func (st *WatchStream) Next(ctx context.Context) (*WatchResponse, error) {
	for {
		st.qmu.Lock()
		if st.qclosed {
			st.qmu.Unlock()
			return nil, ErrWatchStreamClosed
		}
		if len(st.queue) > 0 {
			q := st.queue[0]
			st.queue[0] = queuedResp{}
			st.queue = st.queue[1:]
			if q.w != nil && q.w.tail == q.r {
				q.w.tail = nil // being sent: no longer open for more events
			}
			kick := q.w != nil && st.takenLocked(q.w, len(q.r.Events))
			st.qmu.Unlock()
			if kick {
				st.h.kickSync()
			}
			return q.r, nil
		}
		st.qmu.Unlock()
		select {
		case <-st.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// takenLocked accounts for n events of w handed to the consumer and reports
// whether the hub should resume catching w up.
func (st *WatchStream) takenLocked(w *watcher, n int) bool {
	if n == 0 {
		return false
	}
	w.queued -= n
	w.quiet = false
	if w.blocked && w.queued <= st.h.opts.QueueEvents/2 {
		w.blocked = false
		return true
	}
	return false
}

// Close removes the stream's watchers from the hub and drops what is
// queued; Next then returns ErrWatchStreamClosed.
func (st *WatchStream) Close() {
	h := st.h
	h.mu.Lock()
	if !st.closed {
		st.closed = true
		for _, w := range st.watchers {
			h.removeLocked(w)
		}
		st.watchers = map[int64]*watcher{}
		delete(h.streams, st)
	}
	h.mu.Unlock()
	st.qmu.Lock()
	st.qclosed, st.queue = true, nil
	st.qmu.Unlock()
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// push queues r (for watcher w, or stream-wide when w is nil). With limit >
// 0 it refuses events that would take w's queue over limit, unless the
// queue is empty, and marks w blocked.
func (st *WatchStream) push(w *watcher, r *WatchResponse, limit int) bool {
	st.qmu.Lock()
	defer st.qmu.Unlock()
	if st.qclosed {
		return true
	}
	if w == nil {
		st.wide++
	} else {
		n := len(r.Events)
		if limit > 0 && n > 0 && w.queued > 0 && w.queued+n > limit {
			w.blocked = true
			return false
		}
		w.queued += n
		r.Fragment = w.opts.Fragment
		if st.coalesce(w, r) {
			return true
		}
	}
	st.queue = append(st.queue, queuedResp{w, r})
	select {
	case st.wake <- struct{}{}:
	default:
	}
	return true
}

// coalesce appends the events of r to w's newest queued response if that
// is still waiting in the queue, holds only events, and nothing for w or for
// the whole stream was queued after it; otherwise it makes r that response
// (if r holds only events) and reports false. Under load the consumer then
// sends one response per watcher for several batches instead of one per
// batch: the events move earlier in the stream, never later, and stay in
// revision order, as a catching-up watcher's responses are in etcd.
func (st *WatchStream) coalesce(w *watcher, r *WatchResponse) bool {
	eventsOnly := func(r *WatchResponse) bool {
		return len(r.Events) > 0 && !r.Created && !r.Canceled && r.CompactRevision == 0
	}
	if !eventsOnly(r) {
		w.tail = nil
		return false
	}
	size := eventBytes(r.Events)
	if t := w.tail; t != nil && w.tailWide == st.wide && w.tailBytes+size <= maxCoalescedBytes {
		// The full slice expression makes append copy: the events slice
		// may be shared with the hub.
		t.Events = append(t.Events[:len(t.Events):len(t.Events)], r.Events...)
		t.Revision = r.Revision
		w.tailBytes += size
		return true
	}
	w.tail, w.tailWide, w.tailBytes = r, st.wide, size
	return false
}

// maxCoalescedBytes bounds the key and value bytes coalesce gathers in one
// response, so merging never makes a message clients with a small receive
// limit would refuse where the separate responses would have passed.
const maxCoalescedBytes = 1 << 20

func eventBytes(evs []*mvccpb.Event) int {
	n := 0
	for _, ev := range evs {
		n += len(ev.Kv.GetKey()) + len(ev.Kv.GetValue()) + len(ev.PrevKv.GetKey()) + len(ev.PrevKv.GetValue())
	}
	return n
}

// room is how many events the hub may queue for w now; 0 marks w blocked
// so that Next kicks the hub when it drains.
func (st *WatchStream) room(w *watcher, limit int) int {
	st.qmu.Lock()
	defer st.qmu.Unlock()
	if r := limit - w.queued; r > 0 {
		return r
	}
	w.blocked = true
	return 0
}
