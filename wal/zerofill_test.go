package wal

import (
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/cairn-kv/cairn/vfs"
)

// writeLog is a vfs.FS that records, per file base name, the byte ranges
// written and the fsyncs between them.
type writeLog struct {
	vfs.FS
	mu  sync.Mutex
	ops map[string][]fileOp
}

type fileOp struct {
	off, n int64 // a write; n == -1: an fsync
}

type loggedFile struct {
	vfs.File
	l    *writeLog
	base string
}

func (l *writeLog) Create(name string) (vfs.File, error) {
	f, err := l.FS.Create(name)
	if err != nil {
		return nil, err
	}
	return &loggedFile{File: f, l: l, base: filepath.Base(name)}, nil
}

func (l *writeLog) record(base string, op fileOp) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops[base] = append(l.ops[base], op)
}

func (l *writeLog) of(base string) []fileOp {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ops[base])
}

func (f *loggedFile) WriteAt(p []byte, off int64) (int, error) {
	f.l.record(f.base, fileOp{off: off, n: int64(len(p))})
	return f.File.WriteAt(p, off)
}

func (f *loggedFile) Sync() error {
	f.l.record(f.base, fileOp{n: -1})
	return f.File.Sync()
}

// covered reports whether the writes in ops cover [0, size).
func covered(ops []fileOp, size int64) bool {
	var ws []fileOp
	for _, o := range ops {
		if o.n > 0 {
			ws = append(ws, o)
		}
	}
	slices.SortFunc(ws, func(a, b fileOp) int { return int(a.off - b.off) })
	var end int64
	for _, w := range ws {
		if w.off > end {
			return false
		}
		end = max(end, w.off+w.n)
	}
	return end >= size
}

// Segments are written with zeros before any entry goes into them (the
// first at Create, the next in the background), so appends overwrite
// written blocks; the background fill fsyncs every chunk.
func TestSegmentsAreZeroFilled(t *testing.T) {
	const segSize = 2*zeroChunk + zeroChunk/2
	dir := filepath.Join(t.TempDir(), "wal")
	l := &writeLog{FS: vfs.Default(), ops: map[string][]fileOp{}}
	w := create(t, l, dir, segSize)
	first := segment{seq: 1, first: 1}.name()
	if ops := l.of(first); !covered(ops, segSize) {
		t.Fatalf("first segment's writes %v do not cover its %d bytes", ops, segSize)
	}
	// Fill the first segment and roll over into the prepared one.
	for i := uint64(1); len(w.segs) == 1; i += 100 {
		if i > 1_000_000 {
			t.Fatal("no rollover")
		}
		if err := w.Save(hardState(1, 1, i+99), ents(i, i+99, 1), true); err != nil {
			t.Fatal(err)
		}
	}
	mustClose(t, w)
	ops := l.of(tmpName)
	if !covered(ops, segSize) {
		t.Fatalf("prepared segment's writes %v do not cover its %d bytes", ops, segSize)
	}
	// Zero chunks alternate with fsyncs: at most one chunk unsynced at once.
	pending := 0
	for _, o := range ops {
		if o.n < 0 {
			pending = 0
			continue
		}
		if pending++; pending > 1 {
			t.Fatalf("two writes without an fsync between them in %v", ops)
		}
	}
}
