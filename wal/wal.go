package wal

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/cairn-kv/cairn/vfs"
)

// DefaultSegmentSize is the size segments are preallocated to and rolled
// over at.
const DefaultSegmentSize = 64 << 20

// Metadata identifies the member that owns the log; every segment repeats it.
type Metadata struct{ ClusterID, MemberID uint64 }

// Snapshot is a snapshot marker: the log before Index is covered by a
// snapshot of that index and term.
type Snapshot struct {
	Index, Term uint64
	ConfState   *raftpb.ConfState
}

// Options tune a WAL; the zero value is usable.
type Options struct {
	// SegmentSize is the preallocated size of a segment and the size at
	// which the next Save starts a new one. 0 means DefaultSegmentSize.
	SegmentSize int64
	// Logger receives segment switches and torn-tail repairs. nil discards.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// WAL is an open write-ahead log. See the package documentation for the
// lifecycle and the locking.
type WAL struct {
	fs    vfs.FS
	dir   string
	opts  Options
	log   *slog.Logger
	start Snapshot // the marker Open positioned at

	mu   sync.Mutex
	cond *sync.Cond // on mu; broadcast when flushing ends
	// Guarded by mu: the logical end of the log, as encoded so far.
	md        Metadata
	ready     bool  // appends allowed (after Create, or ReadAll after Open)
	closed    bool  // Close was called
	broken    error // first write failure, wrapping ErrBroken
	flushing  bool  // a Save is writing batches
	pending   *batch
	crc       uint32            // chain value after the last record encoded
	segOff    int64             // offset in the newest segment after the last record encoded
	lastIndex uint64            // index of the last entry encoded
	hs        *raftpb.HardState // last hard state encoded, never nil
	nextSeq   uint64            // sequence number of the next segment

	fileMu sync.Mutex
	// Guarded by fileMu: the files.
	segs   []segment     // live segments, oldest first; the newest is cur
	cur    vfs.File      // the newest segment, open for writing (nil until ready)
	curOff int64         // bytes of cur written
	prep   chan prepared // the next segment being prepared, or nil
}

type prepared struct {
	f   vfs.File
	err error
}

func newWAL(fsys vfs.FS, dir string, opts Options) *WAL {
	opts = opts.withDefaults()
	w := &WAL{fs: fsys, dir: dir, opts: opts, log: opts.Logger.With("wal", dir), hs: &raftpb.HardState{}}
	w.cond = sync.NewCond(&w.mu)
	return w
}

// Exist reports whether dir holds at least one segment file.
func Exist(fsys vfs.FS, dir string) bool {
	segs, err := listSegments(fsys, dir)
	return err == nil && len(segs) > 0
}

// Create makes a new log in dir, which must not exist: it builds the first
// segment (metadata and the snapshot marker {0,0}) in dir.tmp, fsyncs it
// and renames the directory into place. The WAL is ready to append.
func Create(fsys vfs.FS, dir string, md Metadata, opts Options) (*WAL, error) {
	dir = filepath.Clean(dir)
	if _, err := fsys.Stat(dir); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrExist, dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("wal: stat %s: %w", dir, err)
	}
	w := newWAL(fsys, dir, opts)
	w.md = md
	tmp := dir + ".tmp"
	f, err := w.createIn(tmp)
	if err != nil {
		_ = fsys.RemoveAll(tmp)
		return nil, err
	}
	if err := fsys.Rename(tmp, dir); err != nil {
		_ = f.Close()
		_ = fsys.RemoveAll(tmp)
		return nil, fmt.Errorf("wal: rename %s: %w", tmp, err)
	}
	if err := fsys.SyncDir(filepath.Dir(dir)); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("wal: sync parent of %s: %w", dir, err)
	}
	w.segs = []segment{{seq: 1, first: 1}}
	w.cur = f
	w.nextSeq = 2
	w.ready = true
	w.startPrepareLocked()
	w.log.Info("created wal", "cluster", md.ClusterID, "member", md.MemberID)
	return w, nil
}

// createIn writes the first segment into a fresh directory tmp and sets
// the logical state after it.
func (w *WAL) createIn(tmp string) (vfs.File, error) {
	if err := w.fs.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("wal: remove %s: %w", tmp, err)
	}
	if err := w.fs.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("wal: mkdir %s: %w", tmp, err)
	}
	path := filepath.Join(tmp, segment{seq: 1, first: 1}.name())
	f, err := w.fs.Create(path)
	if err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", path, err)
	}
	buf, crc := encodeHead(nil, 0, w.md, nil)
	marker, _ := encodeSnapshot(nil, Snapshot{})
	buf, crc = appendRecord(buf, crc, recSnapshot, marker)
	err = f.Preallocate(w.opts.SegmentSize)
	if err == nil {
		err = writeFull(f, buf, 0)
	}
	if err == nil {
		err = zeroFill(f, int64(len(buf)), w.opts.SegmentSize, false)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = w.fs.SyncDir(tmp)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("wal: write first segment %s: %w", path, err)
	}
	w.crc, w.segOff, w.curOff = crc, int64(len(buf)), int64(len(buf))
	return f, nil
}

// encodeHead appends the records every segment starts with: the crc record
// carrying prev, the metadata and, if not empty, the current hard state.
func encodeHead(buf []byte, prev uint32, md Metadata, hs *raftpb.HardState) ([]byte, uint32) {
	var p [4]byte
	p[0], p[1], p[2], p[3] = byte(prev), byte(prev>>8), byte(prev>>16), byte(prev>>24)
	buf, crc := appendRecord(buf, prev, recCRC, p[:])
	buf, crc = appendRecord(buf, crc, recMetadata, encodeMetadata(md))
	if !isEmptyHardState(hs) {
		buf, crc = appendRecord(buf, crc, recHardState, encodeHardState(nil, hs))
	}
	return buf, crc
}

