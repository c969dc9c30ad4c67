package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/backend"
	"github.com/cairn-kv/cairn/mvcc"
	"github.com/cairn-kv/cairn/snap"
	"github.com/cairn-kv/cairn/tests/framework"
)

// TestMaintenanceStatusHashMoveLeaderProbes checks, on a 3-member cluster:
// Status fields on every member, equal HashKV and Hash after writes,
// Defragment, MoveLeader (refused by a follower, done by the leader), and
// the HTTP probes and metrics, including /readyz failing without quorum.
func TestMaintenanceStatusHashMoveLeaderProbes(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 3})
	cli := c.Client()
	ctx := framework.Context(t, 90*time.Second)
	var rev int64
	for i := range 20 {
		resp, err := cli.Put(ctx, fmt.Sprintf("k%02d", i), strings.Repeat("v", i))
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	if _, err := cli.Delete(ctx, "k03"); err != nil {
		t.Fatal(err)
	}

	statuses := map[string]*clientv3.StatusResponse{}
	for _, m := range c.Members {
		st, err := cli.Status(ctx, m.ClientURL)
		if err != nil {
			t.Fatal(err)
		}
		statuses[m.Name] = st
		if st.Version != "3.7.0" || st.Leader == 0 || st.RaftTerm == 0 || st.RaftIndex == 0 || st.RaftAppliedIndex == 0 ||
			st.DbSize <= 0 || st.DbSizeInUse <= 0 || st.DbSizeInUse > st.DbSize || st.IsLearner || len(st.Errors) != 0 ||
			st.Header.MemberId == 0 || st.Header.ClusterId == 0 || st.Header.Revision < rev || st.DbSizeQuota <= 0 {
			t.Fatalf("%s status = %+v", m.Name, st)
		}
	}
	leaderID := statuses["m1"].Leader
	var leader, follower *framework.Member
	for _, m := range c.Members {
		if st := statuses[m.Name]; st.Leader != leaderID {
			t.Fatalf("members disagree on the leader: %x vs %x", st.Leader, leaderID)
		} else if st.Header.MemberId == leaderID {
			leader = m
		} else {
			follower = m
		}
	}
	if leader == nil || follower == nil {
		t.Fatalf("no leader (%x) among the members", leaderID)
	}

	checkHashesAgree(t, ctx, cli, c, rev)
	for _, m := range c.Members {
		if resp, err := cli.Defragment(ctx, m.ClientURL); err != nil || resp.Header == nil || resp.Header.MemberId == 0 {
			t.Fatalf("defragment %s: %+v, %v", m.Name, resp, err)
		}
	}
	checkHashesAgree(t, ctx, cli, c, rev) // defragmenting changes no data

	// MoveLeader: a follower refuses, the leader hands over.
	target := statuses[follower.Name].Header.MemberId
	fcli := c.Client(follower.ClientURL)
	if _, err := fcli.MoveLeader(ctx, target); !errors.Is(err, rpctypes.ErrNotLeader) {
		t.Fatalf("MoveLeader on a follower: %v, want %v", err, rpctypes.ErrNotLeader)
	}
	lcli := c.Client(leader.ClientURL)
	if _, err := lcli.MoveLeader(ctx, 12345); !errors.Is(err, rpctypes.ErrBadLeaderTransferee) {
		t.Fatalf("MoveLeader to a stranger: %v, want %v", err, rpctypes.ErrBadLeaderTransferee)
	}
	if _, err := lcli.MoveLeader(ctx, target); err != nil {
		t.Fatalf("MoveLeader: %v", err)
	}
	st, err := cli.Status(ctx, follower.ClientURL)
	if err != nil || st.Leader != target {
		t.Fatalf("after MoveLeader the leader is %x, want %x (%v)", st.Leader, target, err)
	}

	checkProbesAndMetrics(t, follower)

	// Without quorum the member is alive but not ready.
	for _, m := range c.Members {
		if m != follower {
			c.Kill(m)
		}
	}
	maintWaitFor(t, 30*time.Second, "/readyz to fail without quorum", func() bool {
		code, body := framework.HTTPGet(t, follower.ClientURL+"/readyz")
		return code == 503 && strings.Contains(body, "[-]linearizable_read failed") && strings.Contains(body, "readyz check failed")
	})
	if code, body := framework.HTTPGet(t, follower.ClientURL+"/livez"); code != 200 || body != "ok" {
		t.Fatalf("/livez without quorum = %d %q", code, body)
	}
	if code, _ := framework.HTTPGet(t, follower.ClientURL+"/readyz?exclude=linearizable_read"); code != 200 {
		t.Fatalf("/readyz excluding the failing check = %d", code)
	}
}

