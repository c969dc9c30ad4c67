package framework

import (
	"context"
	"time"
)

// Leader returns the running member that the running members agree leads,
// asking each through the Maintenance Status RPC; it fails the test if they
// do not agree within 20 s.
func (c *Cluster) Leader() *Member {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := c.leaderOnce(); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			c.t.Fatal("the running members did not agree on a leader within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Cluster) leaderOnce() *Member {
	var leader uint64
	byID := map[uint64]*Member{}
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		cli := c.Client(m.ClientURL)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := cli.Status(ctx, m.ClientURL)
		cancel()
		cli.Close()
		if err != nil || st.Leader == 0 || (leader != 0 && st.Leader != leader) {
			return nil
		}
		leader = st.Leader
		byID[st.Header.MemberId] = m
	}
	return byID[leader]
}

// Follower returns a member of c other than leader.
func (c *Cluster) Follower(leader *Member) *Member {
	c.t.Helper()
	for _, m := range c.Members {
		if m != leader {
			return m
		}
	}
	c.t.Fatal("the cluster has no member but its leader")
	return nil
}
