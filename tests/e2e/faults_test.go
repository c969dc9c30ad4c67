package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/tests/framework"
)

// ackedWriter puts keys through a client of every member until stopped and
// remembers which puts were acknowledged.
type ackedWriter struct {
	mu    sync.Mutex
	acked map[string]string
	stop  chan struct{}
	done  chan struct{}
}

func startAckedWriter(cli *clientv3.Client, prefix string, max int) *ackedWriter {
	w := &ackedWriter{acked: map[string]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; i < max; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			k, v := fmt.Sprintf("%s/%06d", prefix, i), fmt.Sprint(i)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_, err := cli.Put(ctx, k, v)
			cancel()
			if err == nil {
				w.mu.Lock()
				w.acked[k] = v
				w.mu.Unlock()
			}
		}
	}()
	return w
}

func (w *ackedWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func (w *ackedWriter) finish() map[string]string {
	close(w.stop)
	<-w.done
	return w.acked
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkAllAcked reads every acknowledged key through ep (serializable
// reads are local: they show what that member itself holds).
func checkAllAcked(t *testing.T, c *framework.Cluster, ep string, acked map[string]string, serializable bool) {
	t.Helper()
	cli := c.Client(ep)
	ctx := framework.Context(t, 60*time.Second)
	opts := []clientv3.OpOption{clientv3.WithPrefix()}
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := cli.Get(ctx, "w/", opts...)
	if err != nil {
		t.Fatalf("read via %s: %v", ep, err)
	}
	have := map[string]string{}
	for _, kv := range resp.Kvs {
		have[string(kv.Key)] = string(kv.Value)
	}
	for k, v := range acked {
		if have[k] != v {
			t.Fatalf("%s: acknowledged write %s=%s lost (%d acked, %d present)", ep, k, v, len(acked), len(have))
		}
	}
}

func TestKill9LeaderUnderWritesLosesNothing(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 3})
	cli := c.Client()
	w := startAckedWriter(cli, "w", 1_000_000)
	waitFor(t, 30*time.Second, "writes acknowledged", func() bool { return w.count() >= 100 })
	leader := c.Leader()
	c.Kill(leader)
	before := w.count()
	waitFor(t, 30*time.Second, "writes acknowledged under a new leader", func() bool { return w.count() >= before+100 })
	if l := c.Leader(); l == leader {
		t.Fatal("the killed member still leads")
	}
	c.StartMember(leader, "new")
	c.WaitHealthy()
	mid := w.count()
	waitFor(t, 30*time.Second, "writes with the old leader back", func() bool { return w.count() >= mid+100 })
	acked := w.finish()
	for _, ep := range c.Endpoints() {
		checkAllAcked(t, c, ep, acked, false)
	}
	// The restarted member holds everything itself once it caught up.
	waitFor(t, 30*time.Second, "the restarted member to catch up", func() bool {
		st, err := c.Client(leader.ClientURL).Status(framework.Context(t, 5*time.Second), leader.ClientURL)
		return err == nil && st.RaftAppliedIndex >= st.RaftIndex
	})
	checkAllAcked(t, c, leader.ClientURL, acked, true)
}

func TestFollowerFarBehindCatchesUpFromSnapshot(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 3, Extra: []string{"--snapshot-count=100"}})
	leader := c.Leader()
	lagger := c.Follower(leader)
	c.Kill(lagger)
	cli := c.Client(leader.ClientURL)
	ctx := framework.Context(t, 60*time.Second)
	acked := map[string]string{}
	for i := 0; i < 600; i++ {
		k := fmt.Sprintf("w/%04d", i)
		if _, err := cli.Put(ctx, k, "x"); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		acked[k] = "x"
	}
	c.StartMember(lagger, "new")
	c.WaitHealthy()
	waitFor(t, 30*time.Second, "a state copy installed on the lagging member", func() bool {
		return containsLine(lagger.Logs(), "installing state received from the leader")
	})
	checkAllAcked(t, c, lagger.ClientURL, acked, true)
}

func containsLine(logs, s string) bool {
	return strings.Contains(logs, s)
}
