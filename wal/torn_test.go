package wal

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/cairn-kv/cairn/vfs"
)

// rawRecord is one record of a segment as found on disk.
type rawRecord struct {
	off, end int
	rec      record
}

func walkRecords(t *testing.T, buf []byte) []rawRecord {
	t.Helper()
	var out []rawRecord
	var crc uint32
	for off := 0; off < len(buf); {
		rec, derr := decodeRecord(buf[off:], crc)
		if derr == errZeroHeader {
			break
		}
		if derr != nil {
			t.Fatalf("record at %d: %v", off, derr.err)
		}
		out = append(out, rawRecord{off: off, end: off + rec.size, rec: rec})
		crc, off = rec.crc, off+rec.size
	}
	return out
}

// model replays whole records the way ReadAll should from marker {0,0}.
func model(t *testing.T, recs []rawRecord) (*raftpb.HardState, []*raftpb.Entry) {
	t.Helper()
	r := &logReader{}
	for _, rr := range recs {
		if rr.rec.typ == recCRC {
			continue
		}
		if err := r.visit(rr.rec, rr.off); err != nil {
			t.Fatal(err)
		}
	}
	if r.gap != nil {
		t.Fatal(r.gap)
	}
	if r.hs == nil {
		r.hs = &raftpb.HardState{}
	}
	return r.hs, r.ents
}

// writeSegment builds a one-segment log of varied saves and returns its
// directory, file name and bytes.
func writeSegment(t *testing.T, saves int) (string, string, []byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "wal")
	w := create(t, vfs.Default(), dir, 64<<10)
	idx := uint64(1)
	for s := range saves {
		n := uint64(1 + s%3)
		es := ents(idx, idx+n-1, 1)
		es[0].Data = append(es[0].Data, bytes.Repeat([]byte{0xa5}, s*7)...) // vary sizes
		var hs *raftpb.HardState
		if s%2 == 0 {
			hs = hardState(1, 1, idx)
		}
		if err := w.Save(hs, es, true); err != nil {
			t.Fatal(err)
		}
		idx += n
	}
	name := w.Segments()[0]
	mustClose(t, w)
	buf, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return dir, name, buf
}

// readDamaged writes data as the only segment of a fresh log, reads it,
// appends one entry, and checks the append survives a reopen.
func readDamaged(t *testing.T, name string, data []byte) (*raftpb.HardState, []*raftpb.Entry, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "wal")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := Open(vfs.Default(), dir, Snapshot{}, Options{SegmentSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	_, hs, got, err := w.ReadAll()
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	next := ent(uint64(len(got))+1, 9, "after repair")
	if err := w.Save(nil, []*raftpb.Entry{next}, false); err != nil {
		t.Fatal(err)
	}
	mustClose(t, w)
	w2, _, again := reopen(t, dir, Snapshot{}, 64<<10)
	mustClose(t, w2)
	checkEntries(t, again, append(append([]*raftpb.Entry{}, got...), next))
	return hs, got, nil
}

func TestTornTailAtEveryOffset(t *testing.T) {
	_, name, orig := writeSegment(t, 12)
	recs := walkRecords(t, orig)
	last := len(recs) - 6
	if testing.Short() {
		last = len(recs) - 3
	}
	from, dataEnd := recs[last].off, recs[len(recs)-1].end
	rng := rand.New(rand.NewPCG(1, 2))
	for cut := from; cut <= dataEnd; cut++ {
		whole := 0
		for whole < len(recs) && recs[whole].end <= cut {
			whole++
		}
		wantHS, wantEnts := model(t, recs[:whole])
		garbage := make([]byte, 1+rng.IntN(300))
		for i := range garbage {
			garbage[i] = byte(rng.Uint32())
		}
		variants := map[string][]byte{
			"truncated": orig[:cut:cut],
			"zeroed":    append(append([]byte{}, orig[:cut]...), make([]byte, len(orig)-cut)...),
			"garbage":   append(append([]byte{}, orig[:cut]...), garbage...),
		}
		for vname, data := range variants {
			hs, got, err := readDamaged(t, name, data)
			if err != nil {
				t.Fatalf("cut at %d (%s): %v", cut, vname, err)
			}
			if len(got) != len(wantEnts) {
				t.Errorf("cut at %d (%s) of records %d..%d: %d entries, want %d", cut, vname, from, dataEnd, len(got), len(wantEnts))
			}
			checkEntries(t, got, wantEnts)
			checkHS(t, hs, wantHS)
		}
	}
}

func TestTornWriteWithLostSectorInTheMiddle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	w := create(t, vfs.Default(), dir, 64<<10)
	if err := w.Save(hardState(1, 1, 2), ents(1, 3, 1), true); err != nil {
		t.Fatal(err)
	}
	// The last write spans many sectors; the crash keeps one of its
	// middle sectors from the disk while later ones made it.
	if err := w.Save(hardState(1, 1, 40), ents(4, 60, 1), false); err != nil {
		t.Fatal(err)
	}
	name := w.Segments()[0]
	mustClose(t, w)
	orig, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	recs := walkRecords(t, orig)
	lost := (recs[len(recs)-1].end/2 + sectorSize - 1) / sectorSize * sectorSize
	data := append([]byte{}, orig...)
	clear(data[lost : lost+sectorSize])
	whole := 0
	for whole < len(recs) && recs[whole].end <= lost {
		whole++
	}
	if whole >= len(recs)-3 || whole < 5 {
		t.Fatalf("lost sector at %d does not fall in the middle of the last write", lost)
	}
	wantHS, wantEnts := model(t, recs[:whole])
	hs, got, err := readDamaged(t, name, data)
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, got, wantEnts)
	checkHS(t, hs, wantHS)
}

