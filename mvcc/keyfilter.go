package mvcc

import (
	"hash/maphash"
	"sync/atomic"
)

// keyFilter is a blocked Bloom filter over user keys: mayContain is false
// only for a key never added. The store keeps one holding every key that has
// a version in the backend (tombstoned keys too, until a rebuild after their
// compaction), so a put of a new key needs no seek for its previous version
// and a single-key range of a missing key needs no Pebble read: both were
// memtable and table seeks in the profiles, the costliest part of the apply
// and range paths.
//
// Each key sets filterProbes bits inside one 512-bit block (one cache line),
// so a lookup touches one line. At filterBitsPerKey bits per key of capacity
// the false positive rate is about 1-2%; past capacity it rises, and the
// store rebuilds a larger filter.
//
// add may run concurrently with mayContain and with other adds: bits are set
// with atomic ORs and never cleared.
type keyFilter struct {
	seed     maphash.Seed
	blocks   []filterBlock
	capacity int64        // keys the filter was sized for
	count    atomic.Int64 // adds that set a new bit: distinct keys, roughly
}

type filterBlock [8]atomic.Uint64

const (
	filterBitsPerKey = 10
	filterProbes     = 7
)

// minFilterKeys is the smallest capacity: 256 Ki keys, 320 KiB. A variable
// so tests can make every store rebuild its filter often.
var minFilterKeys int64 = 1 << 18

func newKeyFilter(capacity int64) *keyFilter {
	capacity = max(capacity, minFilterKeys)
	n := (capacity*filterBitsPerKey + 511) / 512
	return &keyFilter{seed: maphash.MakeSeed(), blocks: make([]filterBlock, n), capacity: capacity}
}

// probe returns key's block and the hash whose 9-bit slices pick the bits.
func (f *keyFilter) probe(key []byte) (*filterBlock, uint64) {
	h := maphash.Bytes(f.seed, key)
	b := &f.blocks[(h>>32)%uint64(len(f.blocks))]
	// The bit positions come from a second mix so they are independent of
	// the block choice.
	return b, h*0x9E3779B97F4A7C15 ^ h>>29
}

// add records key and reports whether it set a bit that was clear (the key
// was certainly not in the filter).
func (f *keyFilter) add(key []byte) bool {
	b, h := f.probe(key)
	fresh := false
	for i := range filterProbes {
		bit := (h >> (9 * i)) & 511
		mask := uint64(1) << (bit & 63)
		if b[bit>>6].Or(mask)&mask == 0 {
			fresh = true
		}
	}
	if fresh {
		f.count.Add(1)
	}
	return fresh
}

// mayContain is false only if key was never added.
func (f *keyFilter) mayContain(key []byte) bool {
	b, h := f.probe(key)
	for i := range filterProbes {
		bit := (h >> (9 * i)) & 511
		if b[bit>>6].Load()&(uint64(1)<<(bit&63)) == 0 {
			return false
		}
	}
	return true
}

// full reports whether more distinct keys were added than it was sized for.
func (f *keyFilter) full() bool { return f.count.Load() > f.capacity }
