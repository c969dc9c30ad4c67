// Package wait is the registry that connects a proposer waiting for its
// request to be applied with the apply goroutine that produces the result:
// Register(id) returns a channel, Trigger(id, result) delivers to it once.
//
// It is sharded by ID to keep lock contention low under many concurrent
// proposals. Every method is safe for concurrent use.
package wait

import "sync"

const shards = 64

// Registry maps request IDs to waiting channels.
type Registry struct {
	shards [shards]shard
}

type shard struct {
	mu sync.Mutex
	m  map[uint64]waiter // guarded by mu
}

type waiter struct {
	ch  chan any
	val any // what the waiter registered with its ID
}

// New returns an empty registry.
func New() *Registry {
	r := &Registry{}
	for i := range r.shards {
		r.shards[i].m = make(map[uint64]waiter)
	}
	return r
}

// Register returns the channel that will receive id's result. Registering
// an ID twice returns nil for the second call.
func (r *Registry) Register(id uint64) <-chan any { return r.RegisterValue(id, nil) }

// RegisterValue is Register that also keeps val with id until it is
// triggered or canceled (see Value).
func (r *Registry) RegisterValue(id uint64, val any) <-chan any {
	s := &r.shards[id%shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.m[id]; dup {
		return nil
	}
	ch := make(chan any, 1)
	s.m[id] = waiter{ch: ch, val: val}
	return ch
}

// Value returns what id was registered with, if someone waits for id.
func (r *Registry) Value(id uint64) (any, bool) {
	s := &r.shards[id%shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.m[id]
	return w.val, ok
}

// Trigger delivers x to id's waiter, if any, and forgets id.
func (r *Registry) Trigger(id uint64, x any) {
	s := &r.shards[id%shards]
	s.mu.Lock()
	w, ok := s.m[id]
	delete(s.m, id)
	s.mu.Unlock()
	if ok {
		w.ch <- x
	}
}

// Cancel forgets id without delivering anything (its waiter gave up).
func (r *Registry) Cancel(id uint64) {
	s := &r.shards[id%shards]
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

// IsRegistered reports whether someone waits for id.
func (r *Registry) IsRegistered(id uint64) bool {
	s := &r.shards[id%shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[id]
	return ok
}
