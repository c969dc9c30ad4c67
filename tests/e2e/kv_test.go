// Package e2e drives clusters of the built cairn binary with the official
// etcd Go client (go.etcd.io/etcd/client/v3), the judge of wire
// compatibility.
package e2e

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/tests/framework"
)

func TestKVWithOfficialClient(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 3})
	cli := c.Client()
	ctx := framework.Context(t, 60*time.Second)

	put, err := cli.Put(ctx, "foo", "bar")
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	h := put.Header
	if h.ClusterId == 0 || h.MemberId == 0 || h.Revision < 2 || h.RaftTerm == 0 {
		t.Fatalf("put header not filled: %+v", h)
	}
	// Read it back through every member.
	for _, ep := range c.Endpoints() {
		one := c.Client(ep)
		resp, err := one.Get(ctx, "foo")
		if err != nil {
			t.Fatalf("get via %s: %v", ep, err)
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "bar" || resp.Kvs[0].Version != 1 {
			t.Fatalf("get via %s: %+v", ep, resp.Kvs)
		}
		if resp.Header.ClusterId != h.ClusterId {
			t.Fatalf("cluster IDs differ: %x vs %x", resp.Header.ClusterId, h.ClusterId)
		}
		if _, err := one.Get(ctx, "foo", clientv3.WithSerializable()); err != nil {
			t.Fatalf("serializable get via %s: %v", ep, err)
		}
	}

	// Prefix, limit, sort, count, keys-only, prev-kv.
	for i := 0; i < 5; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("dir/%d", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := cli.Get(ctx, "dir/", clientv3.WithPrefix(), clientv3.WithLimit(2),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 2 || !resp.More || resp.Count != 5 || string(resp.Kvs[0].Key) != "dir/4" {
		t.Fatalf("prefix get: kvs %d more %v count %d first %q", len(resp.Kvs), resp.More, resp.Count, resp.Kvs[0].Key)
	}
	cnt, err := cli.Get(ctx, "dir/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || cnt.Count != 5 || len(cnt.Kvs) != 0 {
		t.Fatalf("count only: %+v %v", cnt, err)
	}
	pp, err := cli.Put(ctx, "foo", "baz", clientv3.WithPrevKV())
	if err != nil || pp.PrevKv == nil || string(pp.PrevKv.Value) != "bar" {
		t.Fatalf("put prev kv: %+v %v", pp, err)
	}
	del, err := cli.Delete(ctx, "dir/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err != nil || del.Deleted != 5 || len(del.PrevKvs) != 5 {
		t.Fatalf("delete prefix: %+v %v", del, err)
	}

	// Txn with compares, both branches.
	tx, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value("foo"), "=", "baz")).
		Then(clientv3.OpPut("txn", "then"), clientv3.OpGet("foo")).
		Else(clientv3.OpPut("txn", "else")).Commit()
	if err != nil || !tx.Succeeded || len(tx.Responses) != 2 {
		t.Fatalf("txn: %+v %v", tx, err)
	}
	if got := tx.Responses[1].GetResponseRange(); got == nil || string(got.Kvs[0].Value) != "baz" {
		t.Fatalf("txn range response: %+v", tx.Responses[1])
	}
	tx, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.Version("foo"), ">", 5)).
		Then(clientv3.OpPut("txn", "then")).Else(clientv3.OpPut("txn", "else")).Commit()
	if err != nil || tx.Succeeded {
		t.Fatalf("failing txn: %+v %v", tx, err)
	}

	// Compaction and history.
	cur := tx.Header.Revision
	if _, err := cli.Compact(ctx, cur-1); err != nil {
		t.Fatalf("compact: %v", err)
	}
	if _, err := cli.Get(ctx, "foo", clientv3.WithRev(cur-2)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("get at compacted revision: %v", err)
	}
	if _, err := cli.Get(ctx, "foo", clientv3.WithRev(cur+100)); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("get at future revision: %v", err)
	}
}

