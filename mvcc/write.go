package mvcc

import (
	"context"
	"fmt"

	"github.com/cairn-kv/cairn/backend"
	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Writer applies write requests to one backend batch. Only the apply
// goroutine uses it: create it with Store.Write, apply any number of
// requests, commit the batch, then call End. Dropping it without End (the
// batch was discarded) changes nothing.
type Writer struct {
	s  *Store
	bt *backend.Batch

	rev        int64 // newest revision written through this writer (or the store's)
	compactRev int64 // compaction revision including this writer's Compact
	compacted  bool  // Compact was applied through this writer
	sub        int64 // next sub revision inside rev
	changed    bool  // the current request bumped rev
	events     []*mvccpb.Event
	// latest holds the newest version of every key this writer changed
	// (nil: deleted), merged into the store's cache by End.
	latest map[string]*mvccpb.KeyValue
	// partial are the events whose PrevKv came from the cache's metadata
	// and so lacks its value; End reads the values if watchers want them.
	partial []*mvccpb.Event
}

// Write begins a Writer over bt. One Writer per batch.
func (s *Store) Write(bt *backend.Batch) *Writer {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &Writer{s: s, bt: bt, rev: s.rev, compactRev: s.compactRev}
}

// Rev is the revision as seen through the writer, including its writes.
func (w *Writer) Rev() int64 { return w.rev }

// End makes the writer's revision (and compaction) visible to readers and
// returns the events it wrote, in revision order, with Kv and PrevKv filled.
// Call it after the batch was committed. A PrevKv may lack its value when
// Options.PrevValuesWanted said no watcher wants one (see there); the error
// reports a failed read of such values, with the writes already visible.
func (w *Writer) End() ([]*mvccpb.Event, error) {
	s := w.s
	s.mu.Lock()
	s.rev = w.rev
	if w.compactRev > s.compactRev {
		s.compactRev = w.compactRev
	}
	// Under mu with the revision: a reader that takes the revision and then
	// consults the cache (Range's point read) sees the cache of exactly that
	// revision.
	s.latest.merge(w.latest)
	s.mu.Unlock()
	w.latest = nil
	var err error
	// After the revision became visible (see Options.PrevValuesWanted) and
	// before a compaction in this batch starts removing old versions.
	if len(w.partial) > 0 && s.prevValuesWanted() {
		err = s.fillPrevValues(w.partial)
	}
	w.partial = nil
	s.growFilter()
	s.trimIters()
	if w.compacted {
		s.kickCompactor()
	}
	evs := w.events
	w.events = nil
	return evs, err
}

func (s *Store) prevValuesWanted() bool {
	return s.opts.PrevValuesWanted == nil || s.opts.PrevValuesWanted()
}

// fillPrevValues reads the values of events' metadata-only previous
// versions. The versions exist: a compaction removes a key's version only
// once a newer one is at or below the compaction revision, and no
// compaction at or above these events' revisions has started.
func (s *Store) fillPrevValues(evs []*mvccpb.Event) error {
	it, err := s.be.NewIter([]byte{prefixKV}, []byte{prefixKV + 1})
	if err != nil {
		return fmt.Errorf("mvcc: iterate: %w", err)
	}
	defer it.Close()
	for _, ev := range evs {
		p := ev.PrevKv
		kv, err := latest(it, p.Key, p.ModRevision)
		if err != nil {
			return err
		}
		if kv == nil || kv.ModRevision != p.ModRevision {
			return fmt.Errorf("%w: previous version %d of %q is missing", ErrBadEncoding, p.ModRevision, p.Key)
		}
		p.Value = kv.Value
	}
	return nil
}

// iter opens an iterator over the 'k' span that sees the batch's writes so
// far.
func (w *Writer) iter() (*pebble.Iterator, error) {
	it, err := w.bt.NewIter([]byte{prefixKV}, []byte{prefixKV + 1})
	if err != nil {
		return nil, fmt.Errorf("mvcc: iterate batch: %w", err)
	}
	return it, nil
}

// lazyIter opens the writer's batch iterator on first use: most puts find
// the previous version in the writer's overlay, the cache or the filter and
// need no iterator (opening and closing one cost 4% of the member's CPU
// under transactions). An iterator sees the batch as of its opening, so
// each request (each txn op) takes a new lazyIter.
type lazyIter struct {
	w  *Writer
	it *pebble.Iterator
}

func (l *lazyIter) get() (*pebble.Iterator, error) {
	if l.it == nil {
		it, err := l.w.iter()
		if err != nil {
			return nil, err
		}
		l.it = it
	}
	return l.it, nil
}

func (l *lazyIter) close() {
	if l.it != nil {
		_ = l.it.Close()
		l.it = nil
	}
}

// prev returns the newest version of key as seen through the writer (nil if
// absent): from its own changes, else the store's cache, else nil if the key
// filter rules the key out, else a seek. full is false when kv came from the
// cache's metadata and lacks its value (see prevFull).
func (w *Writer) prev(li *lazyIter, key []byte) (kv *mvccpb.KeyValue, full bool, err error) {
	if kv, ok := w.latest[string(key)]; ok {
		return kv, true, nil
	}
	if m, value, full, ok := w.s.latest.get(key); ok {
		if m.absent() {
			return nil, true, nil
		}
		return m.keyValue(key, value), full, nil
	}
	if w.s.absent(key) {
		return nil, true, nil
	}
	kv, err = w.seek(li, key)
	return kv, err == nil, err
}

// prevFull is prev with the value: it seeks when the cache knew only the
// metadata.
func (w *Writer) prevFull(li *lazyIter, key []byte) (*mvccpb.KeyValue, error) {
	kv, full, err := w.prev(li, key)
	if err != nil || full {
		return kv, err
	}
	return w.seek(li, key)
}

// seek reads key's newest version through the writer's batch.
func (w *Writer) seek(li *lazyIter, key []byte) (*mvccpb.KeyValue, error) {
	it, err := li.get()
	if err != nil {
		return nil, err
	}
	return latest(it, key, w.rev)
}

// remember records key's newest version after a change by this writer.
func (w *Writer) remember(key []byte, kv *mvccpb.KeyValue) {
	if w.latest == nil {
		w.latest = map[string]*mvccpb.KeyValue{}
	}
	w.latest[string(key)] = kv
}

// beginRequest starts a request: its first change bumps the revision.
func (w *Writer) beginRequest() { w.changed = false }

func (w *Writer) nextRev() revision {
	if !w.changed {
		w.changed = true
		w.rev++
		w.sub = 0
	}
	r := revision{w.rev, w.sub}
	w.sub++
	return r
}

func (w *Writer) leaseExists(id int64) bool {
	return id == 0 || w.s.opts.LeaseExists == nil || w.s.opts.LeaseExists(id)
}

// checkPut validates a put against the current state (it) without writing.
func (w *Writer) checkPut(it *lazyIter, p *pb.PutRequest) error {
	if p.IgnoreValue || p.IgnoreLease {
		prev, _, err := w.prev(it, p.Key)
		if err != nil {
			return err
		}
		if prev == nil {
			return fmt.Errorf("%w: %q", ErrKeyNotFound, p.Key)
		}
	}
	if !w.leaseExists(p.Lease) {
		return fmt.Errorf("%w: %x", ErrLeaseNotFound, p.Lease)
	}
	return nil
}

// Put applies a PutRequest as one revision.
func (w *Writer) Put(p *pb.PutRequest) (*pb.PutResponse, error) {
	it := &lazyIter{w: w}
	defer it.close()
	if err := w.checkPut(it, p); err != nil {
		return nil, err
	}
	w.beginRequest()
	return w.put(it, p)
}

// put writes a checked put.
func (w *Writer) put(it *lazyIter, p *pb.PutRequest) (*pb.PutResponse, error) {
	// The value of the previous version is needed now only for the
	// response or ignore_value; for the event End reads it if wanted.
	prev, full, err := w.prev(it, p.Key)
	if err == nil && !full && (p.PrevKv || p.IgnoreValue) {
		prev, err = w.seek(it, p.Key)
		full = true
	}
	if err != nil {
		return nil, err
	}
	rev := w.nextRev()
	kv := &mvccpb.KeyValue{
		Key: append([]byte(nil), p.Key...), CreateRevision: rev.main, ModRevision: rev.main,
		Version: 1, Value: p.Value, Lease: p.Lease,
	}
	if prev != nil {
		kv.CreateRevision, kv.Version = prev.CreateRevision, prev.Version+1
		if p.IgnoreValue {
			kv.Value = prev.Value
		}
		if p.IgnoreLease {
			kv.Lease = prev.Lease
		}
	}
	kv.Value = append([]byte(nil), kv.Value...)
	if err := w.record(kv.Key, rev, encodePut(kv)); err != nil {
		return nil, err
	}
	w.s.noteKey(kv.Key)
	w.remember(kv.Key, kv)
	ev := &mvccpb.Event{Type: mvccpb.PUT, Kv: kv, PrevKv: prev}
	w.events = append(w.events, ev)
	if !full {
		w.partial = append(w.partial, ev)
	}
	resp := &pb.PutResponse{Header: &pb.ResponseHeader{Revision: w.rev}}
	if p.PrevKv {
		resp.PrevKv = prev
	}
	return resp, nil
}

// record writes a version and its event-log entry into the batch.
func (w *Writer) record(key []byte, rev revision, val []byte) error {
	if err := w.bt.Set(kvKey(key, rev), val); err != nil {
		return err
	}
	return w.bt.Set(revKey(rev), key)
}

// DeleteRange applies a DeleteRangeRequest; it bumps the revision only if it
// deletes a key.
func (w *Writer) DeleteRange(d *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	it, err := w.iter()
	if err != nil {
		return nil, err
	}
	defer it.Close()
	w.beginRequest()
	return w.deleteRange(it, d)
}

func (w *Writer) deleteRange(it *pebble.Iterator, d *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	var live []*mvccpb.KeyValue
	err := scan(context.Background(), it, newSpan(d.Key, d.RangeEnd), w.rev, false, func(kv *mvccpb.KeyValue) bool {
		live = append(live, kv)
		return true
	})
	if err != nil {
		return nil, err
	}
	resp := &pb.DeleteRangeResponse{Deleted: int64(len(live))}
	for _, prev := range live {
		rev := w.nextRev()
		if err := w.record(prev.Key, rev, tombstoneValue); err != nil {
			return nil, err
		}
		w.remember(prev.Key, nil)
		w.events = append(w.events, &mvccpb.Event{
			Type:   mvccpb.DELETE,
			Kv:     &mvccpb.KeyValue{Key: prev.Key, ModRevision: rev.main},
			PrevKv: prev,
		})
	}
	if d.PrevKv {
		resp.PrevKvs = live
	}
	resp.Header = &pb.ResponseHeader{Revision: w.rev}
	return resp, nil
}

// Compact records a compaction at rev and schedules the physical work, which
// starts after End. It fails with ErrCompacted if rev is not above the
// current compaction revision and ErrFutureRev if rev is above the current
// revision.
func (w *Writer) Compact(rev int64) (*pb.CompactionResponse, error) {
	if rev <= w.compactRev {
		return nil, fmt.Errorf("%w: %d <= %d", ErrCompacted, rev, w.compactRev)
	}
	if rev > w.rev {
		return nil, fmt.Errorf("%w: %d > %d", ErrFutureRev, rev, w.rev)
	}
	if err := w.bt.Set(metaCompact, putInt64(rev)); err != nil {
		return nil, err
	}
	w.compactRev, w.compacted = rev, true
	return &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: w.rev}}, nil
}
