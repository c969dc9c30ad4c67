package membership

import (
	"fmt"
	"maps"
	"slices"
	"sync"
)

// Cluster is the member list of one cluster. See the package doc for the
// rules it enforces and its concurrency contract.
type Cluster struct {
	id uint64 // immutable after construction

	mu      sync.RWMutex
	members map[uint64]*Member // guarded by mu; values replaced, never mutated in place
	removed map[uint64]bool    // guarded by mu; only ever grows
}

// NewInitial builds the cluster described by an initial-cluster flag: every
// member a voter with ID MemberID(token, urls), the cluster ID derived from
// the token and those IDs.
func NewInitial(token string, initial []NamedURLs) (*Cluster, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: empty cluster token", ErrBadInitialCluster)
	}
	if len(initial) == 0 {
		return nil, fmt.Errorf("%w: no members", ErrBadInitialCluster)
	}
	c := &Cluster{members: map[uint64]*Member{}, removed: map[uint64]bool{}}
	ids := make([]uint64, 0, len(initial))
	for _, nu := range initial {
		m := Member{ID: MemberID(token, nu.URLs), Name: nu.Name, PeerURLs: slices.Clone(nu.URLs)}
		if nu.Name == "" {
			return nil, fmt.Errorf("%w: member with URLs %v has no name", ErrBadInitialCluster, nu.URLs)
		}
		if err := c.validateAddLocked(m, false); err != nil {
			return nil, fmt.Errorf("%w: member %q: %w", ErrBadInitialCluster, nu.Name, err)
		}
		c.members[m.ID] = &m
		ids = append(ids, m.ID)
	}
	c.id = ClusterID(token, ids)
	return c, nil
}

// NewFromMembers builds a cluster from a known ID and member list, for
// example one fetched from the peers of an existing cluster by a joining
// member. The list must satisfy the same rules as a decoded one.
func NewFromMembers(clusterID uint64, members []Member, removed []uint64) (*Cluster, error) {
	return fromParts(clusterID, members, removed)
}

// ID returns the cluster ID.
func (c *Cluster) ID() uint64 { return c.id }

// Members returns copies of all members sorted by ID.
func (c *Cluster) Members() []Member {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.membersLocked()
}

func (c *Cluster) membersLocked() []Member {
	out := make([]Member, 0, len(c.members))
	for _, id := range slices.Sorted(maps.Keys(c.members)) {
		out = append(out, c.members[id].clone())
	}
	return out
}

// Member returns a copy of the member with the given ID.
func (c *Cluster) Member(id uint64) (Member, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	m, ok := c.members[id]
	if !ok {
		return Member{}, false
	}
	return m.clone(), true
}

// IsLearner reports whether id is a member and a learner. It copies
// nothing, for a check on every request.
func (c *Cluster) IsLearner(id uint64) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	m, ok := c.members[id]
	return ok && m.IsLearner
}

// MemberByName returns a copy of the member with the given (non-empty) name.
func (c *Cluster) MemberByName(name string) (Member, bool) {
	if name == "" {
		return Member{}, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, m := range c.members {
		if m.Name == name {
			return m.clone(), true
		}
	}
	return Member{}, false
}

// IsRemoved reports whether id belonged to a member that has been removed.
func (c *Cluster) IsRemoved(id uint64) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.removed[id]
}

// RemovedIDs returns the removed member IDs, sorted.
func (c *Cluster) RemovedIDs() []uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Sorted(maps.Keys(c.removed))
}

// VoterIDs returns the IDs of the voting members, sorted.
func (c *Cluster) VoterIDs() []uint64 { return c.idsWhere(false) }

// LearnerIDs returns the IDs of the learners, sorted.
func (c *Cluster) LearnerIDs() []uint64 { return c.idsWhere(true) }

func (c *Cluster) idsWhere(learner bool) []uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []uint64
	for id, m := range c.members {
		if m.IsLearner == learner {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// Validate reports whether ch could be applied now, without applying it.
func (c *Cluster) Validate(ch Change) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.validateLocked(ch)
}

// Apply validates ch and, if valid, applies it. On error nothing changes.
// Apply is called by the apply goroutine only, in log order.
func (c *Cluster) Apply(ch Change) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.validateLocked(ch); err != nil {
		return err
	}
	id := ch.Member.ID
	switch ch.Type {
	case ChangeAddVoter, ChangeAddLearner:
		m := ch.Member.clone()
		m.IsLearner = ch.Type == ChangeAddLearner
		c.members[id] = &m
	case ChangePromoteLearner:
		m := c.members[id].clone()
		m.IsLearner = false
		c.members[id] = &m
	case ChangeRemove:
		delete(c.members, id)
		c.removed[id] = true
	case ChangeUpdatePeerURLs:
		m := c.members[id].clone()
		m.PeerURLs = slices.Clone(ch.Member.PeerURLs)
		c.members[id] = &m
	case ChangePublish:
		m := c.members[id].clone()
		m.Name = ch.Member.Name
		m.ClientURLs = slices.Clone(ch.Member.ClientURLs)
		c.members[id] = &m
	}
	return nil
}

