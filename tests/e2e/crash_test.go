package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/internal/failpoint"
	"github.com/cairn-kv/cairn/tests/framework"
)

// TestCrashPoints kills a member at each crash point of package
// internal/failpoint (a binary built with -tags failpoints) under writes
// from the official client, restarts it, and checks that it starts, catches
// up, holds every acknowledged write, and hashes like the other members.
func TestCrashPoints(t *testing.T) {
	cases := []struct {
		point string
		hit   int // which hit of the point kills
		// provoke makes the victim reach the point once it runs with the
		// failpoint armed; it runs with the victim stopped.
		provoke func(t *testing.T, c *framework.Cluster, victim *framework.Member)
	}{
		{failpoint.WALBeforeSync, 30, restartArmed},
		{failpoint.WALAfterSync, 30, restartArmed},
		{failpoint.ApplyMidBatch, 20, restartArmed},
		{failpoint.SnapshotInstall, 1, restartBehindSnapshot},
		{failpoint.CompactMidChunk, 1, restartAndCompact},
	}
	for _, tc := range cases {
		t.Run(tc.point, func(t *testing.T) {
			c := framework.Start(t, framework.Options{Size: 3, Tags: "failpoints", Extra: []string{"--snapshot-count=200"}})
			victim := c.Members[2]
			var others []string
			for _, m := range c.Members[:2] {
				others = append(others, m.ClientURL)
			}
			w := startAckedWriter(c.Client(others...), "w", 1_000_000)
			waitFor(t, 30*time.Second, "writes acknowledged", func() bool { return w.count() >= 50 })
			c.Terminate(victim)
			victim.Env = []string{fmt.Sprintf("%s=%s@%d", failpoint.Env, tc.point, tc.hit)}
			tc.provoke(t, c, victim)
			if code := victim.WaitExit(t, 60*time.Second); code == 0 {
				t.Fatalf("victim exited cleanly instead of crashing at %s", tc.point)
			}
			if !containsLine(victim.Logs(), "failpoint: "+tc.point+" hit") {
				t.Fatalf("victim died but not at %s:\n%s", tc.point, victim.Logs())
			}
			victim.Env = nil
			c.StartMember(victim, "new")
			c.WaitHealthy()
			mid := w.count()
			waitFor(t, 30*time.Second, "writes after the restart", func() bool { return w.count() >= mid+50 })
			acked := w.finish()
			checkAllAcked(t, c, victim.ClientURL, acked, false)
			ctx := framework.Context(t, 30*time.Second)
			cli := c.Client(others...)
			resp, err := cli.Put(ctx, "crash/last", "x")
			if err != nil {
				t.Fatal(err)
			}
			checkAllAcked(t, c, victim.ClientURL, acked, true)
			checkHashesAgree(t, ctx, cli, c, resp.Header.Revision)
		})
	}
}

// restartArmed restarts the victim with the failpoint armed; the ongoing
// writes take it to the point.
func restartArmed(t *testing.T, c *framework.Cluster, victim *framework.Member) {
	c.StartMember(victim, "new")
}

// restartBehindSnapshot lets the others take snapshots past what the
// victim has, so that it must install a state copy when it comes back.
func restartBehindSnapshot(t *testing.T, c *framework.Cluster, victim *framework.Member) {
	cli := c.Client(c.Members[0].ClientURL)
	ctx := framework.Context(t, 60*time.Second)
	for i := 0; i < 500; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("snap/%04d", i), "x"); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	c.StartMember(victim, "new")
}

// restartAndCompact restarts the victim and compacts the history, which
// every member does in chunks.
func restartAndCompact(t *testing.T, c *framework.Cluster, victim *framework.Member) {
	c.StartMember(victim, "new")
	c.WaitHealthy()
	cli := c.Client(c.Members[0].ClientURL)
	ctx := framework.Context(t, 30*time.Second)
	resp, err := cli.Put(ctx, "compact/point", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
}
