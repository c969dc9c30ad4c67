package server

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/apply"
	"github.com/cairn-kv/cairn/backend"
	"github.com/cairn-kv/cairn/mvcc"
	"github.com/cairn-kv/cairn/snap"
)

// The member's side of etcd's Maintenance service: status, alarms, hashes,
// defragmentation and client snapshots. Alarms are in alarm.go.

// errNoLeaderStatus is the text etcd lists in Status errors without a leader.
const errNoLeaderStatus = "etcdserver: no leader"

// applyResult wraps an applied response, avoiding a typed nil.
func applyResult[T proto.Message](resp T, err error) apply.Result {
	if err != nil {
		return apply.Result{Err: err}
	}
	return apply.Result{Resp: resp}
}

// withBackend runs f with the backend and the revisioned store, which are
// not swapped meanwhile.
func (s *Server) withBackend(f func(*backend.Backend, *mvcc.Store) error) error {
	s.storeMu.RLock()
	defer s.storeMu.RUnlock()
	if s.be == nil || s.kv == nil {
		return ErrStopped
	}
	return f(s.be, s.kv)
}

// MaintenanceStatus answers etcd's Status: versions, sizes, raft position,
// and in Errors the missing leader and every active alarm. The header
// carries the store revision; the API fills in the rest.
func (s *Server) MaintenanceStatus(ctx context.Context) (*pb.StatusResponse, error) {
	st := s.node.Status()
	resp := &pb.StatusResponse{
		Header:           &pb.ResponseHeader{},
		Version:          Version,
		Leader:           st.Leader,
		RaftIndex:        st.Commit,
		RaftTerm:         st.Term,
		RaftAppliedIndex: s.AppliedIndex(),
		IsLearner:        st.IsLearner,
		DbSizeQuota:      s.cfg.QuotaBackendBytes,
	}
	err := s.withBackend(func(be *backend.Backend, kv *mvcc.Store) error {
		resp.Header.Revision = kv.Rev()
		resp.DbSize = be.Size()
		resp.DbSizeInUse = be.SizeInUse()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if st.Leader == 0 {
		resp.Errors = append(resp.Errors, errNoLeaderStatus)
	}
	for _, a := range s.alarms.get(pb.AlarmType_NONE) {
		resp.Errors = append(resp.Errors, alarmString(a))
	}
	return resp, nil
}

// Alarm gets, raises or clears alarms through raft (all three, like etcd,
// so a GET is linearizable).
func (s *Server) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{Alarm: r})
	if err != nil {
		return nil, err
	}
	return resp.(*pb.AlarmResponse), nil
}

// Alarms returns the active alarms as this member has applied them.
func (s *Server) Alarms() []*pb.AlarmMember { return s.alarms.get(pb.AlarmType_NONE) }

// loadAlarmState replaces the in-memory alarms with those of a freshly
// opened backend (at start and after installing a received state).
func (s *Server) loadAlarmState(be *backend.Backend) error {
	list, err := loadAlarms(be)
	if err != nil {
		return fmt.Errorf("server: load alarms: %w", err)
	}
	s.alarms.reset(list)
	return nil
}

// Hash hashes the whole revisioned store (see mvcc.Store.Hash); the header
// carries the revision hashed.
func (s *Server) Hash(ctx context.Context) (*pb.HashResponse, error) {
	resp := &pb.HashResponse{Header: &pb.ResponseHeader{}}
	err := s.withStore(func(kv *mvcc.Store) error {
		h, rev, err := kv.Hash()
		resp.Hash, resp.Header.Revision = h, rev
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// HashKV hashes the history up to rev (0: the current revision); the header
// carries the current revision.
func (s *Server) HashKV(ctx context.Context, rev int64) (*pb.HashKVResponse, error) {
	resp := &pb.HashKVResponse{Header: &pb.ResponseHeader{}}
	err := s.withStore(func(kv *mvcc.Store) error {
		resp.Header.Revision = kv.Rev()
		var err error
		resp.Hash, resp.CompactRevision, resp.HashRevision, err = kv.HashKV(rev)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// Defragment compacts the backend's files to release the space of deleted
// data (Pebble flush and full compaction).
func (s *Server) Defragment(ctx context.Context) error {
	be, _ := s.store()
	if be == nil {
		return ErrStopped
	}
	s.log.Info("defragmenting the backend", "size-before", be.Size())
	if err := be.Compact(ctx); err != nil {
		return err
	}
	s.log.Info("defragmented the backend", "size-after", be.Size())
	return nil
}

// SnapshotArchive returns a consistent copy of the store as a tar archive
// of a Pebble checkpoint (snap.WriteArchive) and its size in bytes. The
// archive is staged in a temporary file under the snap directory (named
// *.db.tmp so a crash leaves nothing behind after a restart), removed when
// the reader is closed.
func (s *Server) SnapshotArchive(ctx context.Context) (io.ReadCloser, int64, error) {
	be, _ := s.store()
	if be == nil {
		return nil, 0, ErrStopped
	}
	base := filepath.Join(s.snapDir.Path(), fmt.Sprintf("client-%x", s.reqIDs.Next()))
	dir, file := base+".ckpt.db.tmp", base+".tar.db.tmp"
	defer os.RemoveAll(dir)
	if err := be.Checkpoint(dir); err != nil {
		return nil, 0, err
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("server: snapshot: %w", err)
	}
	rc := &removeOnClose{File: f}
	if err := snap.WriteArchive(ctx, f, dir); err != nil {
		rc.Close()
		return nil, 0, err
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		rc.Close()
		return nil, 0, fmt.Errorf("server: snapshot: %w", err)
	}
	return rc, size, nil
}

// removeOnClose deletes its file when closed.
type removeOnClose struct{ *os.File }

func (r *removeOnClose) Close() error {
	err := r.File.Close()
	if rerr := os.Remove(r.Name()); err == nil {
		err = rerr
	}
	return err
}
