package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func snapMsg(from, to, index uint64) *raftpb.Message {
	return &raftpb.Message{
		Type: raftpb.MessageType_MsgSnap.Enum(), From: proto.Uint64(from), To: proto.Uint64(to),
		Term: proto.Uint64(2),
		Snapshot: &raftpb.Snapshot{
			Data:     []byte("meta"),
			Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(index), Term: proto.Uint64(2)},
		},
	}
}

func randomState(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func opener(state []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(state)), nil }
}

func TestSnapshotTransferArrivesBeforeRaftSeesIt(t *testing.T) {
	checkGoroutines(t)
	a := startNode(t, 1, testCluster, "127.0.0.1:0", func(c *Config) { c.SnapshotChunkSize = 256 << 10 })
	b := startNode(t, 2, testCluster, "127.0.0.2:0")
	state := randomState(5<<20 + 123)
	sinkHadIt := make(chan bool, 1)
	b.raft.onProcess = func(m *raftpb.Message) error {
		if m.GetType() == raftpb.MessageType_MsgSnap {
			got, ok := b.sink.get(m.GetSnapshot().GetMetadata().GetIndex())
			sinkHadIt <- ok && bytes.Equal(got, state)
		}
		return nil
	}
	connect(a, b)
	a.tr.SendSnapshot(snapMsg(1, 2, 100), opener(state))
	select {
	case ok := <-sinkHadIt:
		if !ok {
			t.Fatal("raft got the MsgSnap before the sink held the whole, intact state")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("MsgSnap never reached raft")
	}
	waitFor(t, 5*time.Second, "SnapshotFinish", func() bool { return a.raft.snapCount(raft.SnapshotFinish) == 1 })
	if a.raft.snapCount(raft.SnapshotFailure) != 0 {
		t.Fatal("snapshot reported failed")
	}
	got := b.raft.from(1)
	if len(got) != 1 || !proto.Equal(got[0], snapMsg(1, 2, 100)) {
		t.Fatalf("raft got %v", got)
	}
}

func TestCorruptedSnapshotRejected(t *testing.T) {
	checkGoroutines(t)
	a := startNode(t, 1, testCluster, "127.0.0.1:0", func(c *Config) { c.SnapshotChunkSize = 64 << 10 })
	b := startNode(t, 2, testCluster, "127.0.0.2:0")
	chunks := 0
	a.tr.corruptChunk = func(c []byte) { // flips one bit of the third chunk in transit
		chunks++
		if chunks == 3 {
			c[17] ^= 0x04
		}
	}
	connect(a, b)
	a.tr.SendSnapshot(snapMsg(1, 2, 100), opener(randomState(1<<20)))
	waitFor(t, 10*time.Second, "SnapshotFailure", func() bool { return a.raft.snapCount(raft.SnapshotFailure) == 1 })
	errs := b.sink.errors()
	if len(errs) != 1 || !errors.Is(errs[0], ErrSnapshotChecksum) {
		t.Fatalf("sink errors %v, want one ErrSnapshotChecksum", errs)
	}
	if _, ok := b.sink.get(100); ok {
		t.Fatal("sink kept a corrupt snapshot")
	}
	if len(b.raft.from(1)) != 0 {
		t.Fatal("raft saw the MsgSnap of a corrupt snapshot")
	}
	if a.raft.snapCount(raft.SnapshotFinish) != 0 {
		t.Fatal("corrupt snapshot reported finished")
	}
}

func TestSnapshotToUnknownPeerFails(t *testing.T) {
	checkGoroutines(t)
	a := startNode(t, 1, testCluster, "127.0.0.1:0")
	a.tr.SendSnapshot(snapMsg(1, 5, 1), opener([]byte("x")))
	if a.raft.snapCount(raft.SnapshotFailure) != 1 || a.raft.unreachableCount(5) != 1 {
		t.Fatal("snapshot to an unknown peer not reported as failed and unreachable")
	}
}

func TestSnapshotOpenErrorFails(t *testing.T) {
	checkGoroutines(t)
	a := startNode(t, 1, testCluster, "127.0.0.1:0")
	b := startNode(t, 2, testCluster, "127.0.0.2:0")
	connect(a, b)
	a.tr.SendSnapshot(snapMsg(1, 2, 1), func() (io.ReadCloser, error) { return nil, fmt.Errorf("disk gone") })
	waitFor(t, 5*time.Second, "SnapshotFailure", func() bool { return a.raft.snapCount(raft.SnapshotFailure) == 1 })
}

// lazySink returns without reading the stream.
type lazySink struct{}

func (lazySink) ReceiveSnapshot(_ context.Context, _ *raftpb.Message, _ io.Reader) error { return nil }

func TestSinkMustConsumeTheStream(t *testing.T) {
	checkGoroutines(t)
	a := startNode(t, 1, testCluster, "127.0.0.1:0")
	b := startNode(t, 2, testCluster, "127.0.0.2:0", func(c *Config) { c.Snapshots = lazySink{} })
	connect(a, b)
	a.tr.SendSnapshot(snapMsg(1, 2, 1), opener(randomState(100<<10)))
	waitFor(t, 5*time.Second, "SnapshotFailure", func() bool { return a.raft.snapCount(raft.SnapshotFailure) == 1 })
	if len(b.raft.from(1)) != 0 {
		t.Fatal("raft saw a MsgSnap whose state was not stored")
	}
}

func TestSnapshotReaderTruncated(t *testing.T) {
	var buf bytes.Buffer
	tr := &Transport{cfg: Config{SnapshotChunkSize: 10}}
	if _, err := tr.writeSnapshot(&buf, nil, bytes.NewReader(randomState(35))); err != nil {
		t.Fatal(err)
	}
	full := buf.Bytes()
	got, err := io.ReadAll(&snapshotReader{r: bytes.NewReader(full)})
	if err != nil || !bytes.Equal(got, randomState(35)) {
		t.Fatalf("intact stream: %v", err)
	}
	for _, cut := range []int{0, 3, 14, len(full) - 5, len(full) - 1} {
		_, err := io.ReadAll(&snapshotReader{r: bytes.NewReader(full[:cut])})
		if !errors.Is(err, ErrSnapshotCorrupt) {
			t.Errorf("cut at %d: %v, want ErrSnapshotCorrupt", cut, err)
		}
	}
}

func FuzzSnapshotReader(f *testing.F) {
	var buf bytes.Buffer
	tr := &Transport{cfg: Config{SnapshotChunkSize: 7}}
	if _, err := tr.writeSnapshot(&buf, nil, bytes.NewReader([]byte("some state bytes"))); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		sr := &snapshotReader{r: bytes.NewReader(b)}
		_, err := io.ReadAll(sr)
		switch {
		case err == nil:
			if !sr.verified {
				t.Fatal("clean end without a verified trailer")
			}
		case !errors.Is(err, ErrSnapshotCorrupt) && !errors.Is(err, ErrSnapshotChecksum):
			t.Fatalf("unexpected error kind: %v", err)
		}
	})
}
