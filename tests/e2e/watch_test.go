package e2e

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/tests/framework"
)

// recvWatch waits for the next response on wch.
func recvWatch(t *testing.T, ctx context.Context, wch clientv3.WatchChan, what string) clientv3.WatchResponse {
	t.Helper()
	select {
	case resp, ok := <-wch:
		if !ok {
			t.Fatalf("%s: watch channel closed", what)
		}
		return resp
	case <-ctx.Done():
		t.Fatalf("%s: no watch response: %v", what, ctx.Err())
	}
	panic("unreachable")
}

// recvEvents collects events from wch until it has n.
func recvEvents(t *testing.T, ctx context.Context, wch clientv3.WatchChan, n int, what string) []*clientv3.Event {
	t.Helper()
	var evs []*clientv3.Event
	for len(evs) < n {
		resp := recvWatch(t, ctx, wch, what)
		if err := resp.Err(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		evs = append(evs, resp.Events...)
	}
	if len(evs) != n {
		t.Fatalf("%s: %d events, want %d", what, len(evs), n)
	}
	return evs
}

func TestWatchWithOfficialClient(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 1, Extra: []string{"--watch-progress-notify-interval=300ms"}})
	cli := c.Client()
	ctx := framework.Context(t, 60*time.Second)

	first, err := cli.Put(ctx, "hist", "0")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 4; i++ {
		if _, err := cli.Put(ctx, "hist", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}

	// A prefix watch from now sees only later changes under the prefix.
	wctx, wcancel := context.WithCancel(ctx)
	prefix := cli.Watch(wctx, "w/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if resp := recvWatch(t, ctx, prefix, "created"); !resp.Created {
		t.Fatalf("first response is not the created one: %+v", resp)
	}
	for _, k := range []string{"w/1", "other", "w/2"} {
		if _, err := cli.Put(ctx, k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	evs := recvEvents(t, ctx, prefix, 2, "prefix watch")
	if string(evs[0].Kv.Key) != "w/1" || string(evs[1].Kv.Key) != "w/2" || evs[1].Kv.ModRevision != evs[0].Kv.ModRevision+2 {
		t.Fatalf("prefix watch events %v", evs)
	}

	// From a past revision, with previous values.
	past := cli.Watch(ctx, "hist", clientv3.WithRev(first.Header.Revision), clientv3.WithPrevKV())
	evs = recvEvents(t, ctx, past, 4, "watch from the past")
	for i, ev := range evs {
		if string(ev.Kv.Value) != fmt.Sprint(i) || ev.Kv.ModRevision != first.Header.Revision+int64(i) {
			t.Fatalf("past event %d: %v", i, ev)
		}
		if (i == 0) != (ev.PrevKv == nil) || (i > 0 && string(ev.PrevKv.Value) != fmt.Sprint(i-1)) {
			t.Fatalf("past event %d prev_kv: %v", i, ev.PrevKv)
		}
	}

	// Filters: NOPUT sees only the delete.
	noput := cli.Watch(ctx, "f", clientv3.WithFilterPut())
	if _, err := cli.Put(ctx, "f", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "f"); err != nil {
		t.Fatal(err)
	}
	if evs := recvEvents(t, ctx, noput, 1, "filter put"); evs[0].Type != mvccpb.DELETE {
		t.Fatalf("filtered watch got %v", evs[0])
	}

	// Cancel: the channel closes.
	wcancel()
	for range prefix {
	}
	checkProgress(t, ctx, cli)
	checkCompactedWatch(t, ctx, cli)
}

// checkProgress covers periodic progress notifications and
// RequestProgress.
func checkProgress(t *testing.T, ctx context.Context, cli *clientv3.Client) {
	t.Helper()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	quiet := cli.Watch(pctx, "quiet", clientv3.WithProgressNotify())
	put, err := cli.Put(ctx, "noise", "1")
	if err != nil {
		t.Fatal(err)
	}
	for {
		resp := recvWatch(t, ctx, quiet, "periodic progress")
		if len(resp.Events) > 0 {
			t.Fatalf("events on a quiet key: %v", resp.Events)
		}
		if resp.IsProgressNotify() && resp.Header.Revision >= put.Header.Revision {
			break
		}
	}
	put, err = cli.Put(ctx, "noise", "2")
	if err != nil {
		t.Fatal(err)
	}
	// The hub may not have seen the put yet; ask until the reply covers it.
	for {
		if err := cli.RequestProgress(pctx); err != nil {
			t.Fatal(err)
		}
		resp := recvWatch(t, ctx, quiet, "requested progress")
		if resp.IsProgressNotify() && resp.Header.Revision >= put.Header.Revision {
			return
		}
	}
}

// checkCompactedWatch watches from a compacted revision.
func checkCompactedWatch(t *testing.T, ctx context.Context, cli *clientv3.Client) {
	t.Helper()
	old, err := cli.Put(ctx, "c", "1")
	if err != nil {
		t.Fatal(err)
	}
	cur, err := cli.Put(ctx, "c", "2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, cur.Header.Revision); err != nil {
		t.Fatal(err)
	}
	wch := cli.Watch(ctx, "c", clientv3.WithRev(old.Header.Revision))
	resp := recvWatch(t, ctx, wch, "compacted watch")
	if resp.CompactRevision != cur.Header.Revision || !errors.Is(resp.Err(), rpctypes.ErrCompacted) || !resp.Canceled {
		t.Fatalf("compacted watch: compact revision %d (want %d), err %v, canceled %v",
			resp.CompactRevision, cur.Header.Revision, resp.Err(), resp.Canceled)
	}
	if _, ok := <-wch; ok {
		t.Fatal("compacted watch channel still open")
	}
}

// TestWatchFragmentsLargeResponses reads a catch-up of ~2.7 MB through the
// raw Watch stream: with fragment=true it arrives in fragments under the
// 2 MiB send limit (1.5 MiB + gRPC overhead), the last one unmarked.
func TestWatchFragmentsLargeResponses(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 1})
	cli := c.Client()
	ctx := framework.Context(t, 60*time.Second)
	var start int64
	for i := 0; i < 3; i++ {
		p, err := cli.Put(ctx, fmt.Sprintf("big/%d", i), strings.Repeat("x", 900*1024))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			start = p.Header.Revision
		}
	}
	stream, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.CloseSend()
	err = stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
		Key: []byte("big/"), RangeEnd: []byte("big0"), StartRevision: start, Fragment: true,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || !r.Created {
		t.Fatalf("created: %v %v", r, err)
	}
	var parts, events int
	for {
		r, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		parts++
		events += len(r.Events)
		if !r.Fragment {
			break
		}
	}
	if parts < 2 || events != 3 {
		t.Fatalf("%d responses with %d events, want several fragments with 3", parts, events)
	}
}