func isEmptyHardState(hs *raftpb.HardState) bool {
	return hs == nil || (hs.Term == nil && hs.Vote == nil && hs.Commit == nil)
}

func writeFull(f vfs.File, p []byte, off int64) error {
	n, err := f.WriteAt(p, off)
	if err == nil && n < len(p) {
		err = fmt.Errorf("wal: short write of %d bytes, %d written", len(p), n)
	}
	return err
}

// Open opens the log in dir for reading from the snapshot marker at. Call
// ReadAll next; it checks that the marker exists and makes the WAL ready to
// append.
func Open(fsys vfs.FS, dir string, at Snapshot, opts Options) (*WAL, error) {
	segs, err := listSegments(fsys, dir)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("%w in %s", ErrNotFound, dir)
	}
	// A segment prepared ahead of a rollover that never happened.
	if err := fsys.Remove(filepath.Join(dir, tmpName)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("wal: remove leftover %s: %w", tmpName, err)
	}
	w := newWAL(fsys, dir, opts)
	w.start = at
	w.segs = segs
	return w, nil
}

// zeroChunk is the unit in which zeroFill writes (and, in the background,
// fsyncs) a segment's zeros.
const zeroChunk = 1 << 20

// zeroFill writes zeros over f from off to size. Appending over written
// zeros is a plain overwrite: the fdatasync after it has no block
// allocation or unwritten-extent conversion to journal, which fallocate's
// extents need on ext4 and XFS (BENCHMARKS.md, item 18, has the figures).
// Callers still Preallocate first: it reserves the space in one call and
// fails early when the disk is full.
// With syncEach it fsyncs after every chunk, so the live segment's fsyncs,
// which on ext4 can have to wait for other files' dirty data, never find
// more than one chunk of it.
func zeroFill(f vfs.File, off, size int64, syncEach bool) error {
	if off >= size {
		return nil
	}
	zeros := make([]byte, min(zeroChunk, size-off))
	for ; off < size; off += zeroChunk {
		if err := writeFull(f, zeros[:min(zeroChunk, size-off)], off); err != nil {
			return err
		}
		if syncEach {
			if err := f.Sync(); err != nil {
				return err
			}
		}
	}
	return nil
}

// startPrepareLocked creates, preallocates and zero-fills the next segment
// under a temporary name in the background. fileMu is held or the WAL not yet
// shared.
func (w *WAL) startPrepareLocked() {
	ch := make(chan prepared, 1)
	w.prep = ch
	path := filepath.Join(w.dir, tmpName)
	size := w.opts.SegmentSize
	go func() {
		f, err := w.fs.Create(path)
		if err == nil {
			err = f.Preallocate(size)
			if err == nil {
				err = zeroFill(f, 0, size, true)
			}
			if err != nil {
				_ = f.Close()
				f = nil
			}
		}
		ch <- prepared{f: f, err: err}
	}()
}

// dropPreparedLocked waits for the segment being prepared and removes it.
func (w *WAL) dropPreparedLocked() {
	if w.prep == nil {
		return
	}
	p := <-w.prep
	w.prep = nil
	if p.f != nil {
		_ = p.f.Close()
	}
	_ = w.fs.Remove(filepath.Join(w.dir, tmpName))
}

// Close waits for writes in progress, fsyncs the newest segment (unless the
// WAL is broken) and closes it. Later calls return ErrClosed.
func (w *WAL) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	w.closed = true
	for w.flushing {
		w.cond.Wait()
	}
	broken := w.broken
	w.mu.Unlock()

	w.fileMu.Lock()
	defer w.fileMu.Unlock()
	w.dropPreparedLocked()
	if w.cur == nil {
		return nil
	}
	var err error
	if broken == nil {
		err = w.cur.Sync()
	}
	if cerr := w.cur.Close(); err == nil {
		err = cerr
	}
	w.cur = nil
	if err != nil {
		return fmt.Errorf("wal: close: %w", err)
	}
	return nil
}

// ReleaseTo deletes the segments wholly before index: every segment older
// than the newest one whose first index is at most index. The newest
// segment is never deleted. The caller guarantees that the state up to
// index is durable elsewhere.
func (w *WAL) ReleaseTo(index uint64) error {
	w.mu.Lock()
	err := w.usableLocked()
	w.mu.Unlock()
	if err != nil {
		return err
	}
	w.fileMu.Lock()
	defer w.fileMu.Unlock()
	keep := 0
	for i, s := range w.segs {
		if s.first <= index {
			keep = i
		}
	}
	if keep == 0 {
		return nil
	}
	for _, s := range w.segs[:keep] {
		path := filepath.Join(w.dir, s.name())
		if err := w.fs.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("wal: release %s: %w", path, err)
		}
		w.segs = w.segs[1:]
		w.log.Debug("released segment", "file", s.name())
	}
	if err := w.fs.SyncDir(w.dir); err != nil {
		return fmt.Errorf("wal: sync %s: %w", w.dir, err)
	}
	return nil
}

// usableLocked returns why the WAL cannot be used, or nil. mu is held.
func (w *WAL) usableLocked() error {
	switch {
	case w.closed:
		return ErrClosed
	case w.broken != nil:
		return w.broken
	}
	return nil
}

// Dir returns the directory of the log.
func (w *WAL) Dir() string { return w.dir }

// Segments returns the names of the live segment files, oldest first.
func (w *WAL) Segments() []string {
	w.fileMu.Lock()
	defer w.fileMu.Unlock()
	names := make([]string, len(w.segs))
	for i, s := range w.segs {
		names[i] = s.name()
	}
	return names
}
