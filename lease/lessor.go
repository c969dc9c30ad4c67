package lease

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/cairn-kv/cairn/backend"
)

// Errors of the lessor; the API layer maps them to etcd's gRPC errors.
var (
	ErrLeaseNotFound = errors.New("lease: lease not found")
	ErrLeaseExists   = errors.New("lease: lease already exists")
	ErrTTLTooLarge   = errors.New("lease: too large lease TTL")
	ErrNotPrimary    = errors.New("lease: not the primary lessor")
	ErrCorrupt       = errors.New("lease: corrupt lease record")
)

// MaxTTL is the largest TTL a lease may be granted, in seconds (etcd's).
const MaxTTL = 9_000_000_000

// Defaults of Config.
const (
	DefaultMinCheckpointInterval = time.Second
	DefaultRevokeRetry           = 3 * time.Second
)

// Clock tells the leader's time.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Config configures New.
type Config struct {
	// Clock is the leader's clock; nil means the system clock.
	Clock Clock
	// Logger; nil discards.
	Logger *slog.Logger
	// MinCheckpointInterval bounds how often an unrenewed lease's remaining
	// TTL is recorded: every max(MinCheckpointInterval, TTL/10).
	MinCheckpointInterval time.Duration
	// RevokeRetry is how long an expired lease whose revocation was proposed
	// waits before it is proposed again.
	RevokeRetry time.Duration
}

// Lease is a lease as committed.
type Lease struct {
	ID  int64
	TTL int64 // granted TTL in seconds
	// Remaining is the persisted remaining TTL in seconds (0: the full TTL).
	Remaining int64
}

// lease is one entry of the lease table. The leader fields are meaningful
// while the lessor is primary.
type lease struct {
	Lease
	deadline time.Time // when the lease expires
	dirty    bool      // renewed since the last checkpoint was taken
	cpAt     time.Time // when the persisted remaining TTL was last true
	revokeAt time.Time // non-zero: revocation proposed, retry after this
}

// Lessor is the lease table of one member.
type Lessor struct {
	cfg   Config
	clock Clock
	log   *slog.Logger

	mu        sync.RWMutex
	leases    map[int64]*lease // guarded by mu: the committed leases
	primary   bool             // guarded by mu: this member decides expiry
	extend    time.Duration    // guarded by mu: the extension of the last promotion
	promotedc chan struct{}    // guarded by mu: closed while primary

	tx *Tx // the open batch; apply goroutine only
}

// New returns an empty lessor; Load fills it from a backend.
func New(cfg Config) *Lessor {
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MinCheckpointInterval <= 0 {
		cfg.MinCheckpointInterval = DefaultMinCheckpointInterval
	}
	if cfg.RevokeRetry <= 0 {
		cfg.RevokeRetry = DefaultRevokeRetry
	}
	return &Lessor{
		cfg: cfg, clock: cfg.Clock, log: cfg.Logger,
		leases: map[int64]*lease{}, promotedc: make(chan struct{}),
	}
}

// MinTTL is etcd's minimum lease TTL for a member with the given election
// ticks and tick (heartbeat) interval: 1.5 election timeouts, rounded up to
// whole seconds, so a lease survives a leader election.
func MinTTL(electionTicks int, heartbeat time.Duration) int64 {
	d := time.Duration(3*electionTicks/2) * heartbeat
	return max(1, int64(math.Ceil(d.Seconds())))
}