// leaderEndpoint returns the client URL of the current leader: from
// Maintenance.Status, or, where that is not served, from the members' logs
// (the newest term's "elected leader") matched to the member IDs in
// response headers.
func leaderEndpoint(t *testing.T, ctx context.Context, c *framework.Cluster, cli *clientv3.Client) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, ep := range c.Endpoints() {
			if st, err := cli.Status(ctx, ep); err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
				return ep
			}
		}
		if ep := leaderFromLogs(t, ctx, c); ep != "" {
			return ep
		}
		time.Sleep(50 * time.Millisecond) // poll: an election may be under way
	}
	t.Fatal("no leader found")
	return ""
}

var electedRE = regexp.MustCompile(`elected leader ([0-9a-f]+) at term (\d+)`)

func leaderFromLogs(t *testing.T, ctx context.Context, c *framework.Cluster) string {
	var leader string
	var term int
	for _, m := range c.Members {
		for _, g := range electedRE.FindAllStringSubmatch(m.Logs(), -1) {
			if n, _ := strconv.Atoi(g[2]); n >= term {
				leader, term = g[1], n
			}
		}
	}
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		resp, err := c.Client(m.ClientURL).Get(ctx, "leader-probe", clientv3.WithSerializable())
		if err == nil && fmt.Sprintf("%x", resp.Header.MemberId) == leader {
			return m.ClientURL
		}
	}
	return ""
}

