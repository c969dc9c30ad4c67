package mvcc

import (
	"bytes"
	"context"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cairn-kv/cairn/internal/failpoint"
)

// kickCompactor wakes the background compactor without blocking.
func (s *Store) kickCompactor() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// compactLoop runs compaction passes until Close.
func (s *Store) compactLoop() {
	defer close(s.stopped)
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		}
		for {
			target := s.CompactRev()
			s.cmu.Lock()
			done := s.compactDone
			s.cmu.Unlock()
			if done >= target {
				break
			}
			if err := s.compactPass(target); err != nil {
				if err != ErrClosed {
					s.log.Error("mvcc: compaction failed", "rev", target, "err", err)
					s.setProgress(done, err)
				}
				return
			}
		}
	}
}

// setProgress records background progress and wakes waiters.
func (s *Store) setProgress(done int64, err error) {
	s.cmu.Lock()
	s.compactDone, s.compactErr = done, err
	close(s.progress)
	s.progress = make(chan struct{})
	s.cmu.Unlock()
}

// WaitCompaction waits until the physical work of every compaction scheduled
// before the call has finished, or ctx ends, or the compactor failed.
func (s *Store) WaitCompaction(ctx context.Context) error {
	target := s.CompactRev()
	for {
		s.cmu.Lock()
		done, err, ch := s.compactDone, s.compactErr, s.progress
		s.cmu.Unlock()
		if err != nil {
			return err
		}
		if done >= target {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stopped:
			return ErrClosed
		}
	}
}

// compactPass removes history at or below target, resuming a recorded pass
// for the same target.
func (s *Store) compactPass(target int64) error {
	start := []byte{prefixKV}
	if v, err := s.be.Get(metaCompactNext); err == nil && len(v) > 8 {
		if t, _ := getInt64(v[:8]); t == target {
			start = v[8:]
		}
	}
	for start != nil {
		if s.closing() {
			return ErrClosed
		}
		next, err := s.compactChunk(target, start)
		if err != nil {
			return err
		}
		start = next
	}
	s.setProgress(target, nil)
	s.log.Debug("mvcc: compaction finished", "rev", target)
	return nil
}

// compactChunk handles up to CompactionChunk user keys from start in one
// batch and returns where the next chunk starts (nil when the pass is done).
func (s *Store) compactChunk(target int64, start []byte) ([]byte, error) {
	it, err := s.be.NewIter([]byte{prefixKV}, []byte{prefixKV + 1})
	if err != nil {
		return nil, fmt.Errorf("mvcc: compaction iterate: %w", err)
	}
	defer it.Close()
	bt := s.be.NewBatch()
	defer bt.Close()
	it.SeekGE(start)
	for n := 0; n < s.opts.CompactionChunk && it.Valid(); n++ {
		p, _, ok := splitKVKey(it.Key())
		if !ok {
			return nil, fmt.Errorf("%w: kv key %q", ErrBadEncoding, it.Key())
		}
		p = append([]byte(nil), p...)
		if err := compactKey(it, p, target, func(k []byte) error { return bt.Delete(k) }); err != nil {
			return nil, err
		}
		it.SeekGE(nextPrefixKey(p))
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	failpoint.Hit(failpoint.CompactMidChunk)
	var next []byte
	if it.Valid() {
		next = append([]byte(nil), it.Key()...)
		if err := bt.Set(metaCompactNext, append(putInt64(target), next...)); err != nil {
			return nil, err
		}
	} else {
		if err := bt.DeleteRange(revKey(revision{}), revKey(revision{target + 1, 0})); err != nil {
			return nil, err
		}
		if err := bt.Set(metaCompactDone, putInt64(target)); err != nil {
			return nil, err
		}
		if err := bt.Delete(metaCompactNext); err != nil {
			return nil, err
		}
	}
	if err := bt.CommitNoIndex(); err != nil {
		return nil, err
	}
	return next, nil
}

// compactKey deletes the versions of the key with prefix p that compaction at
// target removes: every version older than the newest one at or below target,
// and that one too if it is a tombstone.
func compactKey(it *pebble.Iterator, p []byte, target int64, del func([]byte) error) error {
	if !it.SeekGE(seekKey(p, target)) || !samePrefix(it.Key(), p) {
		return it.Error()
	}
	if isTombstone(it.Value()) {
		if err := del(it.Key()); err != nil {
			return err
		}
	}
	for it.Next() && bytes.HasPrefix(it.Key(), p) && samePrefix(it.Key(), p) {
		if err := del(it.Key()); err != nil {
			return err
		}
	}
	return it.Error()
}