// Load replaces the lease table with the leases committed in be: at start,
// and after a state copy was installed. The open Tx, if any, is dropped. A
// primary lessor keeps the deadlines of leases it already tracked and starts
// the others from their persisted remaining TTL plus the last extension.
func (l *Lessor) Load(be *backend.Backend) error {
	it, err := be.NewIter(leasePfx, prefixEnd(leasePfx))
	if err != nil {
		return fmt.Errorf("lease: iterate: %w", err)
	}
	defer it.Close()
	table := map[int64]*lease{}
	for ok := it.First(); ok; ok = it.Next() {
		rec, err := decodeLease(it.Key(), it.Value())
		if err != nil {
			return err
		}
		table[rec.ID] = &lease{Lease: rec}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("lease: iterate: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.primary {
		now := l.clock.Now()
		for id, le := range table {
			if old, ok := l.leases[id]; ok && old.TTL == le.TTL {
				le.deadline, le.dirty, le.cpAt, le.revokeAt = old.deadline, old.dirty, old.cpAt, old.revokeAt
			} else {
				l.startLocked(le, now, l.extend)
			}
		}
	}
	l.leases = table
	l.tx = nil
	return nil
}

// Lookup returns a committed lease.
func (l *Lessor) Lookup(id int64) (Lease, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	le, ok := l.leases[id]
	if !ok {
		return Lease{}, false
	}
	return le.Lease, true
}

// Leases lists the committed leases by ID.
func (l *Lessor) Leases() []Lease {
	l.mu.RLock()
	out := make([]Lease, 0, len(l.leases))
	for _, le := range l.leases {
		out = append(out, le.Lease)
	}
	l.mu.RUnlock()
	slices.SortFunc(out, func(a, b Lease) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Exists reports whether a lease exists, including the changes of the open
// Tx. It is the revisioned store's LeaseExists: apply goroutine only.
func (l *Lessor) Exists(id int64) bool {
	if tx := l.tx; tx != nil {
		if le, ok := tx.view[id]; ok {
			return le != nil
		}
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	_, ok := l.leases[id]
	return ok
}

// Keys returns the keys attached to lease id in be, in key order.
func Keys(be *backend.Backend, id int64) ([][]byte, error) {
	pfx := attachPrefix(id)
	it, err := be.NewIter(pfx, prefixEnd(pfx))
	if err != nil {
		return nil, fmt.Errorf("lease: iterate: %w", err)
	}
	defer it.Close()
	var keys [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		keys = append(keys, append([]byte(nil), it.Key()[len(pfx):]...))
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("lease: iterate: %w", err)
	}
	return keys, nil
}

// Backend keys (prefix 'L').
var (
	leasePfx  = []byte("L/l/")
	attachPfx = []byte("L/k/")
)

const recordVersion = 1

func leaseKey(id int64) []byte {
	return binary.BigEndian.AppendUint64(slices.Clip(leasePfx), uint64(id))
}

func attachPrefix(id int64) []byte {
	return binary.BigEndian.AppendUint64(slices.Clip(attachPfx), uint64(id))
}

func attachKey(id int64, key []byte) []byte {
	return append(attachPrefix(id), key...)
}

// prefixEnd is the first key after every key that starts with pfx.
func prefixEnd(pfx []byte) []byte {
	end := slices.Clone(pfx)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func encodeLease(le Lease) []byte {
	b := []byte{recordVersion}
	b = binary.AppendVarint(b, le.TTL)
	return binary.AppendVarint(b, le.Remaining)
}

func decodeLease(k, v []byte) (Lease, error) {
	if len(k) != len(leasePfx)+8 {
		return Lease{}, fmt.Errorf("%w: key %q", ErrCorrupt, k)
	}
	le := Lease{ID: int64(binary.BigEndian.Uint64(k[len(leasePfx):]))}
	if len(v) < 1 || v[0] != recordVersion {
		return Lease{}, fmt.Errorf("%w: lease %x: unknown record version", ErrCorrupt, le.ID)
	}
	v = v[1:]
	ttl, n := binary.Varint(v)
	if n <= 0 {
		return Lease{}, fmt.Errorf("%w: lease %x: bad TTL", ErrCorrupt, le.ID)
	}
	rem, m := binary.Varint(v[n:])
	if m <= 0 || n+m != len(v) || ttl <= 0 || rem < 0 {
		return Lease{}, fmt.Errorf("%w: lease %x: bad record", ErrCorrupt, le.ID)
	}
	le.TTL, le.Remaining = ttl, rem
	return le, nil
}
