package mvcc

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

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
	s := &Store{
		be: be, opts: opts, log: opts.Logger,
		progress: make(chan struct{}),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
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

// Close stops background compaction. The backend stays open.
func (s *Store) Close() error {
	s.closeMu.Do(func() { close(s.stop) })
	<-s.stopped
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
func (s *Store) readView() (it *pebble.Iterator, rev, compactRev int64, err error) {
	rev = s.Rev()
	it, err = s.be.NewIter([]byte{prefixKV}, []byte{prefixKV + 1})
	if err != nil {
		return nil, 0, 0, fmt.Errorf("mvcc: iterate: %w", err)
	}
	return it, rev, s.CompactRev(), nil
}
