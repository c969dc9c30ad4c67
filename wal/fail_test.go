package wal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/cairn-kv/cairn/vfs"
	"github.com/cairn-kv/cairn/vfs/errorfs"
)

func isSegment(p string) bool  { return strings.HasSuffix(p, segExt) }
func isPrepared(p string) bool { return filepath.Base(p) == tmpName }

func TestFailedWriteOrSyncBreaksTheWAL(t *testing.T) {
	cases := []struct {
		name string
		rule errorfs.Rule
	}{
		{"write", errorfs.Rule{Ops: errorfs.OpWrite, Path: isSegment, After: 5}},
		{"short write", errorfs.Rule{Ops: errorfs.OpWrite, Path: isSegment, After: 5, ShortWrite: true}},
		{"fsync", errorfs.Rule{Ops: errorfs.OpSync, Path: isSegment, After: 5}},
		{"truncate at rollover", errorfs.Rule{Ops: errorfs.OpTruncate}},
		{"prepare next segment", errorfs.Rule{Ops: errorfs.OpCreate, Path: isPrepared}},
		{"preallocate next segment", errorfs.Rule{Ops: errorfs.OpPreallocate, Path: isPrepared}},
		{"zero-fill next segment", errorfs.Rule{Ops: errorfs.OpWrite, Path: isPrepared}},
		{"fsync zeros of next segment", errorfs.Rule{Ops: errorfs.OpSync, Path: isPrepared}},
		// The 1 KiB segment is zero-filled in one write; the next is the head.
		{"write head of next segment", errorfs.Rule{Ops: errorfs.OpWrite, Path: isPrepared, After: 1}},
		{"rename next segment", errorfs.Rule{Ops: errorfs.OpRename}},
		{"sync dir at rollover", errorfs.Rule{Ops: errorfs.OpSyncDir}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "wal")
			efs := errorfs.Wrap(vfs.Default())
			w := create(t, efs, dir, 1024)
			inj := efs.Inject(c.rule)
			var acked []*raftpb.Entry
			var first error
			for i := uint64(1); i <= 100 && first == nil; i++ {
				e := ent(i, 1, "payload-of-some-length-to-fill-segments")
				if first = w.Save(hardState(1, 1, i-1), []*raftpb.Entry{e}, true); first == nil {
					acked = append(acked, e)
				}
			}
			if first == nil || inj.Fired() == 0 {
				t.Fatalf("no failure injected (fired %d)", inj.Fired())
			}
			if !errors.Is(first, ErrBroken) || !errors.Is(first, errorfs.ErrInjected) {
				t.Fatalf("first error %v does not wrap ErrBroken and the cause", first)
			}
			inj.Disable() // the WAL must stay broken even though the disk recovered
			later := []error{
				w.Save(hardState(1, 1, 1), []*raftpb.Entry{ent(uint64(len(acked)+1), 1, "x")}, true),
				w.Save(hardState(2, 1, 1), nil, false),
				w.SaveSnapshot(Snapshot{Index: 1, Term: 1}),
				w.ReleaseTo(1),
			}
			for i, err := range later {
				if !errors.Is(err, ErrBroken) || !errors.Is(err, errorfs.ErrInjected) {
					t.Fatalf("call %d after the failure: %v", i, err)
				}
			}
			_ = w.Close()
			w2, _, got := reopen(t, dir, Snapshot{}, 1024)
			mustClose(t, w2)
			if len(got) < len(acked) {
				t.Fatalf("reopen found %d entries, %d were acknowledged", len(got), len(acked))
			}
			checkEntries(t, got[:len(acked)], acked)
		})
	}
}

func TestConcurrentWaitersAllSeeTheFailure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	efs := errorfs.Wrap(vfs.Default())
	w := create(t, efs, dir, 0)
	inj := efs.Inject(errorfs.Rule{Ops: errorfs.OpSync, Path: isSegment, After: 10})
	var mu sync.Mutex
	acked := map[uint64]bool{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			failed := false
			for i := range 20 {
				idx := uint64(g*20 + i + 1)
				err := w.Save(nil, []*raftpb.Entry{ent(idx, 1, "c")}, true)
				if err == nil && failed {
					t.Errorf("Save of %d succeeded after an earlier failure", idx)
				}
				if err != nil {
					failed = true
					if !errors.Is(err, ErrBroken) {
						t.Errorf("Save of %d: %v", idx, err)
					}
					continue
				}
				mu.Lock()
				acked[idx] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if inj.Fired() == 0 {
		t.Fatal("no fsync failed")
	}
	if err := w.Save(nil, []*raftpb.Entry{ent(1000, 1, "late")}, false); !errors.Is(err, ErrBroken) {
		t.Fatalf("Save after the failure: %v", err)
	}
	_ = w.Close()
	found := map[uint64]bool{}
	for _, e := range rawEntries(t, dir) {
		found[e.GetIndex()] = true
	}
	for idx := range acked {
		if !found[idx] {
			t.Fatalf("acknowledged entry %d missing after reopen", idx)
		}
	}
}

func TestCreateFailureLeavesNothing(t *testing.T) {
	for _, op := range []errorfs.Op{errorfs.OpWrite, errorfs.OpSync, errorfs.OpSyncDir, errorfs.OpRename} {
		t.Run(op.String(), func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "wal")
			efs := errorfs.Wrap(vfs.Default())
			efs.Inject(errorfs.Rule{Ops: op, Count: 1})
			if _, err := Create(efs, dir, testMD, Options{}); !errors.Is(err, errorfs.ErrInjected) {
				t.Fatalf("Create: %v", err)
			}
			if op != errorfs.OpSyncDir || !Exist(vfs.Default(), dir) {
				// Only a failed fsync of the parent may leave the renamed log.
				if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("failed Create left %s: %v", dir, err)
				}
			}
			if _, err := os.Stat(dir + ".tmp"); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("failed Create left its tmp dir: %v", err)
			}
			// A retry on a healthy disk succeeds unless the log was made.
			if !Exist(vfs.Default(), dir) {
				mustClose(t, create(t, vfs.Default(), dir, 0))
			}
		})
	}
}
