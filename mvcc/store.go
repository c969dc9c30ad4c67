package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/cairn-kv/cairn/backend"
	"github.com/cockroachdb/pebble/v2"
)

// Errors returned to callers; the API layer maps them to gRPC codes.
var (
	ErrCompacted      = errors.New("mvcc: required revision has been compacted")
	ErrFutureRev      = errors.New("mvcc: required revision is a future revision")
	ErrKeyNotFound    = errors.New("mvcc: key not found")
	ErrLeaseNotFound  = errors.New("mvcc: lease not found")
	ErrClosed         = errors.New("mvcc: store closed")
	errUnknownRequest = errors.New("mvcc: unknown request op")
)

// Meta keys (prefix 'c').
var (
	metaCompact     = []byte("c/compact")
	metaCompactDone = []byte("c/compact-done")
	metaCompactNext = []byte("c/compact-next")
)

// DefaultCompactionChunk is the number of user keys one compaction batch
// handles when Options.CompactionChunk is 0.
const DefaultCompactionChunk = 1000

// Options configure New.
type Options struct {
	// Logger receives compaction progress and errors; nil discards.
	Logger *slog.Logger
	// LeaseExists reports whether a lease is granted; nil accepts all. Called
	// only from the apply goroutine.
	LeaseExists func(id int64) bool
	// CompactionChunk is the number of user keys per compaction batch.
	CompactionChunk int
	// LatestCacheBytes bounds the cache of recently written keys' newest
	// versions that puts consult for the previous version; 0 means
	// DefaultLatestCacheBytes, negative disables the cache.
	LatestCacheBytes int
	// PrevValuesWanted reports whether some watcher may want events' previous
	// values (prev_kv); nil means always. When it reports false in
	// Writer.End, events whose previous version the cache knew only by its
	// metadata keep PrevKv without the value, which saves a put the read of
	// its previous version. The caller must make sure that a watcher which
	// starts wanting them after End asked never gets such an event: End
	// makes its revision visible before it asks, so a new watcher that
	// reads the revisions up to the store's current one from history (as
	// WatchHub does for prev_kv watchers) sees every such event with its
	// value. Called only from the apply goroutine.
	PrevValuesWanted func() bool
}

// Store is the revisioned key-value store.
type Store struct {
	be   *backend.Backend
	opts Options
	log  *slog.Logger

	mu         sync.RWMutex
	rev        int64 // guarded by mu: newest visible revision
	compactRev int64 // guarded by mu: scheduled compaction revision

	cmu         sync.Mutex
	compactDone int64         // guarded by cmu: revision whose physical compaction finished
	compactErr  error         // guarded by cmu: last background error
	progress    chan struct{} // guarded by cmu: closed and replaced on every change

	kick    chan struct{} // capacity 1: wakes the compactor
	stop    chan struct{}
	stopped chan struct{}
	closeMu sync.Once

	iters  iterPool
	latest *latestCache // nil when disabled

	// filter holds every key with a version in the backend; nil until the
	// first build finished. building is a filter being filled by a scan;
	// writers add their keys to it too. See keyfilter.go.
	filter   atomic.Pointer[keyFilter]
	building atomic.Pointer[keyFilter]
	builds   sync.WaitGroup
}

// maxPooledIters bounds the idle iterators a Store keeps.
const maxPooledIters = 32

// iterPool keeps idle read iterators over the 'k' span for reuse. Opening a
// Pebble iterator costs more than a point read (and grows the reader's
// stack); an idle iterator is as good as a new one while the backend's
// Generation has not moved, so reads between writes reuse them. Iterators of
// an older generation are closed, never reused.
type iterPool struct {
	mu     sync.Mutex
	gen    uint64             // guarded by mu: generation of every iterator in free
	free   []*pebble.Iterator // guarded by mu
	closed bool               // guarded by mu
}

