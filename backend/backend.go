// Package backend owns the member's Pebble database (member/db/).
//
// # What it owns
//
// One Pebble DB per member holds every piece of applied state. Several owners
// share it by the first byte of the key:
//
//	prefix  owner       contents
//	'm'     backend     meta: "m/applied" = applied Raft index (8 bytes, big endian)
//	'k'     mvcc        'k' + escaped user key + inverted revision -> key version or tombstone
//	'r'     mvcc        'r' + revision (main, sub) -> which user key changed (event log)
//	'c'     mvcc        mvcc meta: compaction revision, compaction progress
//	'L'     lease       leases
//	'A'     auth        users, roles, auth revision
//	'C'     membership  cluster members, cluster version
//	'V'     v2store     the v2 tree
//
// An owner never reads or writes outside its prefixes.
//
// # Lifecycle and durability
//
// Open opens (or creates) the DB. The apply goroutine creates one Batch per
// applied Raft Ready (NewBatch), lets every owner add its changes to it, and
// commits it with Commit(appliedIndex): the applied index is written in the
// same batch, so the DB always holds the state of exactly one applied index.
//
// Commit does not fsync. The Raft WAL is the source of durability: after a
// crash the member replays the WAL from AppliedIndex. Pebble's own WAL stays
// on, written without fsync: Pebble hands it to the OS from a background
// flusher, so a killed process loses at most the last few milliseconds of
// commits and the OS keeps the rest; a power loss can lose everything since
// the last Sync. Either way the DB holds the state of exactly the applied
// index it reports, and the lost batches are re-applied from the Raft WAL.
// Sync makes every committed batch durable (one fsync of Pebble's WAL) and
// returns the index it covers; only then may the Raft WAL release segments up
// to that index. Keeping Pebble's WAL on costs one sequential write per batch
// (see BENCHMARKS.md); with it off, Sync would have to flush memtables to new
// sstables (milliseconds each, and write amplification), and every batch
// since the last flush would be lost even on a mere process kill, making
// restarts replay far more of the Raft WAL.
//
// Background maintenance that is not a Raft entry (mvcc compaction) commits
// its own small batches with CommitNoIndex, which leaves the applied index
// alone.
//
// # Memory
//
// The block cache is bounded (Options.CacheSize, 32 MiB by default) and so
// are memtables (16 MiB each, at most 4 queued), so memory does not grow with
// the number of keys.
//
// # Concurrency
//
// Only the apply goroutine (and background owners with CommitNoIndex) write.
// Get, NewIter, NewSnapshot, AppliedIndex, Sync, Checkpoint and Size may be
// called from any goroutine. A Batch belongs to one goroutine.
package backend

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Errors returned by the backend.
var (
	// ErrNotFound is returned by Get when the key is absent.
	ErrNotFound = errors.New("backend: key not found")
	// ErrIndexBackwards is returned by Commit when the applied index is lower
	// than the one already recorded.
	ErrIndexBackwards = errors.New("backend: applied index goes backwards")
	// ErrCorrupt marks a malformed meta record.
	ErrCorrupt = errors.New("backend: corrupt meta record")
)

// DefaultCacheSize is the block cache size used when Options.CacheSize is 0.
const DefaultCacheSize = 32 << 20

const memTableSize = 16 << 20

// appliedKey records the applied Raft index.
var appliedKey = []byte("m/applied")

// Options configure Open.
type Options struct {
	// CacheSize is the block cache size in bytes; 0 means DefaultCacheSize.
	CacheSize int64
	// Logger receives Pebble's messages; nil discards them.
	Logger *slog.Logger
	// FS is the filesystem (pebble's vfs), for tests; nil means the OS.
	FS vfs.FS
	// OnCorruption is told of damage Pebble finds in a file while reading
	// (a *CorruptionError naming the file); the read itself fails too. It
	// must not block. nil: the damage is only logged.
	OnCorruption func(error)
}

// Backend is an open Pebble DB with its applied index.
type Backend struct {
	db  *pebble.DB
	dir string
	// applied is the index recorded by the last committed batch; written only
	// by the committing goroutine, read by any.
	applied atomic.Uint64
	// gen counts committed batches; bumped after each commit is visible, so
	// an iterator opened after reading gen G sees every commit up to G.
	gen atomic.Uint64
}

