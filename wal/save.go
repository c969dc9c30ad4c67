package wal

import (
	"fmt"
	"path/filepath"
	"sync"

	"go.etcd.io/raft/v3/raftpb"
)

// batch is the bytes of one or more Saves, written with one write per
// segment and at most one fsync. Saves that arrive while another batch is
// being written join the next batch (group commit).
type batch struct {
	buf  []byte
	cuts []cut // segment switches inside buf, in order
	sync bool  // some Save in the batch asked for an fsync
	done chan struct{}
	err  error // the outcome, set before done is closed
}

// cut is a switch to a new segment at buf[pos:], whose head is
// buf[pos:headEnd].
type cut struct {
	pos, headEnd int
	seg          segment
}

// maxPooledBuf is the largest buffer kept for reuse: a Save of huge
// entries should not pin their size in memory for good.
const maxPooledBuf = 4 << 20

// bufPool recycles request payloads and batch buffers, which every Save
// would otherwise allocate and grow anew (a sixth of the bytes a member
// allocates under writes).
var bufPool sync.Pool

func getBuf() []byte {
	if p, ok := bufPool.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return nil
}

func putBuf(b []byte) {
	if cap(b) == 0 || cap(b) > maxPooledBuf {
		return
	}
	bufPool.Put(&b)
}

// request is one Save, its payloads encoded outside the lock.
type request struct {
	payload []byte
	recs    []span
	first   uint64 // index of the first entry, if any
	last    uint64 // index of the last entry, if any
	hasEnts bool
	hs      *raftpb.HardState // nil if the Save carries none
	marker  *Snapshot
	sync    bool
}

type span struct {
	typ        byte
	start, end int
}

func (r *request) add(typ byte, start int) {
	r.recs = append(r.recs, span{typ: typ, start: start, end: len(r.payload)})
}

func (r *request) size() int64 { return int64(len(r.payload) + len(r.recs)*headerSize) }

// Save appends the entries and then the hard state (if not empty) as one
// write, and fsyncs before returning if mustSync. Records reach the file
// before Save returns either way. Save is safe for concurrent use;
// concurrent callers share writes and fsyncs. Nothing to write is a no-op.
func (w *WAL) Save(hs *raftpb.HardState, ents []*raftpb.Entry, mustSync bool) error {
	empty := isEmptyHardState(hs)
	if empty && len(ents) == 0 {
		return nil
	}
	r := &request{sync: mustSync, payload: getBuf()}
	for _, e := range ents {
		start := len(r.payload)
		r.payload = encodeEntry(r.payload, e)
		if len(r.payload)-start > MaxRecordSize {
			return fmt.Errorf("%w: entry %d of %d bytes", ErrRecordTooLarge, e.GetIndex(), len(r.payload)-start)
		}
		r.add(recEntry, start)
	}
	if len(ents) > 0 {
		r.hasEnts = true
		r.first, r.last = ents[0].GetIndex(), ents[len(ents)-1].GetIndex()
	}
	if !empty {
		start := len(r.payload)
		r.payload = encodeHardState(r.payload, hs)
		r.add(recHardState, start)
		r.hs = hs
	}
	return w.commit(r)
}

// SaveSnapshot appends a snapshot marker and fsyncs.
func (w *WAL) SaveSnapshot(s Snapshot) error {
	p, err := encodeSnapshot(nil, s)
	if err != nil {
		return err
	}
	r := &request{payload: p, marker: &s, sync: true}
	r.add(recSnapshot, 0)
	return w.commit(r)
}

// commit adds r to the pending batch and waits for the batch's outcome,
// writing it (and the batches formed meanwhile) itself if no other Save is.
func (w *WAL) commit(r *request) error {
	w.mu.Lock()
	if err := w.usableLocked(); err != nil {
		w.mu.Unlock()
		return err
	}
	if !w.ready {
		w.mu.Unlock()
		return ErrNotReady
	}
	b := w.pending
	if b == nil {
		b = &batch{done: make(chan struct{}), buf: getBuf()}
		w.pending = b
	}
	w.encodeLocked(b, r)
	putBuf(r.payload)
	r.payload = nil
	if w.flushing {
		w.mu.Unlock()
		<-b.done
		return b.err
	}
	w.flushing = true
	for w.pending != nil {
		next := w.pending
		w.pending = nil
		broken := w.broken
		w.mu.Unlock()
		err := broken
		if err == nil {
			err = w.flush(next)
		}
		w.mu.Lock()
		if err != nil && w.broken == nil {
			w.broken = fmt.Errorf("%w: %w", ErrBroken, err)
			w.log.Error("wal broken", "err", err)
		}
		if err != nil {
			next.err = w.broken
		}
		putBuf(next.buf)
		next.buf = nil
		close(next.done)
	}
	w.flushing = false
	w.cond.Broadcast()
	w.mu.Unlock()
	return b.err
}