// checkHashesAgree waits until every member can hash revision rev and
// checks that all agree, then that the whole-store hashes agree too.
func checkHashesAgree(t *testing.T, ctx context.Context, cli *clientv3.Client, c *framework.Cluster, rev int64) {
	t.Helper()
	var first *clientv3.HashKVResponse
	for _, m := range c.Members {
		var h *clientv3.HashKVResponse
		maintWaitFor(t, 10*time.Second, m.Name+" to reach revision "+fmt.Sprint(rev), func() bool {
			var err error
			h, err = cli.HashKV(ctx, m.ClientURL, rev)
			if err != nil && !errors.Is(err, rpctypes.ErrFutureRev) {
				t.Fatalf("HashKV %s: %v", m.Name, err)
			}
			return err == nil
		})
		if h.HashRevision != rev || h.Header.Revision < rev || h.Hash == 0 {
			t.Fatalf("HashKV %s = %+v", m.Name, h)
		}
		if first == nil {
			first = h
		} else if h.Hash != first.Hash || h.CompactRevision != first.CompactRevision {
			t.Fatalf("HashKV %s = %d (compact %d), first member %d (compact %d)", m.Name, h.Hash, h.CompactRevision, first.Hash, first.CompactRevision)
		}
	}
	if _, err := cli.HashKV(ctx, c.Members[0].ClientURL, rev+1000); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("HashKV of a future revision: %v", err)
	}
	var hashes []uint32
	for _, m := range c.Members {
		maint := pb.NewMaintenanceClient(c.Client(m.ClientURL).ActiveConnection())
		h, err := maint.Hash(ctx, &pb.HashRequest{})
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h.Hash)
	}
	if hashes[0] != hashes[1] || hashes[0] != hashes[2] {
		t.Fatalf("Hash differs between members: %v", hashes)
	}
}

func checkProbesAndMetrics(t *testing.T, m *framework.Member) {
	t.Helper()
	get := func(path string) (int, string) { return framework.HTTPGet(t, m.ClientURL+path) }
	if code, body := get("/livez"); code != 200 || body != "ok" {
		t.Fatalf("/livez = %d %q", code, body)
	}
	if code, body := get("/livez?verbose"); code != 200 || !strings.Contains(body, "[+]serializable_read ok") || !strings.Contains(body, "livez check passed") {
		t.Fatalf("/livez?verbose = %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 200 || body != "ok" {
		t.Fatalf("/readyz = %d %q", code, body)
	}
	code, body := get("/readyz?verbose")
	for _, want := range []string{"[+]data_corruption ok", "[+]serializable_read ok", "[+]linearizable_read ok", "readyz check passed"} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/readyz?verbose = %d %q, want %q", code, body, want)
		}
	}
	if code, body := get("/readyz/linearizable_read?verbose"); code != 200 || strings.Contains(body, "serializable_read") {
		t.Fatalf("/readyz/linearizable_read = %d %q", code, body)
	}
	code, body = get("/metrics")
	for _, want := range []string{
		"etcd_server_has_leader 1", "etcd_server_leader_changes_seen_total", "etcd_server_proposals_committed_total",
		"etcd_server_proposals_applied_total", "etcd_server_proposals_pending 0", "etcd_server_proposals_failed_total",
		"etcd_mvcc_db_total_size_in_bytes", "etcd_disk_wal_fsync_duration_seconds_bucket",
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Status",grpc_service="etcdserverpb.Maintenance",grpc_type="unary"}`,
		"go_goroutines",
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/metrics = %d, missing %q", code, want)
		}
	}
	if strings.Contains(body, "etcd_disk_wal_fsync_duration_seconds_count 0\n") {
		t.Fatal("no WAL fsync observed")
	}
	// Every stream write carries one or more messages.
	sum := func(name string) float64 {
		total := 0.0
		for _, line := range strings.Split(body, "\n") {
			if rest, ok := strings.CutPrefix(line, name+"{"); ok {
				_, v, _ := strings.Cut(rest, "} ")
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatalf("/metrics line %q: %v", line, err)
				}
				total += f
			}
		}
		return total
	}
	msgs, batches := sum("cairn_network_peer_sent_messages_total"), sum("cairn_network_peer_sent_batches_total")
	if batches <= 0 || batches > msgs {
		t.Fatalf("peer stream writes %v for %v messages; want 0 < writes <= messages", batches, msgs)
	}
}

// TestMaintenanceSnapshot downloads a snapshot with the official client and
// checks its checksum trailer and its content.
func TestMaintenanceSnapshot(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 1})
	cli := c.Client()
	ctx := framework.Context(t, 60*time.Second)
	want := map[string]string{}
	for i := range 50 {
		k, v := fmt.Sprintf("snap/%02d", i), strings.Repeat(fmt.Sprint(i), 1000)
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	rc, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < 1024+sha256.Size {
		t.Fatalf("snapshot of %d bytes", len(data))
	}
	body, trailer := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], trailer) {
		t.Fatal("the last 32 bytes are not the sha256 of the rest")
	}
	if n, err := snap.VerifyChecksum(bytes.NewReader(data)); err != nil || n != int64(len(body)) {
		t.Fatalf("VerifyChecksum = %d, %v", n, err)
	}

	dir := filepath.Join(t.TempDir(), "db")
	if err := snap.ReadArchive(ctx, bytes.NewReader(body), dir, 1<<30); err != nil {
		t.Fatal(err)
	}
	be, err := backend.Open(dir, backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	kv, err := mvcc.New(be, mvcc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	resp, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("snap/"), RangeEnd: []byte("snap0")})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != len(want) {
		t.Fatalf("snapshot holds %d keys, want %d", len(resp.Kvs), len(want))
	}
	for _, kv := range resp.Kvs {
		if want[string(kv.Key)] != string(kv.Value) {
			t.Fatalf("snapshot key %q has a wrong value", kv.Key)
		}
	}
}