func flipBit(data []byte, off int, bit uint) []byte {
	out := append([]byte{}, data...)
	out[off] ^= 1 << bit
	return out
}

func checkCorruption(t *testing.T, err error, file string, off int, what string) {
	t.Helper()
	var ce *CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("%s: err = %v, want *CorruptionError", what, err)
	}
	if filepath.Base(ce.File) != file || ce.Offset != int64(off) {
		t.Fatalf("%s: error names %s at %d, want %s at %d", what, ce.File, ce.Offset, file, off)
	}
	if !errors.Is(err, ErrCRCMismatch) && !errors.Is(err, ErrCorrupt) {
		t.Fatalf("%s: %v wraps neither ErrCRCMismatch nor ErrCorrupt", what, err)
	}
}

func TestFlippedBitBeforeTheTailIsReported(t *testing.T) {
	_, name, orig := writeSegment(t, 12)
	recs := walkRecords(t, orig)
	for _, k := range []int{0, 1, 2, 5, len(recs) / 2, len(recs) - 3} {
		rr := recs[k]
		positions := map[string]int{
			"length":  rr.off,
			"crc":     rr.off + 5,
			"type":    rr.off + 8,
			"payload": rr.off + headerSize + (rr.end-rr.off-headerSize)/2,
			"last":    rr.end - 1,
		}
		for what, pos := range positions {
			for _, bit := range []uint{0, 7} {
				_, _, err := readDamaged(t, name, flipBit(orig, pos, bit))
				checkCorruption(t, err, name, rr.off, what)
				if what != "length" && !errors.Is(err, ErrCRCMismatch) {
					t.Fatalf("record %d %s bit %d: %v, want ErrCRCMismatch", k, what, bit, err)
				}
			}
		}
	}
}

func TestDamageInAnOlderSegmentIsReported(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	w := create(t, vfs.Default(), dir, 1024)
	for i := uint64(1); i <= 60; i += 3 {
		if err := w.Save(hardState(1, 1, i), ents(i, i+2, 1), true); err != nil {
			t.Fatal(err)
		}
	}
	names := w.Segments()
	mustClose(t, w)
	if len(names) < 3 {
		t.Fatalf("want 3+ segments, have %v", names)
	}
	for _, name := range names[:2] {
		path := filepath.Join(dir, name)
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		recs := walkRecords(t, orig)
		lastRec := recs[len(recs)-1] // the tail of an older segment is no torn tail
		for _, c := range []struct {
			data []byte
			off  int
		}{
			{flipBit(orig, lastRec.end-1, 3), lastRec.off},
			{orig[:lastRec.end-1], lastRec.off},
		} {
			if err := os.WriteFile(path, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			o, err := Open(vfs.Default(), dir, Snapshot{}, Options{SegmentSize: 1024})
			if err != nil {
				t.Fatal(err)
			}
			_, _, _, err = o.ReadAll()
			o.Close()
			checkCorruption(t, err, name, c.off, "older segment")
			if _, err := ValidSnapshots(vfs.Default(), dir); err == nil {
				t.Fatal("ValidSnapshots accepted a damaged older segment")
			}
		}
		if err := os.WriteFile(path, orig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The head of the newest segment is not a tail either.
	last := filepath.Join(dir, names[len(names)-1])
	orig, err := os.ReadFile(last)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(last, flipBit(orig, 2*headerSize+3, 1), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := Open(vfs.Default(), dir, Snapshot{}, Options{SegmentSize: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	_, _, _, err = o.ReadAll()
	checkCorruption(t, err, names[len(names)-1], headerSize+4, "head of newest segment")
}

func TestMetadataMismatchBetweenSegments(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "wal")
	w := create(t, vfs.Default(), dir, 512)
	for i := uint64(1); i <= 20; i += 2 {
		if err := w.Save(nil, ents(i, i+1, 1), true); err != nil {
			t.Fatal(err)
		}
	}
	names := w.Segments()
	mustClose(t, w)
	// Rewrite the newest segment with other metadata, chain intact.
	path := filepath.Join(dir, names[len(names)-1])
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var buf []byte
	var crc uint32
	for _, rr := range walkRecords(t, orig) {
		p := rr.rec.payload
		if rr.rec.typ == recMetadata {
			p = encodeMetadata(Metadata{ClusterID: 0xbad, MemberID: testMD.MemberID})
		}
		if rr.rec.typ == recCRC {
			crc = uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16 | uint32(p[3])<<24
		}
		buf, crc = appendRecord(buf, crc, rr.rec.typ, p)
	}
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := Open(vfs.Default(), dir, Snapshot{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if _, _, _, err := o.ReadAll(); !errors.Is(err, ErrMetadataMismatch) {
		t.Fatalf("ReadAll with mismatched metadata: %v", err)
	}
}
