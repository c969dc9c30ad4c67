package v3rpc

import (
	"context"
	"errors"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/cairn-kv/cairn/mvcc"
)

// HistoryBackend is the member's event log, which the Lock and Election
// services follow to wait for keys to change.
type HistoryBackend interface {
	// History replays the events on [key, end) from fromRev, at most about
	// limit of them; next is the revision to continue from. Revisions at or
	// below the compaction revision fail with mvcc.ErrCompacted.
	History(ctx context.Context, fromRev int64, key, end []byte, limit int) (evs []*mvccpb.Event, next int64, err error)
	// AppliedNotify returns a channel closed when the member next applies
	// entries.
	AppliedNotify() <-chan struct{}
}

// coordKV is the key-value side the Lock and Election services build on:
// in production the validating kvServer (so requests are checked and
// headers filled as for any client), in tests a fake.
type coordKV interface {
	Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error)
	DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error)
	Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error)
}

// changeWaiter waits for keys to change. historyWaiter implements it by
// replaying the member's event log after every apply; a watch-hub based
// implementation can replace it without touching Lock or Election.
type changeWaiter interface {
	// next blocks until [key, end) has events at or after fromRev and
	// returns them with the revision to continue from.
	next(ctx context.Context, key, end []byte, fromRev int64) ([]*mvccpb.Event, int64, error)
}

const (
	// historyBatch bounds the events read per History call.
	historyBatch = 256
	// historyRecheck bounds how long a waiter sleeps without a wake-up from
	// AppliedNotify (which a snapshot install may not send).
	historyRecheck = 500 * time.Millisecond
)

// historyWaiter follows the event log: it reads the events after fromRev,
// and when there are none it waits for the next apply. Each read covers only
// revisions applied since the previous one, so a waiter costs one short scan
// per applied batch.
type historyWaiter struct{ h HistoryBackend }

func (w historyWaiter) next(ctx context.Context, key, end []byte, fromRev int64) ([]*mvccpb.Event, int64, error) {
	t := time.NewTimer(historyRecheck)
	defer t.Stop()
	for {
		applied := w.h.AppliedNotify()
		evs, next, err := w.h.History(ctx, fromRev, key, end, historyBatch)
		if err != nil {
			return nil, 0, err
		}
		if len(evs) > 0 {
			return evs, next, nil
		}
		fromRev = max(next, fromRev)
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-applied:
		case <-t.C:
			t.Reset(historyRecheck)
		}
	}
}

// waitDeleted returns once key, which exists at revision rev, is deleted
// after rev.
func waitDeleted(ctx context.Context, kv coordKV, w changeWaiter, key []byte, rev int64) error {
	from := rev + 1
	for {
		evs, next, err := w.next(ctx, key, nil, from)
		if errors.Is(err, mvcc.ErrCompacted) {
			// The log we needed is gone: look at the key itself instead.
			resp, rerr := kv.Range(ctx, &pb.RangeRequest{Key: key})
			if rerr != nil {
				return rerr
			}
			if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision > rev {
				return nil
			}
			from = resp.Header.Revision + 1
			continue
		}
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if ev.Type == mvccpb.DELETE {
				return nil
			}
		}
		from = next
	}
}

// waitDeletes returns once no key under pfx has a create revision at or
// below maxCreateRev: it waits for the newest such key to go, then looks
// again (the same order of waits as etcd's concurrency package).
func waitDeletes(ctx context.Context, kv coordKV, w changeWaiter, pfx []byte, maxCreateRev int64) error {
	if maxCreateRev <= 0 {
		return nil // no key is that old (and 0 would mean "no limit")
	}
	for {
		resp, err := kv.Range(ctx, &pb.RangeRequest{
			Key: pfx, RangeEnd: prefixEnd(pfx), Limit: 1, MaxCreateRevision: maxCreateRev,
			SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_CREATE,
		})
		if err != nil {
			return err
		}
		if len(resp.Kvs) == 0 {
			return nil
		}
		if err := waitDeleted(ctx, kv, w, resp.Kvs[0].Key, resp.Header.Revision); err != nil {
			return err
		}
	}
}

// firstCreated is a range over pfx returning the key created first.
func firstCreated(pfx []byte) *pb.RangeRequest {
	return &pb.RangeRequest{
		Key: pfx, RangeEnd: prefixEnd(pfx), Limit: 1,
		SortOrder: pb.RangeRequest_ASCEND, SortTarget: pb.RangeRequest_CREATE,
	}
}

// prefixEnd is the range end that covers every key starting with pfx.
func prefixEnd(pfx []byte) []byte {
	end := append([]byte(nil), pfx...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0}
}

// createdAt compares the create revision of key with rev.
func createdAt(key []byte, rev int64) *pb.Compare {
	return &pb.Compare{
		Target: pb.Compare_CREATE, Result: pb.Compare_EQUAL, Key: key,
		TargetUnion: &pb.Compare_CreateRevision{CreateRevision: rev},
	}
}

func opPut(key, val []byte, lease int64) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: key, Value: val, Lease: lease}}}
}

func opRange(r *pb.RangeRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
}

func opDelete(key []byte) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: key}}}
}
