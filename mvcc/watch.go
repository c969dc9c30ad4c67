package mvcc

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Watch errors. Their text is etcd's: clients see it as a cancel reason.
var (
	ErrWatcherDuplicateID = errors.New("mvcc: duplicate watch ID provided on the WatchStream")
	ErrEmptyWatcherRange  = errors.New("mvcc: watcher range is empty")
	ErrWatchStreamClosed  = errors.New("mvcc: watch stream closed")
)

// InvalidWatchID is the watch ID of responses that concern no single
// watcher: a refused watch, a progress reply for a whole stream.
const InvalidWatchID = -1

// DefaultWatchQueueEvents bounds the events queued for one watcher when
// WatchHubOptions.QueueEvents is 0.
const DefaultWatchQueueEvents = 512

// History is where the hub reads past events to catch watchers up. *Store
// implements it; the member wraps its swappable store.
type History interface {
	Rev() int64
	CompactRev() int64
	Events(ctx context.Context, fromRev int64, key, end []byte, limit int) ([]*mvccpb.Event, int64, error)
}

// WatchHubOptions configure NewWatchHub.
type WatchHubOptions struct {
	// Logger receives catch-up errors; nil discards.
	Logger *slog.Logger
	// QueueEvents bounds the undelivered events queued for one watcher; a
	// watcher whose queue is full falls back to catching up from history.
	// One revision is never split, so a queue may exceed it by one batch.
	QueueEvents int
	// RetryInterval is how soon a catch-up that failed (for example while
	// the store is being swapped) is retried; default 100ms.
	RetryInterval time.Duration
}

// WatchResponse is one message to a watch stream's consumer: events of one
// watcher, or a control message (created, canceled, progress).
type WatchResponse struct {
	// WatchID is the watcher's ID, or InvalidWatchID.
	WatchID int64
	// Events are whole revisions in revision order.
	Events []*mvccpb.Event
	// Revision is the revision the response reflects: every event up to it
	// that the watcher asked for was delivered before or in this response.
	Revision int64
	// CompactRevision is set when the watcher was canceled because history
	// it needs was compacted.
	CompactRevision int64
	Created         bool
	Canceled        bool
	CancelReason    string
	// Fragment is the watcher's request to split large responses.
	Fragment bool
}

// WatchOptions are a watcher's per-watch settings.
type WatchOptions struct {
	PrevKV         bool // fill Event.PrevKv
	NoPut          bool // filter out PUT events
	NoDelete       bool // filter out DELETE events
	Fragment       bool // copied to WatchResponse.Fragment
	ProgressNotify bool // receive periodic progress (see ProgressTick)
}

type watcherState int

const (
	stateSynced   watcherState = iota // receives Notify's events directly
	stateUnsynced                     // catches up from history
	stateGone                         // canceled by compaction or removed
)

// watcher is one watch on a key or range.
type watcher struct {
	st       *WatchStream
	id       int64
	key, end []byte // end in etcd's meaning, for History.Events
	sp       keySpan
	opts     WatchOptions
	startRev int64

	next  int64        // guarded by hub.mu: first revision not yet queued
	state watcherState // guarded by hub.mu
	// fromNow marks a watcher with start revision 0 that has not synced yet
	// (only PrevKV watchers start unsynced so): it asked for no history, so
	// a compaction that overtook its start is skipped, not fatal. Guarded
	// by hub.mu.
	fromNow bool

	queued  int  // guarded by st.qmu: undelivered events in the stream's queue
	blocked bool // guarded by st.qmu: the hub refused events for lack of room
	quiet   bool // guarded by st.qmu: no events delivered since the last progress tick
	// tail is w's newest queued response while more events may join it
	// (WatchStream.coalesce); tailWide is the stream's wide count then.
	tail      *WatchResponse // guarded by st.qmu
	tailWide  uint64         // guarded by st.qmu
	tailBytes int            // guarded by st.qmu: eventBytes of tail's events
}

// WatchHub fans committed events out to watchers. See the package
// documentation ("Watches").
type WatchHub struct {
	src  History
	opts WatchHubOptions
	log  *slog.Logger

	mu       sync.Mutex
	rev      int64                            // guarded by mu: newest revision notified or restored
	keys     map[string]map[*watcher]struct{} // guarded by mu: synced single-key watchers by key
	ranges   map[*watcher]struct{}            // guarded by mu: synced range watchers
	unsynced map[*watcher]struct{}            // guarded by mu
	streams  map[*WatchStream]struct{}        // guarded by mu
	closed   bool                             // guarded by mu

	// prevKV counts the watchers with PrevKV that were not removed; see
	// WantsPrevValues.
	prevKV atomic.Int64

	ctx    context.Context // canceled by Close; bounds history reads
	cancel context.CancelFunc
	kick   chan struct{} // capacity 1: wakes the catch-up loop
	done   chan struct{}
}

// NewWatchHub starts a hub at src's current revision. Close stops it.
func NewWatchHub(src History, opts WatchHubOptions) *WatchHub {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.QueueEvents <= 0 {
		opts.QueueEvents = DefaultWatchQueueEvents
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 100 * time.Millisecond
	}
	h := &WatchHub{
		src: src, opts: opts, log: opts.Logger,
		rev:      src.Rev(),
		keys:     map[string]map[*watcher]struct{}{},
		ranges:   map[*watcher]struct{}{},
		unsynced: map[*watcher]struct{}{},
		streams:  map[*WatchStream]struct{}{},
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	go h.syncLoop()
	return h
}

// Close stops the hub and closes every stream: their consumers get
// ErrWatchStreamClosed; undelivered responses are dropped.
func (h *WatchHub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		<-h.done
		return
	}
	h.closed = true
	streams := make([]*WatchStream, 0, len(h.streams))
	for st := range h.streams {
		streams = append(streams, st)
	}
	h.mu.Unlock()
	for _, st := range streams {
		st.Close()
	}
	h.cancel()
	<-h.done
}

