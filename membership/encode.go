package membership

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
)

// encodingVersion is the version of the Encode format.
const encodingVersion = 1

type encodedCluster struct {
	Version   int      `json:"version"`
	ClusterID uint64   `json:"clusterID"`
	Members   []Member `json:"members"`
	Removed   []uint64 `json:"removed"`
}

// Encode returns the deterministic encoding of the cluster (see the package
// doc): equal member lists give equal bytes.
func (c *Cluster) Encode() []byte {
	c.mu.RLock()
	e := encodedCluster{
		Version:   encodingVersion,
		ClusterID: c.id,
		Members:   c.membersLocked(),
		Removed:   slices.Sorted(maps.Keys(c.removed)),
	}
	c.mu.RUnlock()
	if e.Removed == nil {
		e.Removed = []uint64{}
	}
	b, err := json.Marshal(e)
	if err != nil {
		// Only strings, slices and integers: marshalling cannot fail.
		panic(fmt.Sprintf("membership: encode: %v", err))
	}
	return b
}

// Decode parses the output of Encode, checking every rule that Apply keeps.
func Decode(b []byte) (*Cluster, error) {
	var e encodedCluster
	if err := strictJSON(b, &e); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptClusterData, err)
	}
	if e.Version != encodingVersion {
		return nil, fmt.Errorf("%w: unsupported version %d", ErrCorruptClusterData, e.Version)
	}
	c, err := fromParts(e.ClusterID, e.Members, e.Removed)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptClusterData, err)
	}
	return c, nil
}

// fromParts builds a cluster from its parts, checking every invariant.
func fromParts(id uint64, members []Member, removed []uint64) (*Cluster, error) {
	if id == 0 {
		return nil, fmt.Errorf("cluster ID is zero")
	}
	c := &Cluster{id: id, members: map[uint64]*Member{}, removed: map[uint64]bool{}}
	for _, r := range removed {
		if r == 0 || c.removed[r] {
			return nil, fmt.Errorf("removed ID %x zero or listed twice", r)
		}
		c.removed[r] = true
	}
	voters := 0
	for _, m := range members {
		if err := c.validateAddLocked(m, m.IsLearner); err != nil {
			return nil, err
		}
		m = m.clone()
		c.members[m.ID] = &m
		if !m.IsLearner {
			voters++
		}
	}
	// An empty list is the state before the bootstrap configuration
	// changes are applied; a non-empty one needs a voter.
	if voters == 0 && (len(members) > 0 || len(removed) > 0) {
		return nil, fmt.Errorf("no voting member")
	}
	return c, nil
}
