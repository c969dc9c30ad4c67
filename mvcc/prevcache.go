package mvcc

import (
	"hash/maphash"
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// DefaultLatestCacheBytes is the default budget of the latest-version cache
// (Options.LatestCacheBytes).
const DefaultLatestCacheBytes = 16 << 20

// Memory of one cached key beyond its key and value bytes: its latestEntry
// (80 bytes), two index slots (8), and the rounding of its key and value
// allocations (8).
const entryOverhead = 96

// latestMeta is what a put needs of its key's newest version: everything
// but the value. mod 0 means the key is known to be absent (never written,
// or deleted last).
type latestMeta struct {
	create, mod, version, lease int64
}

func (m latestMeta) absent() bool { return m.mod == 0 }

// metaOf returns kv's metadata (kv nil: absent).
func metaOf(kv *mvccpb.KeyValue) latestMeta {
	if kv == nil {
		return latestMeta{}
	}
	return latestMeta{create: kv.CreateRevision, mod: kv.ModRevision, version: kv.Version, lease: kv.Lease}
}

// keyValue builds the version m describes, with value (nil if unknown).
func (m latestMeta) keyValue(key, value []byte) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: append([]byte(nil), key...), CreateRevision: m.create,
		ModRevision: m.mod, Version: m.version, Lease: m.lease, Value: value}
}

// latestEntry is one cached key. value is nil when the value is not cached
// (a cached empty value is a non-nil empty slice).
type latestEntry struct {
	key   string
	meta  latestMeta
	value []byte
	live  bool
}

// latestCache remembers the newest version of recently written keys, so a
// put finds its previous version (create revision, version, lease) without
// seeking Pebble's memtable and tables, the largest cost of the apply path
// under random-key writes once history has accumulated. It keeps every
// cached key's metadata (about 100 bytes a key, in at most three quarters
// of the budget) and, in what the budget leaves, the values of some, for
// prev_kv, watch events and point reads. Values are evicted before
// metadata.
//
// It is a write-through cache filled only by committed writes: a Writer
// collects its changes in an overlay and merges them in End, after its batch
// committed, so an entry always equals what a seek of the committed state
// returns. Background compaction never removes a key's newest version unless
// that is a tombstone, and then the key is absent either way, so compaction
// leaves entries true. A received state copy gets a new Store and so an
// empty cache. Cached values are shared read-only: nothing mutates them.
//
// The entries live in one slice indexed by an open-addressing table
// (linear probing, deletion by backward shift), so memory per key stays
// what the budget counts under constant eviction, where a Go map grows
// with its deleted slots. Eviction takes entries in slice order from a
// moving hand: values first, then whole entries.
type latestCache struct {
	mu         sync.Mutex
	seed       maphash.Seed
	budget     int
	metaBudget int
	metaSize   int           // guarded by mu: entryOverhead + key bytes of live entries
	valSize    int           // guarded by mu: bytes of cached values
	slots      []int32       // guarded by mu: entry index + 1; 0 empty; len a power of two
	entries    []latestEntry // guarded by mu
	free       []int32       // guarded by mu: indexes of dead entries
	live       int           // guarded by mu
	valHand    int           // guarded by mu: next entry to consider for value eviction
	metaHand   int           // guarded by mu: next entry to consider for eviction
}

func newLatestCache(budget int) *latestCache {
	return &latestCache{seed: maphash.MakeSeed(), budget: budget, metaBudget: budget / 4 * 3, slots: make([]int32, 64)}
}

func metaCost(key string) int { return len(key) + entryOverhead }

// find returns the slot holding key, and whether it does; if not, the slot
// is the empty one where key would go.
func (c *latestCache) find(key string) (int, bool) {
	mask := len(c.slots) - 1
	for i := int(maphash.String(c.seed, key)) & mask; ; i = (i + 1) & mask {
		s := c.slots[i]
		if s == 0 {
			return i, false
		}
		if c.entries[s-1].key == key {
			return i, true
		}
	}
}

