package mvcc

import (
	"sync"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// DefaultLatestCacheBytes is the default budget of the latest-version cache
// (Options.LatestCacheBytes).
const DefaultLatestCacheBytes = 16 << 20

// latestEntryOverhead approximates the memory of one cached version beyond
// its key and value bytes (map slot, entry, KeyValue struct).
const latestEntryOverhead = 240

// latestCache remembers the newest version of recently written keys, so a
// put finds its previous version (create revision, version, lease, and the
// value for prev_kv and watch events) without seeking Pebble's memtable and
// tables, the largest cost of the apply path under random-key writes.
//
// It is a write-through cache filled only by committed writes: a Writer
// collects its changes in an overlay and merges them in End, after its batch
// committed, so an entry always equals what a seek of the committed state
// returns. A deleted key is cached as absent (nil). Background compaction
// never removes a key's newest version unless that is a tombstone, and then
// the key is absent either way, so compaction leaves entries true. A
// received state copy gets a new Store and so an empty cache. Entries are
// shared read-only values: nothing mutates a KeyValue after a writer made
// it. Over budget, random entries are evicted.
type latestCache struct {
	mu      sync.Mutex
	budget  int
	size    int                         // guarded by mu
	entries map[string]*mvccpb.KeyValue // guarded by mu; nil value: known absent
}

func newLatestCache(budget int) *latestCache {
	return &latestCache{budget: budget, entries: map[string]*mvccpb.KeyValue{}}
}

func entryCost(key string, kv *mvccpb.KeyValue) int {
	n := len(key) + latestEntryOverhead
	if kv != nil {
		n += len(kv.Value)
	}
	return n
}

// get returns the cached newest version of key (nil: absent) and whether the
// cache knows the key.
func (c *latestCache) get(key []byte) (*mvccpb.KeyValue, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	kv, ok := c.entries[string(key)]
	c.mu.Unlock()
	return kv, ok
}

// merge records a committed writer's changes.
func (c *latestCache) merge(changes map[string]*mvccpb.KeyValue) {
	if c == nil || len(changes) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, kv := range changes {
		if old, ok := c.entries[k]; ok {
			c.size -= entryCost(k, old)
		}
		cost := entryCost(k, kv)
		if cost > c.budget/16 {
			delete(c.entries, k) // too large to be worth a slot
			continue
		}
		c.entries[k] = kv
		c.size += cost
	}
	if c.size <= c.budget {
		return
	}
	for k, kv := range c.entries {
		c.size -= entryCost(k, kv)
		delete(c.entries, k)
		if c.size <= c.budget {
			break
		}
	}
}
