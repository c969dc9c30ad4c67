package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/vfs"
)

var testMD = Metadata{ClusterID: 0xc1, MemberID: 0xa7}

func ent(index, term uint64, data string) *raftpb.Entry {
	e := &raftpb.Entry{Index: proto.Uint64(index), Term: proto.Uint64(term), Type: raftpb.EntryNormal.Enum()}
	if data != "" {
		e.Data = []byte(data)
	}
	return e
}

func ents(from, to, term uint64) []*raftpb.Entry {
	var out []*raftpb.Entry
	for i := from; i <= to; i++ {
		out = append(out, ent(i, term, fmt.Sprintf("entry-%d-term-%d-%040d", i, term, i)))
	}
	return out
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: proto.Uint64(term), Vote: proto.Uint64(vote), Commit: proto.Uint64(commit)}
}

func create(t testing.TB, fsys vfs.FS, dir string, segSize int64) *WAL {
	t.Helper()
	w, err := Create(fsys, dir, testMD, Options{SegmentSize: segSize})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// reopen opens dir at the marker, reads it and returns the ready WAL.
func reopen(t *testing.T, dir string, at Snapshot, segSize int64) (*WAL, *raftpb.HardState, []*raftpb.Entry) {
	t.Helper()
	w, err := Open(vfs.Default(), dir, at, Options{SegmentSize: segSize})
	if err != nil {
		t.Fatal(err)
	}
	md, hs, es, err := w.ReadAll()
	if err != nil {
		w.Close()
		t.Fatalf("ReadAll: %v", err)
	}
	if md != testMD {
		t.Fatalf("metadata = %+v, want %+v", md, testMD)
	}
	return w, hs, es
}

func checkEntries(t *testing.T, got, want []*raftpb.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("entry %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func checkHS(t *testing.T, got, want *raftpb.HardState) {
	t.Helper()
	if !proto.Equal(got, want) {
		t.Fatalf("hard state = %v, want %v", got, want)
	}
}

func mustClose(t testing.TB, w *WAL) {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRoundTripCreateSaveReopenAppend(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	w := create(t, vfs.Default(), dir, 0)
	want := ents(1, 5, 1)
	want = append(want, &raftpb.Entry{Index: proto.Uint64(6), Term: proto.Uint64(1)}) // no type, no data
	want = append(want, &raftpb.Entry{Index: proto.Uint64(7), Term: proto.Uint64(1), Type: raftpb.EntryConfChangeV2.Enum(), Data: []byte{}})
	if err := w.Save(hardState(1, 3, 2), want[:3], true); err != nil {
		t.Fatal(err)
	}
	if err := w.Save(hardState(1, 3, 5), want[3:], false); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)
	if err := w.Save(hardState(1, 3, 6), nil, true); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save after Close: %v", err)
	}

	w, hs, got := reopen(t, dir, Snapshot{}, 0)
	checkEntries(t, got, want)
	checkHS(t, hs, hardState(1, 3, 5))
	more := ents(8, 9, 2)
	if err := w.Save(hardState(2, 1, 9), more, true); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)

	w, hs, got = reopen(t, dir, Snapshot{}, 0)
	defer mustClose(t, w)
	checkEntries(t, got, append(want, more...))
	checkHS(t, hs, hardState(2, 1, 9))
	if _, _, _, err := w.ReadAll(); err == nil {
		t.Fatal("second ReadAll succeeded")
	}
}

func TestSaveBeforeReadAllIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	mustClose(t, create(t, vfs.Default(), dir, 0))
	w, err := Open(vfs.Default(), dir, Snapshot{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Save(hardState(1, 1, 0), nil, true); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Save before ReadAll: %v", err)
	}
}

