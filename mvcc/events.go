package mvcc

import (
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Events replays history from revision fromRev (which must be above the
// compaction revision, else ErrCompacted) up to the current revision, for
// keys in [key, end) with etcd's meaning of end (nil: the single key; "\x00":
// every key >= key). PrevKv is filled when the previous version exists. With
// limit > 0 it stops after about limit events, at a revision boundary, so a
// revision's events are never split. next is the revision to continue from.
func (s *Store) Events(ctx context.Context, fromRev int64, key, end []byte, limit int) ([]*mvccpb.Event, int64, error) {
	rev := s.Rev()
	snap := s.be.NewSnapshot()
	defer snap.Close()
	if compactRev := s.CompactRev(); fromRev <= compactRev {
		return nil, 0, fmt.Errorf("%w: events from %d, compacted at %d", ErrCompacted, fromRev, compactRev)
	}
	if fromRev > rev {
		return nil, fromRev, nil
	}
	rit, err := snap.NewIter(&pebble.IterOptions{LowerBound: revKey(revision{fromRev, 0}), UpperBound: revKey(revision{rev + 1, 0})})
	if err != nil {
		return nil, 0, fmt.Errorf("mvcc: iterate: %w", err)
	}
	defer rit.Close()
	kit, err := snap.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixKV}, UpperBound: []byte{prefixKV + 1}})
	if err != nil {
		return nil, 0, fmt.Errorf("mvcc: iterate: %w", err)
	}
	defer kit.Close()
	sp := newSpan(key, end)
	var evs []*mvccpb.Event
	var last int64
	for rit.First(); rit.Valid(); rit.Next() {
		r, err := decodeRevKey(rit.Key())
		if err != nil {
			return nil, 0, err
		}
		if limit > 0 && len(evs) >= limit && r.main != last {
			return evs, r.main, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		last = r.main
		k := rit.Value()
		if !sp.contains(k) {
			continue
		}
		ev, err := eventAt(kit, append([]byte(nil), k...), r)
		if err != nil {
			return nil, 0, err
		}
		evs = append(evs, ev)
	}
	if err := rit.Error(); err != nil {
		return nil, 0, err
	}
	return evs, rev + 1, nil
}

// eventAt builds the event that wrote key at rev, with its previous version.
func eventAt(it *pebble.Iterator, key []byte, rev revision) (*mvccpb.Event, error) {
	k := kvKey(key, rev)
	if !it.SeekGE(k) || !backendKeyEqual(it.Key(), k) {
		return nil, fmt.Errorf("%w: event %d/%d of %q has no version", ErrBadEncoding, rev.main, rev.sub, key)
	}
	kv, err := decodeValue(key, rev, it.Value())
	if err != nil {
		return nil, err
	}
	ev := &mvccpb.Event{Type: mvccpb.PUT, Kv: kv}
	if kv == nil {
		ev.Type, ev.Kv = mvccpb.DELETE, &mvccpb.KeyValue{Key: key, ModRevision: rev.main}
	}
	p := k[:len(k)-revSuffixLen]
	if it.Next() && samePrefix(it.Key(), p) {
		_, pr, _ := splitKVKey(it.Key())
		if ev.PrevKv, err = decodeValue(key, pr, it.Value()); err != nil {
			return nil, err
		}
	}
	return ev, it.Error()
}

func backendKeyEqual(a, b []byte) bool { return string(a) == string(b) }
