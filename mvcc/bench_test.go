package mvcc

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func BenchmarkPut(b *testing.B) {
	ts := openTestStore(b, b.TempDir(), Options{})
	val := make([]byte, 256)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ts.apply(func(w *Writer) {
			if _, err := w.Put(&pb.PutRequest{Key: []byte(fmt.Sprintf("key-%010d", i%100000)), Value: val}); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func fill(b *testing.B, ts *testStore, n int) {
	val := make([]byte, 256)
	for i := 0; i < n; i += 1000 {
		ts.apply(func(w *Writer) {
			for j := i; j < i+1000 && j < n; j++ {
				if _, err := w.Put(&pb.PutRequest{Key: []byte(fmt.Sprintf("key-%010d", j)), Value: val}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchRange(b *testing.B, n int64) {
	ts := openTestStore(b, b.TempDir(), Options{})
	fill(b, ts, 10000)
	ctx := context.Background()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		start := (i * 97) % (10000 - int(n))
		r := &pb.RangeRequest{Key: []byte(fmt.Sprintf("key-%010d", start))}
		if n > 1 {
			r.RangeEnd = []byte(fmt.Sprintf("key-%010d", start+int(n)))
		}
		resp, err := ts.s.Range(ctx, r)
		if err != nil || int64(len(resp.Kvs)) != n {
			b.Fatalf("range: %d kvs, %v", len(resp.Kvs), err)
		}
	}
}

func BenchmarkRange1(b *testing.B)   { benchRange(b, 1) }
func BenchmarkRange100(b *testing.B) { benchRange(b, 100) }

func BenchmarkTxn(b *testing.B) {
	ts := openTestStore(b, b.TempDir(), Options{})
	fill(b, ts, 1000)
	val := make([]byte, 256)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k := []byte(fmt.Sprintf("key-%010d", i%1000))
		ts.apply(func(w *Writer) {
			_, err := w.Txn(&pb.TxnRequest{
				Compare: []*pb.Compare{{Key: k, Target: pb.Compare_VERSION, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Version{Version: 0}}},
				Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: k, Value: val}}}},
				Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: k}}}},
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}

// TestScale1M writes CAIRN_MVCC_SCALE keys (e.g. 1000000) of 16 bytes with
// 256-byte values and reports RSS, disk size and reopen time. Skipped unless
// the variable is set.
func TestScale1M(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CAIRN_MVCC_SCALE"))
	if n <= 0 {
		t.Skip("set CAIRN_MVCC_SCALE=1000000 to run")
	}
	dir := t.TempDir()
	ts := openTestStore(t, dir, Options{})
	val := make([]byte, 256)
	rnd := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	for i := 0; i < n; i += 1000 {
		ts.apply(func(w *Writer) {
			for j := i; j < i+1000 && j < n; j++ {
				for k := range val {
					val[k] = byte(rnd.Uint32()) // incompressible, like real values
				}
				if _, err := w.Put(&pb.PutRequest{Key: []byte(fmt.Sprintf("key-%012d", j)), Value: val}); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	t.Logf("wrote %d keys in %v; RSS %s", n, time.Since(start).Round(time.Millisecond), rss())
	if _, err := ts.be.Sync(); err != nil {
		t.Fatal(err)
	}
	ts.close()
	t.Logf("disk after close: %.1f MiB", float64(dirSize(t, dir))/(1<<20))
	start = time.Now()
	ts.open()
	resp, err := ts.s.Range(context.Background(), &pb.RangeRequest{Key: []byte("key-000000500000")})
	if err != nil || len(resp.Kvs) != 1 && n > 500000 {
		t.Fatalf("range after reopen: %v", err)
	}
	t.Logf("reopen + first read: %v; RSS %s", time.Since(start).Round(time.Millisecond), rss())
	start = time.Now()
	cr, err := ts.s.Range(context.Background(), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true})
	if err != nil || cr.Count != int64(n) {
		t.Fatalf("count: %v %v", cr, err)
	}
	t.Logf("count of all keys: %v; RSS %s", time.Since(start).Round(time.Millisecond), rss())
}

func rss() string {
	b, _ := os.ReadFile("/proc/self/status")
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS") || strings.HasPrefix(l, "VmHWM") {
			out = append(out, strings.Join(strings.Fields(l), " "))
		}
	}
	return strings.Join(out, ", ")
}

func dirSize(t *testing.T, dir string) int64 {
	var total int64
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			total += info.Size()
		}
		return nil
	})
	return total
}

// BenchmarkPutRandomKeys overwrites random keys of 100,000 existing ones (the
// load tool's put), with and without the latest-version cache.
func BenchmarkPutRandomKeys(b *testing.B) {
	for _, cache := range []int{-1, 0} {
		name := "cache=off"
		if cache == 0 {
			name = "cache=default"
		}
		b.Run(name, func(b *testing.B) {
			ts := openTestStore(b, b.TempDir(), Options{LatestCacheBytes: cache})
			fill(b, ts, 100000)
			val := make([]byte, 256)
			r := rand.New(rand.NewPCG(1, 2))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				ts.apply(func(w *Writer) {
					k := []byte(fmt.Sprintf("key-%010d", r.IntN(100000)))
					if _, err := w.Put(&pb.PutRequest{Key: k, Value: val}); err != nil {
						b.Fatal(err)
					}
				})
			}
		})
	}
}
