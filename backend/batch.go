package backend

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Batch is an indexed write batch over the committed state. It belongs to
// one goroutine; after Commit, CommitNoIndex or Close it must not be used.
type Batch struct {
	be *Backend
	b  *pebble.Batch
}

// Set writes k = v in the batch. Pebble copies k and v.
func (bt *Batch) Set(k, v []byte) error {
	if err := bt.b.Set(k, v, nil); err != nil {
		return fmt.Errorf("backend: batch set: %w", err)
	}
	return nil
}

// Delete removes k in the batch.
func (bt *Batch) Delete(k []byte) error {
	if err := bt.b.Delete(k, nil); err != nil {
		return fmt.Errorf("backend: batch delete: %w", err)
	}
	return nil
}

// DeleteRange removes every key in [start, end) in the batch.
func (bt *Batch) DeleteRange(start, end []byte) error {
	if err := bt.b.DeleteRange(start, end, nil); err != nil {
		return fmt.Errorf("backend: batch delete range: %w", err)
	}
	return nil
}

// Get returns a copy of the value of k as seen through the batch (its own
// writes over the committed state), or ErrNotFound.
func (bt *Batch) Get(k []byte) ([]byte, error) { return getFrom(bt.b, k) }

// NewIter returns an iterator over [lower, upper) that sees the batch's
// writes made before the call over the committed state. The caller closes
// it before committing the batch.
func (bt *Batch) NewIter(lower, upper []byte) (*pebble.Iterator, error) {
	return bt.b.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
}

// Empty reports whether the batch holds no writes.
func (bt *Batch) Empty() bool { return bt.b.Empty() }

// Len is the batch's encoded size in bytes.
func (bt *Batch) Len() int { return bt.b.Len() }

// Commit writes appliedIndex into the batch and commits it without fsync
// (see the package doc). The batch is released whatever the outcome.
func (bt *Batch) Commit(appliedIndex uint64) error {
	defer bt.Close()
	if cur := bt.be.applied.Load(); appliedIndex < cur {
		return fmt.Errorf("%w: %d < %d", ErrIndexBackwards, appliedIndex, cur)
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], appliedIndex)
	if err := bt.b.Set(appliedKey, v[:], nil); err != nil {
		return fmt.Errorf("backend: batch set applied index: %w", err)
	}
	if err := bt.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("backend: commit: %w", err)
	}
	bt.be.gen.Add(1)
	bt.be.applied.Store(appliedIndex)
	return nil
}

// CommitNoIndex commits the batch without touching the applied index, for
// background maintenance that is not a Raft entry. Not fsynced.
func (bt *Batch) CommitNoIndex() error {
	defer bt.Close()
	if err := bt.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("backend: commit: %w", err)
	}
	bt.be.gen.Add(1)
	return nil
}

// Close discards an uncommitted batch. Closing after Commit is a no-op: the
// pebble batch goes back to pebble's pool exactly once (a second release
// would hand it to two later batches).
func (bt *Batch) Close() {
	if bt.b != nil {
		_ = bt.b.Close()
		bt.b = nil
	}
}
