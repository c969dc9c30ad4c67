package v3rpc

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
)

// counterValue returns the value of the counter name whose labels include
// every label=value pair in want, or -1 if there is none.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

// The RPC counters carry etcd's names and labels, exist at 0 before the
// first call, and count calls, codes and stream messages.
func TestRPCMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	ta := startTestAPIWith(t, Config{MaxRequestBytes: 1 << 20, Metrics: reg})
	rangeOK := map[string]string{"grpc_type": "unary", "grpc_service": "etcdserverpb.KV", "grpc_method": "Range", "grpc_code": "OK"}
	if v := counterValue(t, reg, "grpc_server_handled_total", rangeOK); v != 0 {
		t.Fatalf("Range OK before any call: %v, want 0 (pre-created)", v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv := pb.NewKVClient(ta.conn)
	for range 3 {
		if _, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kv.Range(ctx, &pb.RangeRequest{}); err == nil {
		t.Fatal("empty key accepted")
	}
	// A server stream: observe an election after a campaign (its lease is
	// one the fake accepts).
	ec := v3electionpb.NewElectionClient(ta.conn)
	if _, err := ec.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("e"), Lease: 0xa, Value: []byte("v")}); err != nil {
		t.Fatal(err)
	}
	obs, err := ec.Observe(ctx, &v3electionpb.LeaderRequest{Name: []byte("e")})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := obs.Recv(); err != nil || string(r.Kv.Value) != "v" {
		t.Fatalf("observe: %v %v", r, err)
	}
	watch := map[string]string{"grpc_type": "server_stream", "grpc_service": "v3electionpb.Election", "grpc_method": "Observe"}
	// The server counts a message after handing it on; poll briefly.
	deadline := time.Now().Add(5 * time.Second)
	for counterValue(t, reg, "grpc_server_msg_received_total", watch) != 1 || counterValue(t, reg, "grpc_server_msg_sent_total", watch) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("observe messages: received %v sent %v, want 1 and 1",
				counterValue(t, reg, "grpc_server_msg_received_total", watch), counterValue(t, reg, "grpc_server_msg_sent_total", watch))
		}
		time.Sleep(5 * time.Millisecond)
	}
	rangeLabels := map[string]string{"grpc_type": "unary", "grpc_service": "etcdserverpb.KV", "grpc_method": "Range"}
	rangeBad := map[string]string{"grpc_method": "Range", "grpc_code": "InvalidArgument"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"grpc_server_started_total", rangeLabels, 4},
		{"grpc_server_msg_received_total", rangeLabels, 4},
		{"grpc_server_msg_sent_total", rangeLabels, 3},
		{"grpc_server_handled_total", rangeOK, 3},
		{"grpc_server_handled_total", rangeBad, 1},
		{"grpc_server_started_total", watch, 1},
	} {
		if v := counterValue(t, reg, c.name, c.labels); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	cancel()
	// The canceled stream ends with one handled code.
	deadline = time.Now().Add(5 * time.Second)
	for {
		var n float64
		for _, code := range []string{"Canceled", "OK", "Unavailable"} {
			if v := counterValue(t, reg, "grpc_server_handled_total", map[string]string{"grpc_method": "Observe", "grpc_code": code}); v > 0 {
				n += v
			}
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("observe stream end counted %v times", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
