package backend

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func mustOpen(t *testing.T, dir string, fs vfs.FS) *Backend {
	t.Helper()
	b, err := Open(dir, Options{FS: fs})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return b
}

func TestCommitRecordsAppliedIndexAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	b := mustOpen(t, dir, nil)
	if got := b.AppliedIndex(); got != 0 {
		t.Fatalf("fresh applied index = %d", got)
	}
	bt := b.NewBatch()
	if err := bt.Set([]byte("kx"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := bt.Commit(7); err != nil {
		t.Fatal(err)
	}
	if got := b.AppliedIndex(); got != 7 {
		t.Fatalf("applied index = %d, want 7", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = mustOpen(t, dir, nil)
	defer b.Close()
	if got := b.AppliedIndex(); got != 7 {
		t.Fatalf("after reopen applied index = %d, want 7", got)
	}
	v, err := b.Get([]byte("kx"))
	if err != nil || string(v) != "1" {
		t.Fatalf("get = %q, %v", v, err)
	}
}

func TestBatchSeesOwnWritesAndDiscardChangesNothing(t *testing.T) {
	b := mustOpen(t, t.TempDir(), nil)
	defer b.Close()
	bt := b.NewBatch()
	_ = bt.Set([]byte("ka"), []byte("A"))
	_ = bt.Set([]byte("kb"), []byte("B"))
	if v, err := bt.Get([]byte("ka")); err != nil || string(v) != "A" {
		t.Fatalf("batch get = %q, %v", v, err)
	}
	_ = bt.Delete([]byte("ka"))
	if _, err := bt.Get([]byte("ka")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted key in batch: err = %v", err)
	}
	it, err := bt.NewIter([]byte("k"), []byte("l"))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for it.First(); it.Valid(); it.Next() {
		keys = append(keys, string(it.Key()))
	}
	it.Close()
	if len(keys) != 1 || keys[0] != "kb" {
		t.Fatalf("batch iter keys = %q", keys)
	}
	if _, err := b.Get([]byte("kb")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("uncommitted write visible: %v", err)
	}
	bt.Close()
	if _, err := b.Get([]byte("kb")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("discarded write visible: %v", err)
	}
}

func TestCommitRejectsIndexGoingBackwards(t *testing.T) {
	b := mustOpen(t, t.TempDir(), nil)
	defer b.Close()
	bt := b.NewBatch()
	if err := bt.Commit(10); err != nil {
		t.Fatal(err)
	}
	bt = b.NewBatch()
	_ = bt.Set([]byte("kz"), []byte("z"))
	if err := bt.Commit(9); !errors.Is(err, ErrIndexBackwards) {
		t.Fatalf("commit(9) after 10: err = %v", err)
	}
	if _, err := b.Get([]byte("kz")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rejected batch applied: %v", err)
	}
}

func TestCommitNoIndexKeepsAppliedIndex(t *testing.T) {
	b := mustOpen(t, t.TempDir(), nil)
	defer b.Close()
	bt := b.NewBatch()
	_ = bt.Commit(5)
	bt = b.NewBatch()
	_ = bt.Set([]byte("ky"), []byte("y"))
	if err := bt.CommitNoIndex(); err != nil {
		t.Fatal(err)
	}
	if b.AppliedIndex() != 5 {
		t.Fatalf("applied index = %d", b.AppliedIndex())
	}
	if v, _ := b.Get(appliedKey); len(v) != 8 || v[7] != 5 {
		t.Fatalf("stored applied index = %x", v)
	}
}

// TestSyncSurvivesCrash uses pebble's strict in-memory filesystem: after
// ResetToSyncedState, only data that was fsynced remains.
func TestSyncSurvivesCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	b := mustOpen(t, "db", fs)
	for i := uint64(1); i <= 3; i++ {
		bt := b.NewBatch()
		_ = bt.Set([]byte{'k', byte(i)}, []byte("v"))
		if err := bt.Commit(i); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := b.Sync()
	if err != nil || idx != 3 {
		t.Fatalf("sync = %d, %v", idx, err)
	}
	bt := b.NewBatch()
	_ = bt.Set([]byte{'k', 4}, []byte("v"))
	_ = bt.Commit(4)
	crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	_ = b.Close()
	b = mustOpen(t, "db", crashed)
	defer b.Close()
	if got := b.AppliedIndex(); got != 3 {
		t.Fatalf("after crash applied index = %d, want 3 (synced)", got)
	}
	if _, err := b.Get([]byte{'k', 3}); err != nil {
		t.Fatalf("synced key lost: %v", err)
	}
	if _, err := b.Get([]byte{'k', 4}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unsynced key survived a crash dropping unsynced data: %v", err)
	}
}

func TestCheckpointIsConsistentCopy(t *testing.T) {
	b := mustOpen(t, t.TempDir(), nil)
	defer b.Close()
	bt := b.NewBatch()
	_ = bt.Set([]byte("kc"), []byte("c"))
	_ = bt.Commit(12)
	cp := filepath.Join(t.TempDir(), "cp")
	if err := b.Checkpoint(cp); err != nil {
		t.Fatal(err)
	}
	bt = b.NewBatch()
	_ = bt.Set([]byte("kd"), []byte("d"))
	_ = bt.Commit(13)
	c := mustOpen(t, cp, nil)
	defer c.Close()
	if c.AppliedIndex() != 12 {
		t.Fatalf("checkpoint applied index = %d", c.AppliedIndex())
	}
	if _, err := c.Get([]byte("kd")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("later write in checkpoint: %v", err)
	}
	if err := b.Checkpoint(cp); err == nil {
		t.Fatal("checkpoint into an existing dir succeeded")
	}
}

func TestCompactAndSize(t *testing.T) {
	b := mustOpen(t, t.TempDir(), nil)
	defer b.Close()
	bt := b.NewBatch()
	for i := 0; i < 1000; i++ {
		_ = bt.Set([]byte{'k', byte(i >> 8), byte(i)}, make([]byte, 100))
	}
	_ = bt.Commit(1)
	if err := b.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b.Size() <= 0 {
		t.Fatalf("size = %d", b.Size())
	}
	it, _ := b.NewIter([]byte("k"), []byte("l"))
	n := 0
	for it.First(); it.Valid(); it.Next() {
		n++
	}
	it.Close()
	if n != 1000 {
		t.Fatalf("after compact %d keys", n)
	}
}