// TestMaintenanceNoSpaceAlarm fills a member with a tiny quota until writes
// fail, checks the alarm (also across a restart), then frees space and
// disarms it.
func TestMaintenanceNoSpaceAlarm(t *testing.T) {
	const quota = 4 << 20
	c := framework.Start(t, framework.Options{Size: 1, Extra: []string{fmt.Sprintf("--quota-backend-bytes=%d", quota)}})
	m := c.Members[0]
	cli := c.Client()
	ctx := framework.Context(t, 90*time.Second)
	value := strings.Repeat("x", 64<<10)
	var filled int
	for ; filled < 4*quota/len(value); filled++ {
		_, err := cli.Put(ctx, fmt.Sprintf("fill/%04d", filled), value)
		if errors.Is(err, rpctypes.ErrNoSpace) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if filled == 0 || filled == 4*quota/len(value) {
		t.Fatalf("%d puts of %d bytes before NOSPACE with a quota of %d", filled, len(value), quota)
	}
	st, err := cli.Status(ctx, m.ClientURL)
	if err != nil {
		t.Fatal(err)
	}
	memberID := st.Header.MemberId
	t.Logf("NOSPACE after %d puts of %d bytes: db size %d, in use %d, quota %d", filled, len(value), st.DbSize, st.DbSizeInUse, quota)
	checkNoSpace := func() {
		t.Helper()
		alarms, err := cli.AlarmList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(alarms.Alarms) != 1 || alarms.Alarms[0].MemberID != memberID || alarms.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
			t.Fatalf("alarms = %+v", alarms.Alarms)
		}
		if _, err := cli.Put(ctx, "small", "v"); !errors.Is(err, rpctypes.ErrNoSpace) {
			t.Fatalf("put under NOSPACE: %v", err)
		}
		_, err = cli.Txn(ctx).Then(clientv3.OpPut("small", "v")).Commit()
		if !errors.Is(err, rpctypes.ErrNoSpace) {
			t.Fatalf("txn with a put under NOSPACE: %v", err)
		}
		if _, err := cli.Grant(ctx, 60); err != nil && !errors.Is(err, rpctypes.ErrNoSpace) && grpcstatus.Code(err) != codes.Unimplemented {
			t.Fatalf("lease grant under NOSPACE: %v", err)
		}
		if resp, err := cli.Get(ctx, "fill/0000"); err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("read under NOSPACE: %+v, %v", resp, err)
		}
		st, err := cli.Status(ctx, m.ClientURL)
		if err != nil || len(st.Errors) != 1 || !strings.Contains(st.Errors[0], "alarm:NOSPACE") {
			t.Fatalf("status errors = %+v, %v", st, err)
		}
	}
	checkNoSpace()

	// The alarm is replicated state: it survives a restart.
	c.Terminate(m)
	c.StartMember(m, "new")
	c.WaitHealthy()
	cli = c.Client()
	checkNoSpace()

	del, err := cli.Delete(ctx, "fill/", clientv3.WithPrefix())
	if err != nil || del.Deleted != int64(filled) {
		t.Fatalf("delete under NOSPACE: %+v, %v", del, err)
	}
	if _, err := cli.Compact(ctx, del.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Defragment(ctx, m.ClientURL); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "small", "v"); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("put before disarming: %v", err)
	}
	if st, err := cli.Status(ctx, m.ClientURL); err == nil {
		t.Logf("after delete, compact, defragment: db size %d, in use %d", st.DbSize, st.DbSizeInUse)
	}
	dis, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: memberID, Alarm: pb.AlarmType_NOSPACE})
	if err != nil || len(dis.Alarms) != 1 {
		t.Fatalf("disarm = %+v, %v", dis, err)
	}
	if alarms, err := cli.AlarmList(ctx); err != nil || len(alarms.Alarms) != 0 {
		t.Fatalf("alarms after disarm = %+v, %v", alarms, err)
	}
	if _, err := cli.Put(ctx, "small", "v"); err != nil {
		st, _ := cli.Status(ctx, m.ClientURL)
		t.Fatalf("put after freeing space and disarming (db size %d, quota %d): %v", st.DbSize, quota, err)
	}
}
