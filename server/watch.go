package server

import (
	"context"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/cairn-kv/cairn/mvcc"
)

// watchState owns the member's watch hub. The hub outlives store swaps: it
// reads history through storeHistory, which always uses the current store.
type watchState struct {
	mu  sync.Mutex
	hub *mvcc.WatchHub // guarded by mu; nil until the store is first opened
}

// storeOpened starts the hub at the new store's revision, or tells a
// running hub that the store was replaced (a received state copy).
func (s *Server) storeOpened(kv *mvcc.Store) {
	s.watch.mu.Lock()
	defer s.watch.mu.Unlock()
	if s.watch.hub == nil {
		s.watch.hub = mvcc.NewWatchHub(storeHistory{s}, mvcc.WatchHubOptions{Logger: s.log.With("component", "watch")})
		return
	}
	s.watch.hub.Restore(kv.Rev())
}

// watchHub returns the hub; the store is open, so it exists.
func (s *Server) watchHub() *mvcc.WatchHub {
	s.watch.mu.Lock()
	defer s.watch.mu.Unlock()
	return s.watch.hub
}

// prevValuesWanted is the store's Options.PrevValuesWanted: whether a
// watcher wants previous values (yes before the hub exists).
func (s *Server) prevValuesWanted() bool {
	h := s.watchHub()
	return h == nil || h.WantsPrevValues()
}

// notifyWatchers hands the hub the events of a committed batch.
func (s *Server) notifyWatchers(evs []*mvccpb.Event) {
	if h := s.watchHub(); h != nil {
		h.Notify(evs)
	}
}

// closeWatch stops the hub and ends every watch stream.
func (s *Server) closeWatch() {
	if h := s.watchHub(); h != nil {
		h.Close()
	}
}

// NewWatchStream opens a stream of watches on this member (v3rpc's
// WatchBackend). The caller closes it.
func (s *Server) NewWatchStream() *mvcc.WatchStream {
	return s.watchHub().NewStream()
}

// storeHistory reads the current store for the hub, holding the store lock
// so that the store is not swapped or closed during a read.
type storeHistory struct{ s *Server }

func (h storeHistory) Rev() int64 {
	var rev int64
	_ = h.s.withStore(func(kv *mvcc.Store) error { rev = kv.Rev(); return nil })
	return rev
}

func (h storeHistory) CompactRev() int64 {
	var rev int64
	_ = h.s.withStore(func(kv *mvcc.Store) error { rev = kv.CompactRev(); return nil })
	return rev
}

func (h storeHistory) Events(ctx context.Context, from int64, key, end []byte, limit int) (evs []*mvccpb.Event, next int64, err error) {
	err = h.s.withStore(func(kv *mvcc.Store) error {
		evs, next, err = kv.Events(ctx, from, key, end, limit)
		return err
	})
	return evs, next, err
}
