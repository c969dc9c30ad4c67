package v3rpc

import (
	"context"
	"net"
	"net/http"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairn-kv/cairn/internal/connmux"
)

// fakeKV answers every Range with one fixed key; only the serving path
// differs between the benchmarks below.
type fakeKV struct {
	Backend // methods the benchmark never calls
}

func (fakeKV) ClusterID() uint64 { return 1 }
func (fakeKV) ID() uint64        { return 2 }
func (fakeKV) Leader() uint64    { return 2 }
func (fakeKV) IsLearner() bool   { return false }
func (fakeKV) Term() uint64      { return 3 }
func (fakeKV) Health(context.Context, bool) string {
	return ""
}
func (fakeKV) Range(context.Context, *pb.RangeRequest) (*pb.RangeResponse, error) {
	return &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: 7}, Count: 1}, nil
}
func (fakeKV) Put(context.Context, *pb.PutRequest) (*pb.PutResponse, error) {
	return &pb.PutResponse{}, nil
}
func (fakeKV) DeleteRange(context.Context, *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	return &pb.DeleteRangeResponse{}, nil
}
func (fakeKV) Txn(context.Context, *pb.TxnRequest) (*pb.TxnResponse, error) {
	return &pb.TxnResponse{}, nil
}
func (fakeKV) Compact(context.Context, *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	return &pb.CompactionResponse{}, nil
}

func benchRange(b *testing.B, addr string) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	kv := pb.NewKVClient(conn)
	req := &pb.RangeRequest{Key: []byte("k")}
	if _, err := kv.Range(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := kv.Range(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGRPCServe: connmux then grpc.Server.Serve
// (--grpc-server=grpc-go).
func BenchmarkGRPCServe(b *testing.B) {
	benchServe(b, Config{MaxRequestBytes: 1 << 20, GRPCGo: true})
}

// BenchmarkLeanGRPCServe: the path cairn uses by default, connmux then
// internal/h2rpc's Serve.
func BenchmarkLeanGRPCServe(b *testing.B) {
	benchServe(b, Config{MaxRequestBytes: 1 << 20})
}

func benchServe(b *testing.B, cfg Config) {
	api := New(cfg, fakeKV{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	m := connmux.New(ln)
	go m.Serve()
	go api.GRPC().Serve(m.HTTP2())
	defer api.GRPC().Stop()
	defer m.Close()
	benchRange(b, ln.Addr().String())
}

// BenchmarkGRPCServeHTTP: the alternative, gRPC through net/http's HTTP/2
// server (grpc.Server.ServeHTTP).
func BenchmarkGRPCServeHTTP(b *testing.B) {
	api := New(Config{MaxRequestBytes: 1 << 20}, fakeKV{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: api.GRPC().(*grpc.Server)}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv.Protocols = &p
	go srv.Serve(ln)
	defer srv.Close()
	benchRange(b, ln.Addr().String())
}