func TestRolloverAcrossSmallSegments(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	const seg = 1024
	w := create(t, vfs.Default(), dir, seg)
	var want []*raftpb.Entry
	for i := uint64(1); i <= 120; i += 4 {
		es := ents(i, i+3, 1)
		want = append(want, es...)
		if err := w.Save(hardState(1, 1, i), es, i%8 == 1); err != nil {
			t.Fatal(err)
		}
	}
	names := w.Segments()
	mustClose(t, w)
	if len(names) < 5 {
		t.Fatalf("only %d segments for %d entries in %d-byte segments", len(names), len(want), seg)
	}
	var prevFirst uint64
	for i, n := range names {
		s, ok := parseSegmentName(n)
		if !ok || s.seq != uint64(i+1) || s.first < prevFirst {
			t.Fatalf("segment names out of order: %v", names)
		}
		prevFirst = s.first
		st, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if i < len(names)-1 && st.Size() > seg+300 {
			t.Fatalf("finished segment %s has %d bytes", n, st.Size())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, tmpName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Close left %s: %v", tmpName, err)
	}
	w, hs, got := reopen(t, dir, Snapshot{}, seg)
	checkEntries(t, got, want)
	checkHS(t, hs, hardState(1, 1, 117))
	// Appending after the reopen continues the chain into new segments.
	more := ents(121, 160, 2)
	for _, e := range more {
		if err := w.Save(nil, []*raftpb.Entry{e}, false); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, w)
	w, _, got = reopen(t, dir, Snapshot{}, seg)
	mustClose(t, w)
	checkEntries(t, got, append(want, more...))
}

func TestOpenAtLaterSnapshotAfterReleaseTo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	const seg = 2048
	w := create(t, vfs.Default(), dir, seg)
	for i := uint64(1); i <= 100; i += 5 {
		if err := w.Save(hardState(1, 1, i+4), ents(i, i+4, 1), true); err != nil {
			t.Fatal(err)
		}
	}
	snap := Snapshot{Index: 50, Term: 1, ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}}
	if err := w.SaveSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	// A marker above the commit index is not valid.
	if err := w.SaveSnapshot(Snapshot{Index: 150, Term: 1}); err != nil {
		t.Fatal(err)
	}
	before := len(w.Segments())
	if err := w.ReleaseTo(50); err != nil {
		t.Fatal(err)
	}
	after := w.Segments()
	if len(after) >= before {
		t.Fatalf("ReleaseTo removed nothing: %d segments before, %d after", before, len(after))
	}
	if first, _ := parseSegmentName(after[0]); first.first > 50 {
		t.Fatalf("ReleaseTo removed the segment holding index 50: %v", after)
	}
	mustClose(t, w)

	w, hs, got := reopen(t, dir, Snapshot{Index: 50, Term: 1}, seg)
	mustClose(t, w)
	checkEntries(t, got, ents(51, 100, 1))
	checkHS(t, hs, hardState(1, 1, 100))

	snaps, err := ValidSnapshots(vfs.Default(), dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 1 || snaps[0].Index != 50 || !proto.Equal(snaps[0].ConfState, snap.ConfState) {
		t.Fatalf("ValidSnapshots = %+v, want only the marker at 50", snaps)
	}
	w, err = Open(vfs.Default(), dir, Snapshot{}, Options{SegmentSize: seg})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, _, _, err := w.ReadAll(); !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("ReadAll at the released marker {0,0}: %v", err)
	}
}

func TestValidSnapshotsOnFreshLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	w := create(t, vfs.Default(), dir, 0)
	mustClose(t, w)
	snaps, err := ValidSnapshots(vfs.Default(), dir)
	if err != nil || len(snaps) != 1 || snaps[0].Index != 0 || snaps[0].Term != 0 {
		t.Fatalf("ValidSnapshots = %+v, %v; want [{0 0}]", snaps, err)
	}
	w, err = Open(vfs.Default(), dir, Snapshot{Index: 3, Term: 1}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, _, _, err := w.ReadAll(); !errors.Is(err, ErrSnapshotNotFound) {
		t.Fatalf("ReadAll at a marker never saved: %v", err)
	}
}

func TestHardStateOnlySaveAndNoOp(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	w := create(t, vfs.Default(), dir, 0)
	if err := w.Save(hardState(3, 2, 0), nil, true); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	off := w.segOff
	w.mu.Unlock()
	if err := w.Save(nil, nil, true); err != nil {
		t.Fatal(err)
	}
	if err := w.Save(&raftpb.HardState{}, nil, true); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	if w.segOff != off {
		t.Errorf("empty Save wrote %d bytes", w.segOff-off)
	}
	w.mu.Unlock()
	mustClose(t, w)
	w, hs, got := reopen(t, dir, Snapshot{}, 0)
	mustClose(t, w)
	checkHS(t, hs, hardState(3, 2, 0))
	checkEntries(t, got, nil)
}