// TestWatchResumesWhenLeaderKilled watches through the leader while a
// writer keeps writing through the others, kills the leader, and checks
// that the client, reconnected to another member, saw every revision once.
func TestWatchResumesWhenLeaderKilled(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 3})
	ctx := framework.Context(t, 90*time.Second)
	all := c.Client()
	leader := leaderEndpoint(t, ctx, c, all)
	var others []string
	var victim *framework.Member
	for _, m := range c.Members {
		if m.ClientURL == leader {
			victim = m
		} else {
			others = append(others, m.ClientURL)
		}
	}
	watcher := c.Client(leader)
	wch := watcher.Watch(ctx, "r/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	created := recvWatch(t, ctx, wch, "created")
	if !created.Created || created.Header.MemberId == 0 {
		t.Fatalf("created response %+v", created)
	}
	watcher.SetEndpoints(append([]string{leader}, others...)...)
	writer := c.Client(others...)

	const n = 120
	var wg sync.WaitGroup
	werr := make(chan error, 1)
	killAt := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < n; i++ {
			if i == n/3 {
				close(killAt)
			}
			for {
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := writer.Put(pctx, fmt.Sprintf("r/%d", i), fmt.Sprint(i))
				cancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					werr <- err
					return
				}
			}
		}
	}()
	<-killAt
	c.Kill(victim)
	wg.Wait()
	select {
	case err := <-werr:
		t.Fatalf("writer: %v", err)
	default:
	}
	final, err := writer.Get(ctx, "r/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	var revs []int64
	for len(revs) == 0 || revs[len(revs)-1] < final.Header.Revision {
		resp := recvWatch(t, ctx, wch, "resumed watch")
		if err := resp.Err(); err != nil {
			t.Fatalf("watch error after the leader died: %v", err)
		}
		for _, ev := range resp.Events {
			revs = append(revs, ev.Kv.ModRevision)
		}
	}
	// Only the writer writes, one revision per put: the watcher must have
	// seen every revision from the first put on, once, in order.
	if revs[0] != created.Header.Revision+1 {
		t.Fatalf("first event at %d, want %d", revs[0], created.Header.Revision+1)
	}
	for i := 1; i < len(revs); i++ {
		if revs[i] != revs[i-1]+1 {
			t.Fatalf("revision %d followed by %d: gap or duplicate", revs[i-1], revs[i])
		}
	}
	if final.Count != n || int64(len(revs)) < n {
		t.Fatalf("%d keys, %d events for %d puts", final.Count, len(revs), n)
	}
}

// With a latest-version cache too small for any value, puts carry their
// previous versions' metadata only until a watcher wants previous values:
// then a prev_kv watcher from now, and one that starts while puts go on,
// each get every previous value, as does a put asking for prev_kv.
func TestPrevKVWithMetadataOnlyCache(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 1, Extra: []string{"--latest-cache-bytes=1500"}})
	cli := c.Client()
	ctx := framework.Context(t, 60*time.Second)
	for i := range 3 {
		if _, err := cli.Put(ctx, fmt.Sprintf("p%d", i), "0"); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := cli.Put(ctx, "p0", "1", clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if resp.PrevKv == nil || string(resp.PrevKv.Value) != "0" || resp.PrevKv.Version != 1 {
		t.Fatalf("put with prev_kv: previous %v, want value 0 version 1", resp.PrevKv)
	}

	// Puts run while two watchers start, the second one during them.
	first := cli.Watch(ctx, "p", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithCreatedNotify())
	if r := recvWatch(t, ctx, first, "created"); !r.Created {
		t.Fatalf("first response is not the created one: %+v", r)
	}
	const puts = 300
	done := make(chan error, 1)
	go func() {
		for i := range puts {
			if _, err := cli.Put(ctx, fmt.Sprintf("p%d", i%3), fmt.Sprint(i+2)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	time.Sleep(20 * time.Millisecond)
	second := cli.Watch(ctx, "p", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	check := func(name string, evs []*clientv3.Event) {
		t.Helper()
		// Each key's events carry the value of its previous event.
		last := map[string]string{"p0": "1", "p1": "0", "p2": "0"}
		for _, ev := range evs {
			k := string(ev.Kv.Key)
			if ev.PrevKv == nil || string(ev.PrevKv.Value) != last[k] || ev.PrevKv.Version != ev.Kv.Version-1 {
				t.Fatalf("%s: event %v at %d: previous %v, want value %q", name, k, ev.Kv.ModRevision, ev.PrevKv, last[k])
			}
			last[k] = string(ev.Kv.Value)
		}
	}
	check("watch from before the puts", recvEvents(t, ctx, first, puts, "first watcher"))
	// The second watcher started at some put; check what it got to the end.
	var evs []*clientv3.Event
	for len(evs) == 0 || string(evs[len(evs)-1].Kv.Value) != fmt.Sprint(puts+1) {
		r := recvWatch(t, ctx, second, "second watcher")
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, r.Events...)
	}
	for _, ev := range evs {
		if ev.PrevKv == nil {
			t.Fatalf("second watcher: event at %d has no previous version", ev.Kv.ModRevision)
		}
		if want := ev.Kv.Value; string(ev.PrevKv.Value) == "" || string(want) == "" {
			t.Fatalf("second watcher: event at %d: value %q, previous %q", ev.Kv.ModRevision, want, ev.PrevKv.Value)
		}
		n, _ := strconv.Atoi(string(ev.Kv.Value))
		p, _ := strconv.Atoi(string(ev.PrevKv.Value))
		if p != n-3 && !(n < 5 && p <= 1) {
			t.Fatalf("second watcher: event %s=%d has previous value %d, want %d", ev.Kv.Key, n, p, n-3)
		}
	}
}
