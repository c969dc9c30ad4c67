package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/mvcc"
	"github.com/cairn-kv/cairn/server"
)

// TestWatchSurvivesStateCopyInstall opens a watch on a member that is far
// behind before it starts; the member then replaces its store with a state
// copy from the leader. The watch must resume on the new store from its
// next revision: every revision after the created one, once, in order.
func TestWatchSurvivesStateCopyInstall(t *testing.T) {
	c := newCluster(t, 3, "--snapshot-count=20")
	c.start()
	leader := c.waitLeader()
	lagger := c.follower(leader)
	lagger.srv.Stop()
	for i := 0; i < 150; i++ {
		if err := put(context.Background(), leader, fmt.Sprintf("w/%03d", i), "x"); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	log := slog.New(slog.NewTextHandler(lagger.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := server.New(context.Background(), c.config(lagger, c.initialCluster(c.members), "new"), log)
	if err != nil {
		t.Fatal(err)
	}
	ws := srv.NewWatchStream()
	defer ws.Close()
	if _, err := ws.Watch(0, []byte("w/"), []byte("w0"), 0, mvcc.WatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(server.ClientAPI{}); err != nil {
		srv.Close()
		t.Fatal(err)
	}
	c.mu.Lock()
	lagger.srv = srv
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	created, err := ws.Next(ctx)
	if err != nil || !created.Created {
		t.Fatalf("created: %+v %v", created, err)
	}
	waitUntil(t, 30*time.Second, "the lagging member to install a state copy", func() bool {
		return srv.SnapshotsInstalled() > 0
	})
	if err := put(context.Background(), leader, "w/last", "x"); err != nil {
		t.Fatal(err)
	}
	final := leader.srv.Rev()
	want := created.Revision + 1
	for want <= final {
		r, err := ws.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for revision %d: %v", want, err)
		}
		if r.Canceled {
			t.Fatalf("watch canceled: %+v", r)
		}
		for _, ev := range r.Events {
			if ev.Kv.ModRevision != want {
				t.Fatalf("event at revision %d, want %d (gap or duplicate)", ev.Kv.ModRevision, want)
			}
			want++
		}
	}
	if created.Revision >= final-100 {
		t.Fatalf("the watch started at %d, not far enough behind %d to need the state copy", created.Revision, final)
	}
}