func TestKVBadRequestsGetEtcdErrorsAndChangeNothing(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 1})
	cli := c.Client()
	ctx := framework.Context(t, 60*time.Second)
	before, err := cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	rev := before.Header.Revision

	if _, err := cli.Put(ctx, "", "v"); !errors.Is(err, rpctypes.ErrEmptyKey) {
		t.Errorf("empty key: %v", err)
	}
	ops := make([]clientv3.Op, 129)
	for i := range ops {
		ops[i] = clientv3.OpPut(fmt.Sprintf("k%d", i), "v")
	}
	if _, err := cli.Txn(ctx).Then(ops...).Commit(); !errors.Is(err, rpctypes.ErrTooManyOps) {
		t.Errorf("129 ops: %v", err)
	}
	if _, err := cli.Txn(ctx).Then(clientv3.OpPut("a", "1"), clientv3.OpPut("a", "2")).Commit(); !errors.Is(err, rpctypes.ErrDuplicateKey) {
		t.Errorf("duplicate put: %v", err)
	}
	if _, err := cli.Txn(ctx).Then(clientv3.OpDelete("a", clientv3.WithPrefix()), clientv3.OpPut("ab", "2")).Commit(); !errors.Is(err, rpctypes.ErrDuplicateKey) {
		t.Errorf("put inside deleted range: %v", err)
	}
	big := strings.Repeat("x", 1600*1024) // over --max-request-bytes (1.5 MiB), under the client's 2 MiB send limit
	if _, err := cli.Put(ctx, "big", big); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Errorf("1.6 MiB value: %v", err)
	}
	if _, err := cli.Put(ctx, "missing", "", clientv3.WithIgnoreValue()); !errors.Is(err, rpctypes.ErrKeyNotFound) {
		t.Errorf("ignore value on a missing key: %v", err)
	}
	after, err := cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if after.Header.Revision != rev {
		t.Fatalf("bad requests changed the revision: %d -> %d", rev, after.Header.Revision)
	}
}

func TestRangeStreamWithOfficialClient(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 1})
	cli := c.Client()
	ctx := framework.Context(t, 60*time.Second)
	const n = 2500 // more than two pages
	for i := 0; i < n; i += 100 {
		ops := make([]clientv3.Op, 0, 100)
		for j := i; j < i+100; j++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("rs/%05d", j), fmt.Sprint(j)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		opts  []clientv3.OpOption
		count int
		more  bool
	}{
		{"all", []clientv3.OpOption{clientv3.WithPrefix()}, n, false},
		{"limit", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithLimit(1500)}, 1500, true},
		{"descending", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)}, n, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := cli.GetStream(ctx, "rs/", tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			chunks := 0
			var kvs int
			var last *clientv3.RangeStreamResponse
			for r := range ch {
				if err := r.Err(); err != nil {
					t.Fatal(err)
				}
				chunks++
				kvs += len(r.Kvs)
				last = &r
			}
			if kvs != tc.count || chunks < 2 {
				t.Fatalf("%d keys in %d chunks, want %d keys in several", kvs, chunks, tc.count)
			}
			if last.Header == nil || last.Count != n || last.More != tc.more {
				t.Fatalf("final chunk: header %v count %d more %v", last.Header, last.Count, last.More)
			}
			want, err := cli.Get(ctx, "rs/", tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			ch2, _ := cli.GetStream(ctx, "rs/", tc.opts...)
			merged, err := clientv3.GetStreamToGetResponse(ch2)
			if err != nil {
				t.Fatal(err)
			}
			if len(merged.Kvs) != len(want.Kvs) || merged.Count != want.Count || merged.More != want.More {
				t.Fatalf("merged stream differs from Get: %d/%d keys, count %d/%d", len(merged.Kvs), len(want.Kvs), merged.Count, want.Count)
			}
			for i := range want.Kvs {
				if string(merged.Kvs[i].Key) != string(want.Kvs[i].Key) {
					t.Fatalf("key %d: stream %q, Get %q", i, merged.Kvs[i].Key, want.Kvs[i].Key)
				}
			}
		})
	}
}
