package server_test

import (
	"context"
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Overwrites keep their create revision and count versions whether the
// latest-version cache is off, tiny (evicting all the time) or default.
func TestLatestCacheFlagSizes(t *testing.T) {
	for _, size := range []string{"0", "4096", "16777216"} {
		t.Run(size, func(t *testing.T) {
			c := newCluster(t, 1, "--latest-cache-bytes="+size)
			c.start()
			m := c.members[0]
			for round := 1; round <= 3; round++ {
				for k := range 20 {
					if err := put(context.Background(), m, fmt.Sprintf("k%02d", k), fmt.Sprint(round)); err != nil {
						t.Fatal(err)
					}
				}
			}
			resp, err := m.srv.Range(context.Background(), &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Kvs) != 20 {
				t.Fatalf("%d keys, want 20", len(resp.Kvs))
			}
			for _, kv := range resp.Kvs {
				if kv.Version != 3 || string(kv.Value) != "3" || kv.CreateRevision >= kv.ModRevision {
					t.Fatalf("%s: version %d value %q create %d mod %d", kv.Key, kv.Version, kv.Value, kv.CreateRevision, kv.ModRevision)
				}
			}
		})
	}
}
