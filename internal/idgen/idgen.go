// Package idgen generates request IDs unique across the members of a
// cluster and across restarts of a member.
//
// An ID is, from the high bits down: the low 16 bits of the member ID, then
// 48 bits that start at the wall clock in milliseconds shifted left by 8 and
// increase by one per ID. Two members differ in the prefix; a restarted
// member starts from a later clock reading than any ID it made before, as
// long as it made fewer than 256 IDs per millisecond on average. The clock is
// read once, at construction: it only seeds uniqueness and decides nothing.
package idgen

import (
	"sync/atomic"
	"time"
)

const (
	suffixBits = 48
	suffixMask = 1<<suffixBits - 1
)

// Generator hands out IDs; it is safe for concurrent use.
type Generator struct {
	prefix uint64
	suffix atomic.Uint64
}

// New returns a generator for the member memberID, seeded from now.
func New(memberID uint64, now time.Time) *Generator {
	g := &Generator{prefix: (memberID & 0xffff) << suffixBits}
	g.suffix.Store((uint64(now.UnixMilli()) << 8) & suffixMask)
	return g
}

// Next returns the next ID.
func (g *Generator) Next() uint64 {
	return g.prefix | (g.suffix.Add(1) & suffixMask)
}
