package server

import (
	"context"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/cairn-kv/cairn/mvcc"
)

// History replays the store's events on [key, end) from revision fromRev
// (see mvcc.Store.Events for the meaning of end, limit and the returned next
// revision). It reads the local store: a caller that needs to see its own
// writes waits for them with AppliedNotify.
func (s *Server) History(ctx context.Context, fromRev int64, key, end []byte, limit int) ([]*mvccpb.Event, int64, error) {
	var (
		evs  []*mvccpb.Event
		next int64
	)
	err := s.withStore(func(kv *mvcc.Store) error {
		var err error
		evs, next, err = kv.Events(ctx, fromRev, key, end, limit)
		return err
	})
	return evs, next, err
}

// AppliedNotify returns a channel that is closed the next time the member
// applies committed entries. Take the channel before reading state, so a
// change between the read and the wait is not missed.
func (s *Server) AppliedNotify() <-chan struct{} {
	s.appliedMu.Lock()
	defer s.appliedMu.Unlock()
	return s.appliedCh
}