// acquire returns an iterator over the 'k' span that holds every commit up
// to the backend generation at the time of the call, and that generation.
func (s *Store) acquireIter() (*pebble.Iterator, uint64, error) {
	gen := s.be.Generation()
	p := &s.iters
	p.mu.Lock()
	var stale []*pebble.Iterator
	if gen > p.gen {
		stale, p.free, p.gen = p.free, nil, gen
	}
	if n := len(p.free); n > 0 && gen == p.gen && !p.closed {
		it := p.free[n-1]
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return it, gen, nil
	}
	p.mu.Unlock()
	for _, it := range stale {
		_ = it.Close()
	}
	it, err := s.be.NewIter([]byte{prefixKV}, []byte{prefixKV + 1})
	if err != nil {
		return nil, 0, fmt.Errorf("mvcc: iterate: %w", err)
	}
	return it, gen, nil
}

// releaseIter pools it if nothing was committed since it was acquired, else
// closes it.
func (s *Store) releaseIter(it *pebble.Iterator, gen uint64) {
	p := &s.iters
	p.mu.Lock()
	if !p.closed && gen == p.gen && gen == s.be.Generation() && len(p.free) < maxPooledIters && it.Error() == nil {
		p.free = append(p.free, it)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	_ = it.Close()
}

// trimIters closes pooled iterators that a commit made stale, so they do not
// pin memtables Pebble has flushed. The writer calls it after each commit.
func (s *Store) trimIters() {
	gen := s.be.Generation()
	p := &s.iters
	p.mu.Lock()
	if p.gen == gen || len(p.free) == 0 {
		p.mu.Unlock()
		return
	}
	stale := p.free
	p.free = nil
	p.mu.Unlock()
	for _, it := range stale {
		_ = it.Close()
	}
}

// closeIters closes the pooled iterators; later releases close theirs.
func (s *Store) closeIters() {
	p := &s.iters
	p.mu.Lock()
	free := p.free
	p.free, p.closed = nil, true
	p.mu.Unlock()
	for _, it := range free {
		_ = it.Close()
	}
}

// New opens the store on be, restoring the revision and compaction revision,
// and resumes an unfinished compaction in the background. Close stops it.
func New(be *backend.Backend, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.CompactionChunk <= 0 {
		opts.CompactionChunk = DefaultCompactionChunk
	}
	if opts.LatestCacheBytes == 0 {
		opts.LatestCacheBytes = DefaultLatestCacheBytes
	}
	s := &Store{
		be: be, opts: opts, log: opts.Logger,
		progress: make(chan struct{}),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	if opts.LatestCacheBytes > 0 {
		s.latest = newLatestCache(opts.LatestCacheBytes)
	}
	var err error
	if s.compactRev, err = readMetaInt(be, metaCompact); err != nil {
		return nil, err
	}
	if s.compactDone, err = readMetaInt(be, metaCompactDone); err != nil {
		return nil, err
	}
	last, err := lastRevision(be)
	if err != nil {
		return nil, err
	}
	s.rev = max(last, s.compactRev, 1)
	if err := s.buildFilter(minFilterKeys); err != nil {
		return nil, err
	}
	go s.compactLoop()
	if s.compactDone < s.compactRev {
		s.kickCompactor()
	}
	return s, nil
}

func readMetaInt(be *backend.Backend, k []byte) (int64, error) {
	v, err := be.Get(k)
	if errors.Is(err, backend.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("mvcc: read %s: %w", k, err)
	}
	return getInt64(v)
}

func lastRevision(be *backend.Backend) (int64, error) {
	it, err := be.NewIter([]byte{prefixRev}, []byte{prefixRev + 1})
	if err != nil {
		return 0, fmt.Errorf("mvcc: iterate: %w", err)
	}
	defer it.Close()
	if !it.Last() {
		return 0, it.Error()
	}
	r, err := decodeRevKey(it.Key())
	return r.main, err
}

// closing reports whether Close has begun.
func (s *Store) closing() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// Close stops background compaction. The backend stays open.
func (s *Store) Close() error {
	s.closeMu.Do(func() { close(s.stop) })
	<-s.stopped
	s.builds.Wait()
	s.closeIters()
	return nil
}

// Rev is the current (newest visible) revision.
func (s *Store) Rev() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.rev
}

// CompactRev is the scheduled compaction revision: reads below it fail.
func (s *Store) CompactRev() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.compactRev
}

