package membership

import "maps"

// Restore replaces c's members and removed IDs with other's, keeping c's
// identity so that readers holding c see the new list. It is used when a
// member installs a state copy received from the leader. The cluster IDs
// must match.
func (c *Cluster) Restore(other *Cluster) error {
	if other.id != c.id {
		return ErrCorruptClusterData
	}
	other.mu.RLock()
	members := make(map[uint64]*Member, len(other.members))
	for id, m := range other.members {
		cp := m.clone()
		members[id] = &cp
	}
	removed := maps.Clone(other.removed)
	other.mu.RUnlock()
	c.mu.Lock()
	c.members, c.removed = members, removed
	c.mu.Unlock()
	return nil
}
