package wal

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-kv/cairn/vfs"
)

// seedSegment returns the bytes of a small real segment.
func seedSegment(f *testing.F) []byte {
	dir := filepath.Join(f.TempDir(), "wal")
	w := create(f, vfs.Default(), dir, 4096)
	if err := w.Save(hardState(1, 1, 1), ents(1, 3, 1), true); err != nil {
		f.Fatal(err)
	}
	if err := w.SaveSnapshot(Snapshot{Index: 1, Term: 1}); err != nil {
		f.Fatal(err)
	}
	name := w.Segments()[0]
	mustClose(f, w)
	buf, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		f.Fatal(err)
	}
	return bytes.TrimRight(buf, "\x00")
}

// FuzzDecodeRecord decodes a stream of records and their payloads. A
// record that verifies must re-encode to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	seg := seedSegment(f)
	f.Add(seg, uint32(0))
	f.Add(seg[headerSize+4:], uint32(0))
	f.Add([]byte{4, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3, 4}, uint32(7))
	f.Fuzz(func(t *testing.T, data []byte, prev uint32) {
		crc := prev
		for off := 0; off < len(data); {
			rec, derr := decodeRecord(data[off:], crc)
			if derr != nil {
				return
			}
			if rec.size < headerSize || rec.size > len(data)-off {
				t.Fatalf("record size %d at %d of %d", rec.size, off, len(data))
			}
			if rec.typ != recCRC {
				again, c := appendRecord(nil, crc, rec.typ, rec.payload)
				if !bytes.Equal(again, data[off:off+rec.size]) || c != rec.crc {
					t.Fatalf("record at %d does not re-encode to itself", off)
				}
			}
			r := &logReader{}
			_ = r.visit(rec, off)
			crc, off = rec.crc, off+rec.size
		}
	})
}

// FuzzScanSegment reads arbitrary bytes as a whole segment, as the newest
// one (torn tails allowed) or an older one.
func FuzzScanSegment(f *testing.F) {
	seg := seedSegment(f)
	f.Add(seg, true)
	f.Add(seg, false)
	f.Add(seg[:len(seg)-3], true)
	f.Add(append(append([]byte{}, seg...), make([]byte, 600)...), true)
	f.Fuzz(func(t *testing.T, data []byte, last bool) {
		r := &logReader{}
		res, err := scanSegment("fuzz.wal", data, 0, false, last, r.visit)
		if err != nil {
			return
		}
		if res.end > len(data) || (!last && res.end != len(data)) || (!res.torn && res.end != len(data)) {
			t.Fatalf("scan stopped at %d of %d (last %v, torn %v)", res.end, len(data), last, res.torn)
		}
	})
}
