package mvcc

import (
	"errors"
	"time"
)

// syncLoop catches unsynced watchers up from history until Close. It runs
// when kicked (a watcher became unsynced, a full queue drained, the store
// was restored) and retries after RetryInterval when a read failed.
func (h *WatchHub) syncLoop() {
	defer close(h.done)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-h.kick:
		case <-retry.C:
		}
		for {
			more, failed := h.syncOnce()
			if h.ctx.Err() != nil {
				return
			}
			if failed {
				retry.Reset(h.opts.RetryInterval)
			}
			if !more || failed {
				break
			}
		}
	}
}

// syncOnce gives every unsynced watcher one catch-up step. more reports
// that some watcher has more history to read right away.
func (h *WatchHub) syncOnce() (more, failed bool) {
	type job struct {
		w       *watcher
		from    int64
		fromNow bool
	}
	h.mu.Lock()
	jobs := make([]job, 0, len(h.unsynced))
	for w := range h.unsynced {
		jobs = append(jobs, job{w, w.next, w.fromNow})
	}
	h.mu.Unlock()
	for _, j := range jobs {
		m, f := h.syncOne(j.w, j.from, j.fromNow)
		more, failed = more || m, failed || f
	}
	return more, failed
}

// syncOne reads up to the watcher's free queue room of history from its
// next revision and queues it; a watcher that reaches the hub's revision
// joins the synced set. A watcher whose next revision is below the
// compaction revision is canceled with it (etcd's rule: a watch may start
// at the compaction revision itself; the event log starts after it, so such
// a watch resumes after it). A watcher that started from now (fromNow)
// asked for no history and just skips compacted revisions.
func (h *WatchHub) syncOne(w *watcher, from int64, fromNow bool) (more, failed bool) {
	room := w.st.room(w, h.opts.QueueEvents)
	if room <= 0 {
		return false, false // the consumer kicks us when it drains the queue
	}
	cr := h.src.CompactRev()
	if from < cr && !fromNow {
		h.cancelCompacted(w, cr)
		return false, false
	}
	start := max(from, cr+1)
	evs, next, err := h.src.Events(h.ctx, start, w.key, w.end, room)
	if errors.Is(err, ErrCompacted) {
		return true, false // a compaction raced the read: decide again
	}
	if err != nil {
		if h.ctx.Err() == nil {
			h.log.Warn("watch catch-up read failed; retrying", "watch-id", w.id, "from", start, "err", err)
		}
		return false, true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.state != stateUnsynced || w.next != from {
		return false, false
	}
	w.next = start
	if evs = w.filter(evs); len(evs) > 0 {
		w.st.push(w, &WatchResponse{WatchID: w.id, Events: evs, Revision: next - 1}, 0)
	}
	w.next = next
	if next > h.rev {
		w.fromNow = false
		delete(h.unsynced, w)
		h.addSyncedLocked(w)
		return false, false
	}
	return true, false
}

// cancelCompacted cancels an unsynced watcher that needs compacted history.
func (h *WatchHub) cancelCompacted(w *watcher, compactRev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.state != stateUnsynced {
		return
	}
	h.removeLocked(w)
	// etcd leaves the header revision of this response at 0.
	w.st.push(w, &WatchResponse{WatchID: w.id, CompactRevision: compactRev, Canceled: true}, 0)
}