func (c *Cluster) validateLocked(ch Change) error {
	id := ch.Member.ID
	if id == 0 {
		return fmt.Errorf("%w: %s", ErrIDZero, ch.Type)
	}
	switch ch.Type {
	case ChangeAddVoter, ChangeAddLearner:
		return c.validateAddLocked(ch.Member, ch.Type == ChangeAddLearner)
	case ChangeUpdatePeerURLs:
		if err := c.existingLocked(id); err != nil {
			return err
		}
		return c.validatePeerURLsLocked(id, ch.Member.PeerURLs)
	case ChangePromoteLearner:
		if err := c.existingLocked(id); err != nil {
			return err
		}
		if !c.members[id].IsLearner {
			return fmt.Errorf("%w: %x", ErrMemberNotLearner, id)
		}
		return nil
	case ChangeRemove:
		if err := c.existingLocked(id); err != nil {
			return err
		}
		if !c.members[id].IsLearner && c.countLocked(false) == 1 {
			return fmt.Errorf("%w: %x", ErrLastVoter, id)
		}
		return nil
	case ChangePublish:
		if err := c.existingLocked(id); err != nil {
			return err
		}
		if err := validateURLs(ch.Member.ClientURLs); err != nil {
			return fmt.Errorf("member %x client URLs: %w", id, err)
		}
		return c.validateNameLocked(id, ch.Member.Name)
	default:
		return fmt.Errorf("%w: unknown change type %d", ErrBadChange, ch.Type)
	}
}

// existingLocked returns nil if id is a current member, else why not.
func (c *Cluster) existingLocked(id uint64) error {
	if c.removed[id] {
		return fmt.Errorf("%w: %x", ErrIDRemoved, id)
	}
	if _, ok := c.members[id]; !ok {
		return fmt.Errorf("%w: %x", ErrIDNotFound, id)
	}
	return nil
}

func (c *Cluster) validateAddLocked(m Member, learner bool) error {
	if m.ID == 0 {
		return ErrIDZero
	}
	if c.removed[m.ID] {
		return fmt.Errorf("%w: %x", ErrIDRemoved, m.ID)
	}
	if _, ok := c.members[m.ID]; ok {
		return fmt.Errorf("%w: %x", ErrIDExists, m.ID)
	}
	if learner && c.countLocked(true) >= MaxLearners {
		return fmt.Errorf("%w: at most %d", ErrTooManyLearners, MaxLearners)
	}
	if err := validateURLs(m.ClientURLs); err != nil {
		return fmt.Errorf("member %x client URLs: %w", m.ID, err)
	}
	if err := c.validateNameLocked(m.ID, m.Name); err != nil {
		return err
	}
	return c.validatePeerURLsLocked(m.ID, m.PeerURLs)
}

// validatePeerURLsLocked checks urls as the peer URLs of member id: non-empty,
// valid, and not used by any other member.
func (c *Cluster) validatePeerURLsLocked(id uint64, urls []string) error {
	if len(urls) == 0 {
		return fmt.Errorf("%w: %x", ErrNoPeerURLs, id)
	}
	if err := validateURLs(urls); err != nil {
		return fmt.Errorf("member %x peer URLs: %w", id, err)
	}
	for _, u := range urls {
		for oid, o := range c.members {
			if oid != id && slices.Contains(o.PeerURLs, u) {
				return fmt.Errorf("%w: %q is used by %x", ErrPeerURLExists, u, oid)
			}
		}
	}
	return nil
}

func (c *Cluster) validateNameLocked(id uint64, name string) error {
	if name == "" {
		return nil
	}
	for oid, o := range c.members {
		if oid != id && o.Name == name {
			return fmt.Errorf("%w: %q is used by %x", ErrNameExists, name, oid)
		}
	}
	return nil
}

func (c *Cluster) countLocked(learners bool) int {
	n := 0
	for _, m := range c.members {
		if m.IsLearner == learners {
			n++
		}
	}
	return n
}
