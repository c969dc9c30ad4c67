package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// Large entries bound the in-memory raft log by bytes: a snapshot (and the
// log trim that follows it) comes once 16 MiB of entries were applied, long
// before --snapshot-count entries.
func TestLargeEntriesTriggerSnapshotBeforeSnapshotCount(t *testing.T) {
	c := newCluster(t, 1, "--snapshot-count=100000")
	c.start()
	m := c.members[0]
	val := strings.Repeat("x", 1<<20)
	for i := range 20 {
		if err := put(context.Background(), m, fmt.Sprintf("big-%d", i), val); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if !strings.Contains(m.logs.String(), "snapshot taken") {
		t.Fatalf("no snapshot after 20 MiB of entries (snapshot count 100000); log tail:\n%s", tail(m.logs.String(), 20))
	}
}
