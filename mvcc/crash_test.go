package mvcc

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/backend"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

const crashDirEnv = "CAIRN_MVCC_CRASH_DIR"

// crashOp is the request applied at Raft index i: a pure function of i and
// the revisions, so the parent can recompute the state of any index.
func crashOp(i uint64, rev, compactRev int64) proto.Message {
	key := []byte(fmt.Sprintf("k%02d", i%50))
	switch {
	case i%37 == 0 && rev-20 > compactRev:
		return &pb.CompactionRequest{Revision: rev - 20}
	case i%10 == 0:
		return &pb.DeleteRangeRequest{Key: key, RangeEnd: []byte(fmt.Sprintf("k%02d", i%50+3))}
	case i%11 == 0:
		return &pb.TxnRequest{
			Compare: []*pb.Compare{{Key: key, Target: pb.Compare_VERSION, Result: pb.Compare_GREATER, TargetUnion: &pb.Compare_Version{Version: 1}}},
			Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("t"), Value: key}}}},
			Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: key}}}},
		}
	}
	return &pb.PutRequest{Key: key, Value: []byte(fmt.Sprintf("v%d", i))}
}

type crashApplier interface {
	Put(*pb.PutRequest) (*pb.PutResponse, error)
	DeleteRange(*pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error)
	Txn(*pb.TxnRequest) (*pb.TxnResponse, error)
	Compact(int64) (*pb.CompactionResponse, error)
}

func applyCrashOp(a crashApplier, op proto.Message) error {
	var err error
	switch r := op.(type) {
	case *pb.PutRequest:
		_, err = a.Put(r)
	case *pb.DeleteRangeRequest:
		_, err = a.DeleteRange(r)
	case *pb.TxnRequest:
		_, err = a.Txn(r)
	case *pb.CompactionRequest:
		_, err = a.Compact(r.Revision)
	}
	return err
}

// TestCrashChild is the child process of TestCrashRecovery: it applies
// crashOp in batches of three indexes until killed, printing each committed
// index and, every 30 batches, "s" and the index Sync made durable.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestCrashRecovery")
	}
	be, err := backend.Open(dir, backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(be, Options{CompactionChunk: 5})
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	for i := be.AppliedIndex(); ; {
		bt := be.NewBatch()
		w := s.Write(bt)
		for n := 0; n < 3; n++ {
			i++
			if err := applyCrashOp(w, crashOp(i, w.Rev(), w.compactRev)); err != nil {
				t.Fatalf("index %d: %v", i, err)
			}
		}
		if err := bt.Commit(i); err != nil {
			t.Fatal(err)
		}
		if _, err := w.End(); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(out, i)
		if i%90 == 0 {
			// As the Raft layer does before releasing WAL segments.
			synced, err := be.Sync()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(out, "s%d\n", synced)
		}
		out.Flush()
	}
}

// TestCrashRecovery kills a writing child with SIGKILL several times and
// checks each time that the reopened store holds exactly the state of the
// applied index it recorded.
func TestCrashRecovery(t *testing.T) {
	dir := t.TempDir()
	m := newModel()
	var modelIndex uint64
	for round := 0; round < 3; round++ {
		synced := runAndKillChild(t, dir, modelIndex+150+uint64(round)*97)
		be, err := backend.Open(dir, backend.Options{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(be, Options{})
		if err != nil {
			t.Fatal(err)
		}
		applied := be.AppliedIndex()
		// Commits are not fsynced and Pebble writes its WAL from a background
		// flusher, so a kill may lose the newest batches, never a synced one.
		if applied%3 != 0 || applied < synced {
			t.Fatalf("round %d: applied index %d (batches end at multiples of 3, synced %d)", round, applied, synced)
		}
		for ; modelIndex < applied; modelIndex++ {
			_ = applyCrashOp(m, crashOp(modelIndex+1, m.rev, m.compactRev))
		}
		compareWithModel(t, s, m)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := s.WaitCompaction(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		compareWithModel(t, s, m)
		_ = s.Close()
		_ = be.Close()
		t.Logf("round %d: applied index %d, rev %d, compact rev %d", round, applied, m.rev, m.compactRev)
	}
}

func compareWithModel(t *testing.T, s *Store, m *model) {
	t.Helper()
	if s.Rev() != m.rev || s.CompactRev() != m.compactRev {
		t.Fatalf("rev %d compact %d, model %d %d", s.Rev(), s.CompactRev(), m.rev, m.compactRev)
	}
	for _, rev := range []int64{0, m.compactRev, (m.rev + m.compactRev) / 2} {
		r := &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev}
		got, err := s.Range(context.Background(), r)
		want, werr := m.Range(r)
		check(t, "range after crash", r, got, err, want, werr)
	}
}

// runAndKillChild starts the child and kills it a few batches after it
// reports a synced index of at least minIndex, which it returns.
func runAndKillChild(t *testing.T, dir string, minIndex uint64) uint64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Wait() }()
	defer func() { _ = cmd.Process.Kill() }()
	sc := bufio.NewScanner(stdout)
	deadline := time.Now().Add(60 * time.Second)
	var synced uint64
	after := -1
	for sc.Scan() {
		line := sc.Text()
		if len(line) > 1 && line[0] == 's' {
			if idx, err := strconv.ParseUint(line[1:], 10, 64); err == nil && idx >= minIndex && synced == 0 {
				synced, after = idx, 5+int(minIndex%40)
			}
			continue
		}
		if synced != 0 {
			after--
		}
		if after == 0 {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			go func() { _, _ = bufio.NewReader(stdout).WriteTo(discard{}) }()
			return synced
		}
		if time.Now().After(deadline) {
			t.Fatal("child too slow")
		}
	}
	t.Fatalf("child exited before index %d: %v", minIndex, sc.Err())
	return 0
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