// get returns what the cache knows of key's newest version: its metadata m,
// its value when cached (full), and ok false when the cache does not know
// the key.
func (c *latestCache) get(key []byte) (m latestMeta, value []byte, full, ok bool) {
	if c == nil {
		return latestMeta{}, nil, false, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	i, ok := c.find(string(key))
	if !ok {
		return latestMeta{}, nil, false, false
	}
	e := &c.entries[c.slots[i]-1]
	return e.meta, e.value, e.value != nil || e.meta.absent(), true
}

// merge records a committed writer's changes (nil: deleted).
func (c *latestCache) merge(changes map[string]*mvccpb.KeyValue) {
	if c == nil || len(changes) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, kv := range changes {
		c.setLocked(k, kv)
	}
	for c.metaSize > c.metaBudget {
		c.evictLocked()
	}
	for c.metaSize+c.valSize > c.budget && c.valSize > 0 {
		c.dropValueLocked()
	}
}

func (c *latestCache) setLocked(k string, kv *mvccpb.KeyValue) {
	i, ok := c.find(k)
	var e *latestEntry
	if ok {
		e = &c.entries[c.slots[i]-1]
		c.valSize -= len(e.value)
	} else {
		if 2*(c.live+1) > len(c.slots) {
			c.growLocked()
			i, _ = c.find(k)
		}
		var idx int32
		if n := len(c.free); n > 0 {
			idx, c.free = c.free[n-1], c.free[:n-1]
		} else {
			c.entries = append(c.entries, latestEntry{})
			idx = int32(len(c.entries) - 1)
		}
		c.slots[i] = idx + 1
		e = &c.entries[idx]
		*e = latestEntry{key: k, live: true}
		c.live++
		c.metaSize += metaCost(k)
	}
	e.meta, e.value = metaOf(kv), nil
	if kv != nil && len(kv.Value)+metaCost(k) <= c.budget/16 {
		e.value = kv.Value
		if e.value == nil {
			e.value = []byte{}
		}
		c.valSize += len(e.value)
	}
}

// growLocked doubles the index.
func (c *latestCache) growLocked() {
	c.slots = make([]int32, 2*len(c.slots))
	for idx := range c.entries {
		if c.entries[idx].live {
			i, _ := c.find(c.entries[idx].key)
			c.slots[i] = int32(idx) + 1
		}
	}
}

// dropValueLocked forgets the value of the next entry from the value hand
// that has one. valSize > 0, so one has.
func (c *latestCache) dropValueLocked() {
	for {
		if c.valHand >= len(c.entries) {
			c.valHand = 0
		}
		e := &c.entries[c.valHand]
		c.valHand++
		if e.live && e.value != nil {
			c.valSize -= len(e.value)
			e.value = nil
			return
		}
	}
}

// evictLocked forgets the next live entry from the eviction hand. There is
// one: metaSize > 0.
func (c *latestCache) evictLocked() {
	for {
		if c.metaHand >= len(c.entries) {
			c.metaHand = 0
		}
		idx := c.metaHand
		c.metaHand++
		if c.entries[idx].live {
			c.removeLocked(idx)
			return
		}
	}
}

// removeLocked deletes entry idx from the index (backward shift: later
// entries of its probe run move up, so no slot is left marked deleted) and
// frees it.
func (c *latestCache) removeLocked(idx int) {
	e := &c.entries[idx]
	i, _ := c.find(e.key)
	mask := len(c.slots) - 1
	for j := (i + 1) & mask; c.slots[j] != 0; j = (j + 1) & mask {
		home := int(maphash.String(c.seed, c.entries[c.slots[j]-1].key)) & mask
		// Move j's entry into the hole at i unless its home lies
		// cyclically in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			c.slots[i] = c.slots[j]
			i = j
		}
	}
	c.slots[i] = 0
	c.metaSize -= metaCost(e.key)
	c.valSize -= len(e.value)
	*e = latestEntry{}
	c.free = append(c.free, int32(idx))
	c.live--
}
