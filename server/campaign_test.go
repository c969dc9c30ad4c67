package server_test

import (
	"context"
	"testing"
)

// A member that is the only voter elects itself at once, on a fresh start
// and on a restart, instead of waiting out its election timeout: with a
// 30 s timeout, waitLeader (20 s) would fail otherwise.
func TestSingleVoterCampaignsWithoutWaitingForTheTimeout(t *testing.T) {
	c := newCluster(t, 1, "--heartbeat-interval=100", "--election-timeout=30000")
	c.start()
	m := c.members[0]
	if err := put(context.Background(), m, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		m.srv.Stop()
		c.restart(m)
		c.waitLeader()
		if v, ok := get(t, m, "k", false); !ok || v != "v1" {
			t.Fatalf("restart %d: k = %q, %v", i, v, ok)
		}
		if err := put(context.Background(), m, "k", "v1"); err != nil {
			t.Fatalf("restart %d: put: %v", i, err)
		}
	}
}