// Generation returns the number of batches committed so far. An iterator
// opened after Generation returned G holds every commit up to G; while
// Generation still returns G, nothing newer exists, so the iterator is as
// current as a new one (the basis of mvcc's iterator reuse).
func (b *Backend) Generation() uint64 { return b.gen.Load() }

// Open opens or creates the DB in dir.
func Open(dir string, opts Options) (*Backend, error) {
	size := opts.CacheSize
	if size <= 0 {
		size = DefaultCacheSize
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cache := pebble.NewCache(size)
	defer cache.Unref()
	po := &pebble.Options{
		Cache:                       cache,
		FS:                          opts.FS,
		Logger:                      pebbleLogger{logger},
		MemTableSize:                memTableSize,
		MemTableStopWritesThreshold: 4,
		FormatMajorVersion:          pebble.FormatNewest,
		EventListener:               corruptionListener(logger, opts.OnCorruption),
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("backend: open %s: %w", dir, err)
	}
	b := &Backend{db: db, dir: dir}
	v, err := b.Get(appliedKey)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		db.Close()
		return nil, err
	case len(v) != 8:
		db.Close()
		return nil, fmt.Errorf("%w: applied index of %d bytes", ErrCorrupt, len(v))
	default:
		b.applied.Store(binary.BigEndian.Uint64(v))
	}
	return b, nil
}

// AppliedIndex is the index recorded by the last committed batch.
func (b *Backend) AppliedIndex() uint64 { return b.applied.Load() }

// Get returns a copy of the committed value of k, or ErrNotFound.
func (b *Backend) Get(k []byte) ([]byte, error) {
	return getFrom(b.db, k)
}

// reader is what pebble's DB, Batch and Snapshot have in common for Get.
type reader interface {
	Get(k []byte) ([]byte, io.Closer, error)
}

func getFrom(r reader, k []byte) ([]byte, error) {
	v, c, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("backend: get: %w", err)
	}
	out := append([]byte(nil), v...)
	c.Close()
	return out, nil
}

// NewIter returns an iterator over committed keys in [lower, upper); nil
// bounds are open. The caller closes it.
func (b *Backend) NewIter(lower, upper []byte) (*pebble.Iterator, error) {
	return b.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
}

// NewSnapshot returns a point-in-time view of the committed state. The caller
// closes it.
func (b *Backend) NewSnapshot() *pebble.Snapshot { return b.db.NewSnapshot() }

// NewBatch returns an indexed batch: reads through it see its own writes on
// top of the committed state.
func (b *Backend) NewBatch() *Batch {
	return &Batch{be: b, b: b.db.NewIndexedBatch()}
}

// Sync makes every committed batch durable and returns the applied index that
// is now durable.
func (b *Backend) Sync() (uint64, error) {
	idx := b.applied.Load()
	if err := b.db.LogData(nil, pebble.Sync); err != nil {
		return 0, fmt.Errorf("backend: sync: %w", err)
	}
	return idx, nil
}

// Checkpoint writes a consistent copy of the DB to dir, which must not exist.
func (b *Backend) Checkpoint(dir string) error {
	if err := b.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("backend: checkpoint %s: %w", dir, err)
	}
	return nil
}

// Size is the disk space the DB uses, in bytes.
func (b *Backend) Size() int64 { return int64(b.db.Metrics().DiskSpaceUsage()) }

// Compact flushes memtables and compacts the whole key space (Defragment).
func (b *Backend) Compact(ctx context.Context) error {
	if err := b.db.Flush(); err != nil {
		return fmt.Errorf("backend: flush: %w", err)
	}
	if err := b.db.Compact(ctx, []byte{0}, []byte{0xff, 0xff}, true); err != nil {
		return fmt.Errorf("backend: compact: %w", err)
	}
	return nil
}

// Close closes the DB. Committed batches that were not synced stay in
// Pebble's WAL.
func (b *Backend) Close() error {
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("backend: close: %w", err)
	}
	return nil
}

type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble", "fatal", true)
	panic("backend: pebble fatal: " + msg)
}
