package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/cairn-kv/cairn/vfs"
)

// logReader collects the effective log while segments are scanned.
type logReader struct {
	at        Snapshot
	md        *Metadata
	hs        *raftpb.HardState
	ents      []*raftpb.Entry // entries with index > at.Index, contiguous
	lastIndex uint64          // index of the last entry record read
	found     bool            // the marker at was seen
	markers   []Snapshot
	file      string // the segment being scanned
	gap       error  // the first gap in the entries, reported after the marker check
}

func (r *logReader) visit(rec record, off int) error {
	switch rec.typ {
	case recMetadata:
		md, err := decodeMetadata(rec.payload)
		if err != nil {
			return err
		}
		if r.md == nil {
			r.md = &md
		} else if *r.md != md {
			return fmt.Errorf("%w: %+v then %+v", ErrMetadataMismatch, *r.md, md)
		}
	case recHardState:
		hs, err := decodeHardState(rec.payload)
		if err != nil {
			return err
		}
		r.hs = hs
	case recSnapshot:
		s, err := decodeSnapshot(rec.payload)
		if err != nil {
			return err
		}
		r.markers = append(r.markers, s)
		if s.Index == r.at.Index && s.Term == r.at.Term {
			r.found = true
		}
		r.lastIndex = max(r.lastIndex, s.Index)
	case recEntry:
		e, err := decodeEntry(rec.payload)
		if err != nil {
			return err
		}
		if r.gap == nil {
			if err := r.addEntry(e); err != nil {
				r.gap = &CorruptionError{File: r.file, Offset: int64(off), Err: err}
			}
		}
	}
	return nil
}

// addEntry applies one entry record: it supersedes every entry read
// before it whose index is at least its own.
func (r *logReader) addEntry(e *raftpb.Entry) error {
	idx := e.GetIndex()
	r.lastIndex = idx
	if idx <= r.at.Index {
		r.ents = r.ents[:0]
		return nil
	}
	keep := idx - r.at.Index - 1 // entries before idx
	if keep > uint64(len(r.ents)) {
		return fmt.Errorf("%w: entry %d after entry %d", ErrIndexGap, idx, r.at.Index+uint64(len(r.ents)))
	}
	r.ents = append(r.ents[:keep], e)
	return nil
}

// scanAll scans segs in order from the first, tolerating a torn tail in
// the last. It returns the last segment's contents and where it stopped.
func scanAll(fsys vfs.FS, dir string, segs []segment, r *logReader) ([]byte, scanResult, error) {
	var (
		buf []byte
		res scanResult
	)
	for i, s := range segs {
		path := filepath.Join(dir, s.name())
		r.file = path
		var err error
		buf, res, err = scanSegmentFile(fsys, path, res.crc, i > 0, i == len(segs)-1, r.visit)
		if err != nil {
			return nil, scanResult{}, err
		}
	}
	if r.md == nil {
		return nil, scanResult{}, fmt.Errorf("%w: no metadata record in %s", ErrCorrupt, dir)
	}
	return buf, res, nil
}

// ReadAll reads the log from the segment that holds the marker Open was
// given: it returns the metadata, the last hard state (empty, not nil, if
// none) and the effective entries after the marker. Every record's
// checksum is verified; damage is a *CorruptionError. A torn tail of the
// newest segment is cut off. Afterwards the WAL is ready to append.
func (w *WAL) ReadAll() (Metadata, *raftpb.HardState, []*raftpb.Entry, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usableLocked(); err != nil {
		return Metadata{}, nil, nil, err
	}
	if w.ready {
		return Metadata{}, nil, nil, errors.New("wal: ReadAll called twice")
	}
	startIdx := 0
	for i, s := range w.segs {
		if s.first <= w.start.Index {
			startIdx = i
		}
	}
	r := &logReader{at: w.start}
	buf, res, err := scanAll(w.fs, w.dir, w.segs[startIdx:], r)
	if err != nil {
		return Metadata{}, nil, nil, err
	}
	if !r.found {
		return Metadata{}, nil, nil, fmt.Errorf("%w: index %d term %d", ErrSnapshotNotFound, w.start.Index, w.start.Term)
	}
	if r.gap != nil {
		return Metadata{}, nil, nil, r.gap
	}
	if r.hs == nil {
		r.hs = &raftpb.HardState{}
	}
	if err := w.openTailLocked(buf, res); err != nil {
		return Metadata{}, nil, nil, err
	}
	w.md, w.hs, w.lastIndex = *r.md, r.hs, r.lastIndex
	w.crc, w.segOff = res.crc, int64(res.end)
	w.nextSeq = w.segs[len(w.segs)-1].seq + 1
	w.ready = true
	return *r.md, r.hs, r.ents, nil
}

// openTailLocked opens the newest segment for appending after its last
// whole record, cutting off a torn tail (anything but zeros) first.
func (w *WAL) openTailLocked(buf []byte, res scanResult) error {
	w.fileMu.Lock()
	defer w.fileMu.Unlock()
	path := filepath.Join(w.dir, w.curNameLocked())
	f, err := w.fs.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("wal: open %s: %w", path, err)
	}
	if res.torn && !allZero(buf[res.end:]) {
		w.log.Warn("cutting off torn tail", "file", path, "offset", res.end, "bytes", len(buf)-res.end)
		err = f.Truncate(int64(res.end))
		if err == nil {
			err = f.Preallocate(w.opts.SegmentSize)
		}
		if err == nil {
			err = zeroFill(f, int64(res.end), w.opts.SegmentSize, false)
		}
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			_ = f.Close()
			return fmt.Errorf("wal: repair %s: %w", path, err)
		}
	}
	w.cur, w.curOff = f, int64(res.end)
	w.startPrepareLocked()
	return nil
}

func (w *WAL) curNameLocked() string { return w.segs[len(w.segs)-1].name() }

// ValidSnapshots returns every snapshot marker in the log in dir, oldest
// first, leaving out markers above the commit index of the last hard
// state (the entries they cover may not be durable everywhere). It reads
// and verifies every segment but repairs nothing.
func ValidSnapshots(fsys vfs.FS, dir string) ([]Snapshot, error) {
	segs, err := listSegments(fsys, dir)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("%w in %s", ErrNotFound, dir)
	}
	r := &logReader{at: Snapshot{Index: ^uint64(0)}}
	if _, _, err := scanAll(fsys, dir, segs, r); err != nil {
		return nil, err
	}
	commit := r.hs.GetCommit()
	var out []Snapshot
	for _, s := range r.markers {
		if s.Index <= commit {
			out = append(out, s)
		}
	}
	return out, nil
}