// rawEntries returns every entry record in dir, in file order, ignoring
// supersession.
func rawEntries(t *testing.T, dir string) []*raftpb.Entry {
	t.Helper()
	segs, err := listSegments(vfs.Default(), dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []*raftpb.Entry
	var prev uint32
	for i, s := range segs {
		path := filepath.Join(dir, s.name())
		buf, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		res, err := scanSegment(path, buf, prev, i > 0, i == len(segs)-1, func(rec record, _ int) error {
			if rec.typ == recEntry {
				e, err := decodeEntry(rec.payload)
				out = append(out, e)
				return err
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		prev = res.crc
	}
	return out
}

func TestConcurrentSavesAreAllDurable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	w := create(t, vfs.Default(), dir, 8<<10)
	const writers, each = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				idx := uint64(g*each + i + 1)
				if err := w.Save(hardState(1, 1, idx), []*raftpb.Entry{ent(idx, 1, "concurrent")}, i%2 == 0); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(w.Segments()) < 2 {
		t.Fatalf("expected rollovers under concurrency, have %v", w.Segments())
	}
	mustClose(t, w)
	seen := make(map[uint64]int)
	for _, e := range rawEntries(t, dir) {
		seen[e.GetIndex()]++
	}
	for idx := uint64(1); idx <= writers*each; idx++ {
		if seen[idx] != 1 {
			t.Fatalf("entry %d recorded %d times", idx, seen[idx])
		}
	}
	if len(seen) != writers*each {
		t.Fatalf("%d distinct entries, want %d", len(seen), writers*each)
	}
	// The whole chain verifies (ReadAll would see the indexes out of order).
	if _, err := ValidSnapshots(vfs.Default(), dir); err != nil {
		t.Fatal(err)
	}
}

func TestLaterEntrySupersedesTail(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	const seg = 1024
	w := create(t, vfs.Default(), dir, seg)
	if err := w.Save(hardState(1, 1, 3), ents(1, 10, 1), true); err != nil {
		t.Fatal(err)
	}
	// A new leader overwrites from 6, then appends 9 alone.
	if err := w.Save(hardState(2, 2, 3), ents(6, 8, 2), true); err != nil {
		t.Fatal(err)
	}
	if err := w.Save(nil, ents(9, 9, 2), true); err != nil {
		t.Fatal(err)
	}
	// Fill a few segments, then overwrite across the segment boundary.
	if err := w.Save(nil, ents(10, 30, 2), true); err != nil {
		t.Fatal(err)
	}
	if err := w.Save(hardState(3, 3, 5), ents(12, 13, 3), true); err != nil {
		t.Fatal(err)
	}
	if len(w.Segments()) < 2 {
		t.Fatalf("want several segments, have %v", w.Segments())
	}
	mustClose(t, w)
	want := append(ents(1, 5, 1), ents(6, 11, 2)...)
	want = append(want, ents(12, 13, 3)...)
	w, hs, got := reopen(t, dir, Snapshot{}, seg)
	mustClose(t, w)
	checkEntries(t, got, want)
	checkHS(t, hs, hardState(3, 3, 5))
}

func TestIndexGapIsAnError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	w := create(t, vfs.Default(), dir, 0)
	if err := w.Save(nil, append(ents(1, 2, 1), ent(5, 1, "gap")), true); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)
	w, err := Open(vfs.Default(), dir, Snapshot{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	_, _, _, err = w.ReadAll()
	var ce *CorruptionError
	if !errors.Is(err, ErrIndexGap) || !errors.As(err, &ce) || ce.File == "" {
		t.Fatalf("ReadAll over a gap: %v", err)
	}
}

func TestExistAndCreateOnExistingDir(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "member", "wal")
	if Exist(vfs.Default(), dir) {
		t.Fatal("Exist before Create")
	}
	w := create(t, vfs.Default(), dir, 0)
	mustClose(t, w)
	if !Exist(vfs.Default(), dir) {
		t.Fatal("Exist after Create = false")
	}
	if _, err := os.Stat(dir + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Create left its tmp dir: %v", err)
	}
	if _, err := Create(vfs.Default(), dir, testMD, Options{}); !errors.Is(err, ErrExist) {
		t.Fatalf("Create on existing dir: %v", err)
	}
	empty := filepath.Join(parent, "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	if Exist(vfs.Default(), empty) {
		t.Fatal("Exist on an empty dir")
	}
	if _, err := Open(vfs.Default(), empty, Snapshot{}, Options{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open on empty dir: %v", err)
	}
}