// WantsPrevValues reports whether some watcher wants events' previous
// values: the store's Options.PrevValuesWanted. A watcher with PrevKV is
// counted before it can receive an event and starts unsynced, so it reads
// every revision that End made visible before the count rose from history
// (with previous values) and gets only later ones from Notify.
func (h *WatchHub) WantsPrevValues() bool { return h.prevKV.Load() > 0 }

// Rev is the newest revision the hub has notified (or restored).
func (h *WatchHub) Rev() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// Notify hands the hub the events of one committed batch, in revision order
// (Writer.End's result). Only the apply goroutine calls it. It never blocks
// on a consumer: a watcher without room falls back to history.
func (h *WatchHub) Notify(evs []*mvccpb.Event) {
	if len(evs) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	prev, last := h.rev, evs[len(evs)-1].Kv.ModRevision
	var batches map[*watcher][]*mvccpb.Event
	add := func(w *watcher, ev *mvccpb.Event) {
		if batches == nil {
			batches = map[*watcher][]*mvccpb.Event{}
		}
		batches[w] = append(batches[w], ev)
	}
	for _, ev := range evs {
		for w := range h.keys[string(ev.Kv.Key)] {
			add(w, ev)
		}
		for w := range h.ranges {
			if w.sp.contains(ev.Kv.Key) {
				add(w, ev)
			}
		}
	}
	for w, b := range batches {
		h.deliverLocked(w, b, prev, last)
	}
	h.rev = max(h.rev, last)
}

// deliverLocked queues a synced watcher's share of a batch that ends at
// last, or moves the watcher to the unsynced set if its queue is full.
func (h *WatchHub) deliverLocked(w *watcher, evs []*mvccpb.Event, prev, last int64) {
	w.next = max(w.next, prev+1)
	evs = w.filter(evs)
	if len(evs) == 0 {
		return
	}
	if !w.st.push(w, &WatchResponse{WatchID: w.id, Events: evs, Revision: last}, h.opts.QueueEvents) {
		h.removeSyncedLocked(w)
		w.state = stateUnsynced
		h.unsynced[w] = struct{}{}
		h.kickSync()
		return
	}
	w.next = last + 1
}

// filter keeps the events at or after w.next that pass w's filters, without
// PrevKv unless asked. The events are shared: they are copied, not changed.
func (w *watcher) filter(evs []*mvccpb.Event) []*mvccpb.Event {
	if w.keepsAll(evs) {
		return evs
	}
	out := make([]*mvccpb.Event, 0, len(evs))
	for _, ev := range evs {
		switch {
		case ev.Kv.ModRevision < w.next:
		case ev.Type == mvccpb.PUT && w.opts.NoPut:
		case ev.Type == mvccpb.DELETE && w.opts.NoDelete:
		case !w.opts.PrevKV && ev.PrevKv != nil:
			out = append(out, &mvccpb.Event{Type: ev.Type, Kv: ev.Kv})
		default:
			out = append(out, ev)
		}
	}
	return out
}

// keepsAll reports whether filter would return evs unchanged.
func (w *watcher) keepsAll(evs []*mvccpb.Event) bool {
	if w.opts.NoPut || w.opts.NoDelete || (len(evs) > 0 && evs[0].Kv.ModRevision < w.next) {
		return false
	}
	if !w.opts.PrevKV {
		for _, ev := range evs {
			if ev.PrevKv != nil {
				return false
			}
		}
	}
	return true
}

// Restore tells the hub that the store was replaced by one at revision rev
// (a state copy was installed): every synced watcher that has not seen rev
// catches up from the new store's history, or is canceled if it was
// compacted past it.
func (h *WatchHub) Restore(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var moved []*watcher
	each := func(ws map[*watcher]struct{}) {
		for w := range ws {
			if w.next = max(w.next, h.rev+1); w.next <= rev {
				moved = append(moved, w)
			}
		}
	}
	each(h.ranges)
	for _, ws := range h.keys {
		each(ws)
	}
	for _, w := range moved {
		h.removeSyncedLocked(w)
		w.state = stateUnsynced
		h.unsynced[w] = struct{}{}
	}
	h.rev = max(h.rev, rev)
	if len(moved) > 0 {
		h.kickSync()
	}
}

func (h *WatchHub) addSyncedLocked(w *watcher) {
	w.state = stateSynced
	if !w.sp.single() {
		h.ranges[w] = struct{}{}
		return
	}
	ws := h.keys[string(w.key)]
	if ws == nil {
		ws = map[*watcher]struct{}{}
		h.keys[string(w.key)] = ws
	}
	ws[w] = struct{}{}
}

func (h *WatchHub) removeSyncedLocked(w *watcher) {
	if !w.sp.single() {
		delete(h.ranges, w)
		return
	}
	if ws := h.keys[string(w.key)]; ws != nil {
		delete(ws, w)
		if len(ws) == 0 {
			delete(h.keys, string(w.key))
		}
	}
}

// removeLocked takes w out of the hub for good.
func (h *WatchHub) removeLocked(w *watcher) {
	if w.opts.PrevKV && w.state != stateGone {
		h.prevKV.Add(-1)
	}
	switch w.state {
	case stateSynced:
		h.removeSyncedLocked(w)
	case stateUnsynced:
		delete(h.unsynced, w)
	}
	w.state = stateGone
}

func (h *WatchHub) kickSync() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}