// encodeLocked appends r's records to b, first switching to a new segment
// if they would not fit in the current one. mu is held.
func (w *WAL) encodeLocked(b *batch, r *request) {
	if w.segOff+r.size() > w.opts.SegmentSize {
		first := w.lastIndex + 1
		if r.hasEnts {
			first = r.first
		}
		seg := segment{seq: w.nextSeq, first: first}
		w.nextSeq++
		pos := len(b.buf)
		b.buf, w.crc = encodeHead(b.buf, w.crc, w.md, w.hs)
		b.cuts = append(b.cuts, cut{pos: pos, headEnd: len(b.buf), seg: seg})
		w.segOff = int64(len(b.buf) - pos)
	}
	for _, s := range r.recs {
		b.buf, w.crc = appendRecord(b.buf, w.crc, s.typ, r.payload[s.start:s.end])
	}
	w.segOff += r.size()
	b.sync = b.sync || r.sync
	if r.hasEnts {
		w.lastIndex = r.last
	}
	if r.marker != nil {
		w.lastIndex = max(w.lastIndex, r.marker.Index)
	}
	if r.hs != nil {
		w.hs = r.hs
	}
}

// flush writes b, switching segments where b says, and fsyncs if asked.
func (w *WAL) flush(b *batch) error {
	w.fileMu.Lock()
	defer w.fileMu.Unlock()
	start := 0
	for _, c := range b.cuts {
		if err := w.writeLocked(b.buf[start:c.pos]); err != nil {
			return err
		}
		if err := w.rolloverLocked(c.seg, b.buf[c.pos:c.headEnd]); err != nil {
			return err
		}
		start = c.headEnd
	}
	if err := w.writeLocked(b.buf[start:]); err != nil {
		return err
	}
	if b.sync {
		if err := w.cur.Sync(); err != nil {
			return fmt.Errorf("wal: fsync %s: %w", w.curName(), err)
		}
	}
	return nil
}

func (w *WAL) curName() string { return w.segs[len(w.segs)-1].name() }

// writeLocked appends p to the newest segment. fileMu is held.
func (w *WAL) writeLocked(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if err := writeFull(w.cur, p, w.curOff); err != nil {
		return fmt.Errorf("wal: write %s at %d: %w", w.curName(), w.curOff, err)
	}
	w.curOff += int64(len(p))
	return nil
}

// rolloverLocked finishes the newest segment (cut to its length, fsynced)
// and makes the prepared file the next one: head written and fsynced, then
// renamed into place and the directory fsynced. fileMu is held.
func (w *WAL) rolloverLocked(seg segment, head []byte) error {
	old := w.curName()
	if err := w.cur.Truncate(w.curOff); err != nil {
		return fmt.Errorf("wal: truncate %s: %w", old, err)
	}
	if err := w.cur.Sync(); err != nil {
		return fmt.Errorf("wal: fsync %s: %w", old, err)
	}
	if err := w.cur.Close(); err != nil {
		return fmt.Errorf("wal: close %s: %w", old, err)
	}
	w.cur = nil
	p := <-w.prep
	w.prep = nil
	if p.err != nil {
		return fmt.Errorf("wal: prepare segment: %w", p.err)
	}
	w.cur = p.f // closed by Close even if the steps below fail
	tmp, path := filepath.Join(w.dir, tmpName), filepath.Join(w.dir, seg.name())
	if err := writeFull(p.f, head, 0); err != nil {
		return fmt.Errorf("wal: write head of %s: %w", seg.name(), err)
	}
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("wal: fsync %s: %w", tmp, err)
	}
	if err := w.fs.Rename(tmp, path); err != nil {
		return fmt.Errorf("wal: rename %s: %w", tmp, err)
	}
	if err := w.fs.SyncDir(w.dir); err != nil {
		return fmt.Errorf("wal: sync %s: %w", w.dir, err)
	}
	w.segs = append(w.segs, seg)
	w.curOff = int64(len(head))
	w.startPrepareLocked()
	w.log.Debug("new segment", "file", seg.name(), "previous", old)
	return nil
}
