package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3"

	"github.com/cairn-kv/cairn/server"
	"github.com/cairn-kv/cairn/server/config"
)

// member is one in-process member of a test cluster.
type member struct {
	name    string
	ip      string
	peer    string // peer URL
	client  string // client URL
	dataDir string
	srv     *server.Server
	logs    *syncBuffer
}

// syncBuffer collects a member's log lines for assertions.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type cluster struct {
	// mu guards members and each member's srv, which writer goroutines
	// read while the test restarts or adds members.
	mu      sync.Mutex
	t       *testing.T
	token   string
	members []*member
	extra   []string // extra flags for every member
}

// freePort finds a free TCP port on ip.
func freePort(t *testing.T, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func newMember(t *testing.T, name, ip string) *member {
	return &member{
		name:    name,
		ip:      ip,
		peer:    "http://" + ip + ":" + freePort(t, ip),
		client:  "http://" + ip + ":" + freePort(t, ip),
		dataDir: filepath.Join(t.TempDir(), name),
		logs:    &syncBuffer{},
	}
}

// newCluster prepares n members on 127.0.0.1, 127.0.0.2, ... without
// starting them.
func newCluster(t *testing.T, n int, extra ...string) *cluster {
	c := &cluster{t: t, token: "test-" + t.Name(), extra: extra}
	for i := 0; i < n; i++ {
		c.members = append(c.members, newMember(t, fmt.Sprintf("m%d", i+1), fmt.Sprintf("127.0.0.%d", i+1)))
	}
	t.Cleanup(c.stopAll)
	return c
}

func (c *cluster) initialCluster(ms []*member) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, m.name+"="+m.peer)
	}
	return strings.Join(parts, ",")
}

func (c *cluster) config(m *member, initial, state string) config.Config {
	c.t.Helper()
	args := []string{
		"--name=" + m.name, "--data-dir=" + m.dataDir,
		"--listen-peer-urls=" + m.peer, "--initial-advertise-peer-urls=" + m.peer,
		"--listen-client-urls=" + m.client, "--advertise-client-urls=" + m.client,
		"--initial-cluster=" + initial, "--initial-cluster-state=" + state,
		"--initial-cluster-token=" + c.token,
		"--heartbeat-interval=50", "--election-timeout=500",
	}
	args = append(args, c.extra...)
	cfg, err := config.Parse(args, nil, io.Discard)
	if err != nil {
		c.t.Fatalf("config for %s: %v", m.name, err)
	}
	return cfg
}