// readView opens a point-in-time iterator over the 'k' span for a read at the
// current revision. It returns the revision, which the iterator fully
// contains, and the compaction revision checked after the iterator was
// opened, so nothing at or above it was removed from the iterator's view.
func (s *Store) readView() (it *pebble.Iterator, rev, compactRev int64, release func(), err error) {
	rev = s.Rev()
	it, gen, err := s.acquireIter()
	if err != nil {
		return nil, 0, 0, nil, err
	}
	return it, rev, s.CompactRev(), func() { s.releaseIter(it, gen) }, nil
}

// buildFilter starts filling a new key filter sized for capacity keys from a
// scan of the 'k' span, and installs it when the scan ends. Call it where no
// writer is between its first write and End (in New, or in End): the scan's
// iterator then sees every committed key, and every later write adds its key
// to the filter being built.
func (s *Store) buildFilter(capacity int64) error {
	b := newKeyFilter(capacity)
	it, err := s.be.NewIter([]byte{prefixKV}, []byte{prefixKV + 1})
	if err != nil {
		return fmt.Errorf("mvcc: iterate: %w", err)
	}
	s.building.Store(b)
	s.builds.Go(func() {
		defer it.Close()
		if err := s.fillFilter(it, b); err != nil {
			s.building.CompareAndSwap(b, nil)
			if !errors.Is(err, ErrClosed) {
				s.log.Error("mvcc: key filter build failed; puts and reads seek instead", "err", err)
			}
			return
		}
		s.filter.Store(b)
		s.building.CompareAndSwap(b, nil)
	})
	return nil
}

// fillFilter adds every user key of it to f.
func (s *Store) fillFilter(it *pebble.Iterator, f *keyFilter) error {
	var last []byte
	for ok, n := it.First(), 0; ok; ok, n = it.Next(), n+1 {
		if n%4096 == 4095 && s.closing() {
			return ErrClosed
		}
		p, _, valid := splitKVKey(it.Key())
		if !valid {
			return fmt.Errorf("%w: kv key %q", ErrBadEncoding, it.Key())
		}
		if bytes.Equal(p, last) {
			continue // an older version of the same key
		}
		last = append(last[:0], p...)
		key, _, err := decodeKVKey(it.Key())
		if err != nil {
			return err
		}
		f.add(key)
	}
	return it.Error()
}

// noteKey records that key now has a version (the apply goroutine, before
// the write commits).
func (s *Store) noteKey(key []byte) {
	// The filter being built first: a finished build installs its filter
	// before it clears building, so a writer that finds building cleared
	// finds the new filter installed. (In the other order a writer could
	// add to the old filter, then miss the new one that the build installs
	// in between: a key missing from the filter in use.)
	if b := s.building.Load(); b != nil {
		b.add(key)
	}
	if f := s.filter.Load(); f != nil {
		f.add(key)
	}
}

// absent reports that key certainly has no version in the backend.
func (s *Store) absent(key []byte) bool {
	f := s.filter.Load()
	return f != nil && !f.mayContain(key)
}

// growFilter rebuilds the filter larger once more keys were added than it
// was sized for. The apply goroutine calls it from End.
func (s *Store) growFilter() {
	f := s.filter.Load()
	if f == nil || !f.full() || s.building.Load() != nil || s.closing() {
		return
	}
	if err := s.buildFilter(2 * f.count.Load()); err != nil {
		s.log.Error("mvcc: key filter rebuild failed", "err", err)
	}
}
