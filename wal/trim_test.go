package wal

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/cairn-kv/cairn/vfs"
)

// newestSegment returns the path of the newest segment in dir.
func newestSegment(t *testing.T, dir string) string {
	t.Helper()
	segs, err := listSegments(vfs.Default(), dir)
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments: %v %v", segs, err)
	}
	return filepath.Join(dir, segs[len(segs)-1].name())
}

// A preallocated segment is read only up to its data, and the log reads
// and appends as if all of it had been read.
func TestTrimmedReadOfPreallocatedSegment(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	const segSize = 4 << 20
	w := create(t, vfs.Default(), dir, segSize)
	first := ents(1, 50, 1)
	if err := w.Save(hardState(1, 1, 50), first, true); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)

	path := newestSegment(t, dir)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(whole) != segSize {
		t.Fatalf("segment is %d bytes, want preallocated %d", len(whole), segSize)
	}
	buf, trimmed, err := readSegmentTrimmed(vfs.Default(), path)
	if err != nil {
		t.Fatal(err)
	}
	if !trimmed || len(buf) == 0 || len(buf) >= segSize/2 {
		t.Fatalf("trimmed read: %d bytes, trimmed=%v", len(buf), trimmed)
	}
	if !bytes.Equal(buf, whole[:len(buf)]) || !allZero(whole[len(buf):]) || buf[len(buf)-1] == 0 {
		t.Fatal("trimmed read is not the file up to its last non-zero byte")
	}

	w, hs, got := reopen(t, dir, Snapshot{}, segSize)
	checkHS(t, hs, hardState(1, 1, 50))
	checkEntries(t, got, first)
	second := ents(51, 80, 2)
	if err := w.Save(hardState(2, 1, 80), second, true); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)
	w, hs, got = reopen(t, dir, Snapshot{}, segSize)
	defer mustClose(t, w)
	checkHS(t, hs, hardState(2, 1, 80))
	checkEntries(t, got, append(first, second...))
}

// A log whose last record ends in zero bytes cannot be told from its
// zero tail by the trimmed read; the full read takes over and nothing is
// lost or cut.
func TestRecordEndingInZerosFallsBackToFullRead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	const segSize = 1 << 20
	w := create(t, vfs.Default(), dir, segSize)
	want := ents(1, 9, 1)
	want = append(want, ent(10, 1, "ends in zeros\x00\x00\x00\x00"))
	if err := w.Save(nil, want, true); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)

	path := newestSegment(t, dir)
	buf, trimmed, err := readSegmentTrimmed(vfs.Default(), path)
	if err != nil || !trimmed {
		t.Fatalf("trimmed read: trimmed=%v err=%v", trimmed, err)
	}
	res, err := scanSegment(path, buf, 0, false, true, func(record, int) error { return nil })
	if err == nil && !res.torn && res.end == len(buf) {
		t.Fatal("the trimmed contents decode cleanly; the test does not reach the fallback")
	}

	w, _, got := reopen(t, dir, Snapshot{}, segSize)
	checkEntries(t, got, want)
	more := []*raftpb.Entry{ent(11, 1, "after")}
	if err := w.Save(hardState(1, 1, 11), more, true); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)
	w, hs, got := reopen(t, dir, Snapshot{}, segSize)
	defer mustClose(t, w)
	checkHS(t, hs, hardState(1, 1, 11))
	checkEntries(t, got, append(want, more...))
}