// startMember creates and starts m with the given configuration.
func (c *cluster) startMember(m *member, cfg config.Config) error {
	log := slog.New(slog.NewTextHandler(m.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := server.New(context.Background(), cfg, log)
	if err != nil {
		return err
	}
	if err := srv.Start(server.ClientAPI{}); err != nil {
		srv.Close()
		return err
	}
	c.mu.Lock()
	m.srv = srv
	c.mu.Unlock()
	return nil
}

// start starts every member as a new cluster.
func (c *cluster) start() {
	c.t.Helper()
	initial := c.initialCluster(c.members)
	for _, m := range c.members {
		if err := c.startMember(m, c.config(m, initial, "new")); err != nil {
			c.t.Fatalf("start %s: %v", m.name, err)
		}
	}
	c.waitLeader()
}

// restart starts a stopped member again from its data dir.
func (c *cluster) restart(m *member) {
	c.t.Helper()
	if err := c.startMember(m, c.config(m, c.initialCluster(c.members), "new")); err != nil {
		c.t.Fatalf("restart %s: %v", m.name, err)
	}
}

func (c *cluster) stopAll() {
	c.mu.Lock()
	members := append([]*member(nil), c.members...)
	c.mu.Unlock()
	for _, m := range members {
		if m.srv != nil {
			m.srv.Stop()
		}
		if c.t.Failed() {
			c.t.Logf("---- logs of %s ----\n%s", m.name, tail(m.logs.String(), 60))
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (c *cluster) running() []*member {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*member
	for _, m := range c.members {
		if m.srv != nil {
			select {
			case <-m.srv.Done():
			default:
				out = append(out, m)
			}
		}
	}
	return out
}

// follower returns a member other than leader.
func (c *cluster) follower(leader *member) *member {
	c.t.Helper()
	for _, m := range c.members {
		if m != leader {
			return m
		}
	}
	c.t.Fatal("the cluster has no member besides the leader")
	return nil
}

// waitLeader waits until every running member agrees on one leader and
// returns it.
func (c *cluster) waitLeader() *member {
	c.t.Helper()
	var leader *member
	waitUntil(c.t, 20*time.Second, "a leader all running members agree on", func() bool {
		leader = nil
		var id uint64
		for _, m := range c.running() {
			l := m.srv.Leader()
			if l == 0 || (id != 0 && l != id) {
				return false
			}
			id = l
		}
		for _, m := range c.running() {
			if m.srv.ID() == id {
				leader = m
			}
		}
		return leader != nil
	})
	return leader
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func put(ctx context.Context, m *member, k, v string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := m.srv.Put(ctx, &pb.PutRequest{Key: []byte(k), Value: []byte(v)})
	return err
}

func get(t *testing.T, m *member, k string, serializable bool) (string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := m.srv.Range(ctx, &pb.RangeRequest{Key: []byte(k), Serializable: serializable})
	if err != nil {
		t.Fatalf("get %q from %s: %v", k, m.name, err)
	}
	if len(resp.Kvs) == 0 {
		return "", false
	}
	return string(resp.Kvs[0].Value), true
}

// count returns how many keys with prefix m holds (linearizable read).
func count(t *testing.T, m *member, prefix string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	end := []byte(prefix)
	end[len(end)-1]++
	resp, err := m.srv.Range(ctx, &pb.RangeRequest{Key: []byte(prefix), RangeEnd: end, CountOnly: true})
	if err != nil {
		t.Fatalf("count %q on %s: %v", prefix, m.name, err)
	}
	return resp.Count
}

// writer puts keys prefix/0, prefix/1, ... through the given members until
// stopped, recording which puts were acknowledged.
type writer struct {
	mu    sync.Mutex
	acked map[string]string
	wg    sync.WaitGroup
	stop  chan struct{}
}

func startWriter(c *cluster, prefix string, max int) *writer {
	w := &writer{acked: map[string]string{}, stop: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for i := 0; i < max; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			targets := c.running()
			if len(targets) == 0 {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			m := targets[i%len(targets)]
			k, v := fmt.Sprintf("%s/%06d", prefix, i), fmt.Sprintf("v%d", i)
			if err := put(context.Background(), m, k, v); err == nil {
				w.mu.Lock()
				w.acked[k] = v
				w.mu.Unlock()
			}
		}
	}()
	return w
}

func (w *writer) finish() map[string]string {
	close(w.stop)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.acked
}

func (w *writer) ackedCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// checkAcked asserts that every acknowledged write is readable on m.
func checkAcked(t *testing.T, m *member, acked map[string]string) {
	t.Helper()
	for k, v := range acked {
		got, ok := get(t, m, k, false)
		if !ok || got != v {
			t.Fatalf("%s: acknowledged write %s=%s lost (got %q, present %v)", m.name, k, v, got, ok)
		}
	}
}

func TestThreeMembersReplicateWrites(t *testing.T) {
	c := newCluster(t, 3)
	c.start()
	for i, m := range c.members {
		if err := put(context.Background(), m, fmt.Sprintf("k%d", i), m.name); err != nil {
			t.Fatalf("put through %s: %v", m.name, err)
		}
	}
	for _, m := range c.members {
		for i, w := range c.members {
			if got, ok := get(t, m, fmt.Sprintf("k%d", i), false); !ok || got != w.name {
				t.Fatalf("%s reads k%d = %q, %v; want %q", m.name, i, got, ok, w.name)
			}
		}
		if got := len(m.srv.Members()); got != 3 {
			t.Fatalf("%s lists %d members, want 3", m.name, got)
		}
	}
	ids := map[uint64]bool{}
	for _, m := range c.members {
		ids[m.srv.ClusterID()] = true
	}
	if len(ids) != 1 {
		t.Fatalf("members disagree on the cluster ID: %v", ids)
	}
}

func TestLeaderCrashUnderWritesLosesNothing(t *testing.T) {
	c := newCluster(t, 3)
	c.start()
	w := startWriter(c, "crash", 100000)
	waitUntil(t, 20*time.Second, "some writes acknowledged", func() bool { return w.ackedCount() >= 50 })
	old := c.waitLeader()
	oldID := old.srv.ID()
	old.srv.Crash()
	var survivors []*member
	for _, m := range c.members {
		if m != old {
			survivors = append(survivors, m)
		}
	}
	waitUntil(t, 20*time.Second, "a new leader", func() bool {
		l := survivors[0].srv.Leader()
		return l != 0 && l != oldID && l == survivors[1].srv.Leader()
	})
	before := w.ackedCount()
	waitUntil(t, 20*time.Second, "writes acknowledged under the new leader", func() bool { return w.ackedCount() >= before+50 })
	c.restart(old)
	waitUntil(t, 20*time.Second, "more writes with the old leader back", func() bool { return w.ackedCount() >= before+100 })
	acked := w.finish()
	c.waitLeader()
	for _, m := range c.members {
		checkAcked(t, m, acked)
	}
	// The restarted member has caught up: its local (serializable) reads
	// show every acknowledged write once it has applied the leader's index.
	waitUntil(t, 20*time.Second, "the restarted member applied everything", func() bool {
		return old.srv.AppliedIndex() >= c.waitLeader().srv.AppliedIndex()
	})
	for k, v := range acked {
		if got, ok := get(t, old, k, true); !ok || got != v {
			t.Fatalf("restarted member lacks %s=%s locally", k, v)
		}
	}
}

func TestFollowerFarBehindCatchesUpThroughSnapshot(t *testing.T) {
	c := newCluster(t, 3, "--snapshot-count=20")
	c.start()
	leader := c.waitLeader()
	lagger := c.follower(leader)
	lagger.srv.Stop()
	for i := 0; i < 200; i++ {
		if err := put(context.Background(), leader, fmt.Sprintf("snap/%03d", i), "x"); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	c.restart(lagger)
	waitUntil(t, 30*time.Second, "the lagging member to install a snapshot", func() bool {
		return lagger.srv.SnapshotsInstalled() > 0
	})
	waitUntil(t, 30*time.Second, "the lagging member to catch up", func() bool {
		return lagger.srv.AppliedIndex() >= leader.srv.AppliedIndex()
	})
	if n := count(t, lagger, "snap/"); n != 200 {
		t.Fatalf("lagging member has %d keys after catching up, want 200", n)
	}
	// It keeps working as a voter: a write through it succeeds.
	if err := put(context.Background(), lagger, "after", "snap"); err != nil {
		t.Fatal(err)
	}
	// And it restarts cleanly from the installed state.
	lagger.srv.Stop()
	c.restart(lagger)
	if got, ok := get(t, lagger, "after", false); !ok || got != "snap" {
		t.Fatalf("after restart: %q %v", got, ok)
	}
}

func (c *cluster) leaderOrFail() *member { return c.waitLeader() }

func TestMembershipChangesUnderWrites(t *testing.T) {
	c := newCluster(t, 3)
	c.start()
	w := startWriter(c, "member", 100000)
	waitUntil(t, 20*time.Second, "writes flowing", func() bool { return w.ackedCount() >= 30 })

	// Add a learner, start it, promote it.
	m4 := newMember(t, "m4", "127.0.0.4")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	added, _, err := c.leaderOrFail().srv.AddMember(ctx, []string{m4.peer}, true)
	if err != nil {
		t.Fatalf("add learner: %v", err)
	}
	if !added.IsLearner {
		t.Fatal("added member is not a learner")
	}
	c.mu.Lock()
	c.members = append(c.members, m4)
	c.mu.Unlock()
	if err := c.startMember(m4, c.config(m4, c.initialCluster(c.members), "existing")); err != nil {
		t.Fatalf("start joining member: %v", err)
	}
	if m4.srv.ID() != added.ID {
		t.Fatalf("joined as %x, was added as %x", m4.srv.ID(), added.ID)
	}
	waitUntil(t, 30*time.Second, "the learner to catch up and be promoted", func() bool {
		_, err := c.leaderOrFail().srv.PromoteMember(context.Background(), added.ID)
		return err == nil
	})
	// Remove an original member that does not lead.
	leader := c.leaderOrFail()
	var victim *member
	for _, m := range c.members[:3] {
		if m != leader {
			victim = m
			break
		}
	}
	if _, err := leader.srv.RemoveMember(ctx, victim.srv.ID()); err != nil {
		t.Fatalf("remove: %v", err)
	}
	select {
	case <-victim.srv.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("removed member did not stop itself")
	}
	if err := victim.srv.Err(); err == nil || !strings.Contains(err.Error(), "removed") {
		t.Fatalf("removed member stopped with %v", err)
	}
	before := w.ackedCount()
	waitUntil(t, 20*time.Second, "writes continue after the changes", func() bool { return w.ackedCount() >= before+30 })
	acked := w.finish()
	final := c.running()
	if len(final) != 3 {
		t.Fatalf("%d members running, want 3", len(final))
	}
	for _, m := range final {
		if got := len(m.srv.Members()); got != 3 {
			t.Fatalf("%s lists %d members, want 3", m.name, got)
		}
		checkAcked(t, m, acked)
	}
	// The removed member refuses to start again from its data dir.
	c.mu.Lock()
	victim.srv = nil
	c.mu.Unlock()
	err = c.startMember(victim, c.config(victim, c.initialCluster(c.members[:3]), "new"))
	if err == nil || !strings.Contains(err.Error(), "removed") {
		t.Fatalf("removed member restarted: %v", err)
	}
}

func TestMoveLeaderAndStopTransfersLeadership(t *testing.T) {
	c := newCluster(t, 3)
	c.start()
	leader := c.waitLeader()
	to := c.follower(leader)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leader.srv.MoveLeader(ctx, to.srv.ID()); err != nil {
		t.Fatalf("MoveLeader: %v", err)
	}
	if l := c.waitLeader(); l != to {
		t.Fatalf("leader is %s after moving it to %s", l.name, to.name)
	}
	to.srv.Stop()
	var rest []*member
	for _, m := range c.members {
		if m != to {
			rest = append(rest, m)
		}
	}
	// A graceful stop hands leadership over at once, before the old leader
	// goes quiet: the survivors have a leader well within one election
	// timeout of the stop returning.
	if l := rest[0].srv.Leader(); l == 0 || l == to.srv.ID() {
		t.Fatalf("no new leader right after the leader stopped (sees %x)", l)
	}
	if !strings.Contains(to.logs.String(), "transferring leadership") {
		t.Fatal("stopping leader did not transfer leadership")
	}
}

// A write the leader takes while it hands leadership over is refused at
// once with raft's error. The leader queues proposals for its Ready loop,
// so raft refuses this one only after raftnode's Propose returned; the
// refusal must still reach the writer (raftnode.Config.Dropped) rather
// than leave it waiting for its timeout.
func TestWriteDuringLeadershipTransferIsRefused(t *testing.T) {
	c := newCluster(t, 3)
	c.start()
	leader := c.waitLeader()
	to := c.follower(leader)
	toID := to.srv.ID()
	// With the transferee stopped, raft keeps the transfer pending (and
	// refuses proposals) for an election timeout, 500 ms.
	to.srv.Stop()
	mctx, mcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer mcancel()
	moved := make(chan error, 1)
	go func() { moved <- leader.srv.MoveLeader(mctx, toID) }()
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		err := put(context.Background(), leader, fmt.Sprintf("k%d", i), "v")
		if err != nil {
			if !errors.Is(err, raft.ErrProposalDropped) {
				t.Fatalf("write during the transfer: %v, want %v", err, raft.ErrProposalDropped)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write refused during the transfer (%d writes)", i+1)
		}
	}
	mcancel()
	if err := <-moved; err == nil {
		t.Fatal("leadership moved to a stopped member")
	}
}

func TestMisconfigurationsAreRefused(t *testing.T) {
	c := newCluster(t, 1)
	c.start()
	m := c.members[0]
	if err := put(context.Background(), m, "k", "v"); err != nil {
		t.Fatal(err)
	}
	m.srv.Stop()
	m.srv = nil

	t.Run("data dir of another cluster", func(t *testing.T) {
		other := &cluster{t: t, token: "another-token"}
		err := other.startMember(m, other.config(m, c.initialCluster(c.members), "new"))
		if err == nil || !strings.Contains(err.Error(), "belongs to cluster") {
			t.Fatalf("start with another cluster's token: %v", err)
		}
	})
	t.Run("data dir of another member", func(t *testing.T) {
		impostor := *m
		impostor.name = "someone-else"
		cfg := c.config(&impostor, "someone-else="+m.peer, "new")
		err := c.startMember(&impostor, cfg)
		if err == nil || !strings.Contains(err.Error(), "belongs to") {
			t.Fatalf("start with another name: %v", err)
		}
	})
	t.Run("name missing from initial cluster", func(t *testing.T) {
		args := []string{"--name=ghost", "--data-dir=" + t.TempDir(), "--initial-cluster=m1=" + m.peer,
			"--listen-peer-urls=" + m.peer, "--initial-advertise-peer-urls=" + m.peer}
		_, err := config.Parse(args, nil, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "initial-cluster") {
			t.Fatalf("parse: %v", err)
		}
	})
	t.Run("data dir in use", func(t *testing.T) {
		if err := c.startMember(m, c.config(m, c.initialCluster(c.members), "new")); err != nil {
			t.Fatal(err)
		}
		second := *m
		err := c.startMember(&second, c.config(m, c.initialCluster(c.members), "new"))
		if err == nil || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("second member on the same data dir: %v", err)
		}
	})
	t.Run("join without being added", func(t *testing.T) {
		stranger := newMember(t, "stranger", "127.0.0.5")
		err := c.startMember(stranger, c.config(stranger, c.initialCluster(c.members)+",stranger="+stranger.peer, "existing"))
		if err == nil || !strings.Contains(err.Error(), "add this member first") {
			t.Fatalf("join without member add: %v", err)
		}
	})
}

func TestUpdatePeerURLsAndRestartOnNewAddress(t *testing.T) {
	c := newCluster(t, 3)
	c.start()
	leader := c.waitLeader()
	moved := c.follower(leader)
	id := moved.srv.ID()
	moved.srv.Stop()
	newPeer := "http://" + moved.ip + ":" + freePort(t, moved.ip)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	members, err := leader.srv.UpdateMember(ctx, id, []string{newPeer})
	if err != nil {
		t.Fatalf("UpdateMember: %v", err)
	}
	found := false
	for _, m := range members {
		if m.ID == id {
			found = len(m.PeerURLs) == 1 && m.PeerURLs[0] == newPeer
		}
	}
	if !found {
		t.Fatalf("member list after the update lacks %s: %+v", newPeer, members)
	}
	moved.peer = newPeer
	c.restart(moved)
	if err := put(context.Background(), leader, "moved", "yes"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "the moved member to apply the write", func() bool {
		return moved.srv.AppliedIndex() >= leader.srv.AppliedIndex()
	})
	if got, ok := get(t, moved, "moved", true); !ok || got != "yes" {
		t.Fatalf("moved member reads %q %v", got, ok)
	}
}

func TestAddVoterJoinsAndVotes(t *testing.T) {
	c := newCluster(t, 1)
	c.start()
	m2 := newMember(t, "m2", "127.0.0.2")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	added, members, err := c.members[0].srv.AddMember(ctx, []string{m2.peer}, false)
	if err != nil {
		t.Fatalf("add voter: %v", err)
	}
	if added.IsLearner || len(members) != 2 {
		t.Fatalf("added %+v, members %d", added, len(members))
	}
	c.mu.Lock()
	c.members = append(c.members, m2)
	c.mu.Unlock()
	if err := c.startMember(m2, c.config(m2, c.initialCluster(c.members), "existing")); err != nil {
		t.Fatalf("start joining voter: %v", err)
	}
	// With two voters a write needs both: it succeeds only once m2 votes.
	if err := put(context.Background(), c.members[0], "two", "voters"); err != nil {
		t.Fatalf("put with two voters: %v", err)
	}
	if got, ok := get(t, m2, "two", false); !ok || got != "voters" {
		t.Fatalf("joined voter reads %q %v", got, ok)
	}
	st := c.members[0].srv.Status()
	if !st.IsLeader {
		t.Fatalf("m1 lost leadership: %+v", st)
	}
	if n := len(m2.srv.Members()); n != 2 {
		t.Fatalf("joined voter lists %d members", n)
	}
}
