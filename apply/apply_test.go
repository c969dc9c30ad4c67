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
