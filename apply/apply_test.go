package apply

import (
	"bytes"
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

type fakeKV struct {
	calls []string
	err   error
}

func (f *fakeKV) Put(r *pb.PutRequest) (*pb.PutResponse, error) {
	f.calls = append(f.calls, "put "+string(r.Key))
	if f.err != nil {
		return nil, f.err
	}
	return &pb.PutResponse{}, nil
}

func (f *fakeKV) DeleteRange(r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	f.calls = append(f.calls, "del "+string(r.Key))
	return &pb.DeleteRangeResponse{Deleted: 1}, f.err
}

func (f *fakeKV) Txn(*pb.TxnRequest) (*pb.TxnResponse, error) {
	f.calls = append(f.calls, "txn")
	return &pb.TxnResponse{Succeeded: true}, f.err
}

func (f *fakeKV) Compact(rev int64) (*pb.CompactionResponse, error) {
	f.calls = append(f.calls, "compact")
	return &pb.CompactionResponse{}, f.err
}

func TestEncodeDecodeDispatch(t *testing.T) {
	reqs := []*pb.InternalRaftRequest{
		{Header: &pb.RequestHeader{ID: 1}, Put: &pb.PutRequest{Key: []byte("a")}},
		{Header: &pb.RequestHeader{ID: 2}, DeleteRange: &pb.DeleteRangeRequest{Key: []byte("b")}},
		{Header: &pb.RequestHeader{ID: 3}, Txn: &pb.TxnRequest{}},
		{Header: &pb.RequestHeader{ID: 4}, Compaction: &pb.CompactionRequest{Revision: 3}},
	}
	kv := &fakeKV{}
	for i, r := range reqs {
		b, err := Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if RequestID(d) != uint64(i+1) {
			t.Fatalf("RequestID = %d, want %d", RequestID(d), i+1)
		}
		if res := Apply(kv, d); res.Err != nil || res.Resp == nil {
			t.Fatalf("request %d: %+v", i, res)
		}
	}
	want := []string{"put a", "del b", "txn", "compact"}
	if len(kv.calls) != len(want) {
		t.Fatalf("calls = %v", kv.calls)
	}
	for i := range want {
		if kv.calls[i] != want[i] {
			t.Fatalf("calls = %v, want %v", kv.calls, want)
		}
	}
}

func TestApplyErrorsAndUnknown(t *testing.T) {
	boom := errors.New("boom")
	kv := &fakeKV{err: boom}
	res := Apply(kv, &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k")}})
	if !errors.Is(res.Err, boom) || res.Resp != nil {
		t.Fatalf("failed put result = %+v", res)
	}
	res = Apply(kv, &pb.InternalRaftRequest{})
	if !errors.Is(res.Err, ErrUnknownRequest) {
		t.Fatalf("empty request result = %+v", res)
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	if _, err := Decode([]byte{0xff, 0xff, 0xff}); err == nil {
		t.Fatal("garbage decoded")
	}
}

func TestConfChangeOutcomeKeysOrdered(t *testing.T) {
	a, b := ConfChangeOutcomeKey(255), ConfChangeOutcomeKey(256)
	if bytes.Compare(a, b) >= 0 || a[0] != 'C' {
		t.Fatalf("keys %q %q not ordered under C", a, b)
	}
}

func FuzzDecode(f *testing.F) {
	b, _ := Encode(&pb.InternalRaftRequest{Header: &pb.RequestHeader{ID: 9}, Put: &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}})
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Decode(data)
		if err != nil {
			return
		}
		// Whatever decodes must dispatch without panicking.
		_ = Apply(&fakeKV{}, r)
		if _, err := Encode(r); err != nil {
			t.Fatalf("decoded request does not re-encode: %v", err)
		}
	})
}

func TestPeekIDMatchesDecode(t *testing.T) {
	big := make([]byte, 70000)
	cases := []struct {
		r    *pb.InternalRaftRequest
		want uint64
		ok   bool
	}{
		{&pb.InternalRaftRequest{Header: &pb.RequestHeader{ID: 1 << 60}, Put: &pb.PutRequest{Key: []byte("k"), Value: big}}, 1 << 60, true},
		{&pb.InternalRaftRequest{Header: &pb.RequestHeader{ID: 7, Username: "u", AuthRevision: 3}, Txn: &pb.TxnRequest{}}, 7, true},
		{&pb.InternalRaftRequest{ID: 5, Put: &pb.PutRequest{Key: []byte("k")}}, 0, false}, // legacy top-level ID only
		{&pb.InternalRaftRequest{Header: &pb.RequestHeader{}, Put: &pb.PutRequest{Key: []byte("k")}}, 0, false},
		{&pb.InternalRaftRequest{}, 0, false},
	}
	for i, c := range cases {
		b, err := Encode(c.r)
		if err != nil {
			t.Fatal(err)
		}
		id, ok := PeekID(b)
		if id != c.want || ok != c.ok {
			t.Fatalf("case %d: PeekID = %d, %v; want %d, %v", i, id, ok, c.want, c.ok)
		}
	}
	// A second header field merges into the first: the later ID wins.
	a, _ := Encode(&pb.InternalRaftRequest{Header: &pb.RequestHeader{ID: 1}})
	b, _ := Encode(&pb.InternalRaftRequest{Header: &pb.RequestHeader{ID: 2}})
	two := append(append([]byte(nil), a...), b...)
	if id, ok := PeekID(two); id != 2 || !ok {
		t.Fatalf("two headers: %d %v", id, ok)
	}
	if id, ok := PeekID(a[:len(a)-1]); ok {
		t.Fatalf("truncated: %d %v", id, ok)
	}
}

// PeekID never panics, and whenever both it finds an ID and the bytes
// decode, the decoded request has that RequestID. (It skips fields without
// checking their insides, so it may find an ID in bytes that do not decode;
// the applier uses it only to look up its own proposals, whose bytes it
// encoded.)
func FuzzPeekID(f *testing.F) {
	b, _ := Encode(&pb.InternalRaftRequest{Header: &pb.RequestHeader{ID: 9}, Put: &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}})
	f.Add(b)
	f.Add([]byte{})
	f.Add(append(b, b...))
	f.Fuzz(func(t *testing.T, data []byte) {
		id, ok := PeekID(data)
		if !ok {
			return
		}
		r, err := Decode(data)
		if err != nil {
			return
		}
		if RequestID(r) != id {
			t.Fatalf("PeekID %d, RequestID %d", id, RequestID(r))
		}
	})
}
