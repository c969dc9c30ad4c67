package v3rpc

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"

	"github.com/cairn-kv/cairn/internal/h2rpc"
	"github.com/cairn-kv/cairn/server"
	"github.com/cairn-kv/cairn/server/config"
)

// Member is what every service needs: identity for response headers.
type Member interface {
	ClusterID() uint64
	ID() uint64
	Term() uint64
}

// KVBackend is the member's key-value side.
type KVBackend interface {
	Member
	Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error)
	Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error)
	DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error)
	Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error)
	Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error)
}

// HealthBackend answers health checks.
type HealthBackend interface {
	// Health reports "" when the member is healthy, else the reason.
	Health(ctx context.Context, linearizable bool) string
}

// Backend is everything the API needs from a member; *server.Server
// implements it.
type Backend interface {
	KVBackend
	HealthBackend
	ClusterBackend
	MaintenanceBackend
	ProbeBackend
	CoordBackend
	LeaseBackend
	WatchBackend
}

// Config configures the API.
type Config struct {
	// MaxRequestBytes bounds a request; gRPC accepts a little more so the
	// member can answer with etcd's "request is too large" error.
	MaxRequestBytes uint
	// MaxTxnOps bounds the operations of one txn (etcd's --max-txn-ops).
	MaxTxnOps int
	// WatchProgressNotifyInterval is the period of progress notifications
	// to watches that ask for them (etcd's --watch-progress-notify-interval).
	WatchProgressNotifyInterval time.Duration
	Logger                      *slog.Logger
	// Metrics, if set, is served at /metrics and receives the gRPC request
	// counters.
	Metrics *prometheus.Registry
	// GRPCGo serves gRPC on grpc-go's server instead of internal/h2rpc,
	// cairn's own transport (--grpc-server=grpc-go).
	GRPCGo bool
	// ElectionTimeout paces the checks that end streams requiring a leader
	// (guard.go); the member's default (config.DefaultElectionTimeout) if
	// zero.
	ElectionTimeout time.Duration
}

// RPCServer is the gRPC server the API's services are registered on:
// internal/h2rpc's, or grpc-go's with Config.GRPCGo.
type RPCServer interface {
	grpc.ServiceRegistrar
	GetServiceInfo() map[string]grpc.ServiceInfo
	Serve(net.Listener) error
	Stop()
}

// grpcOverheadBytes is what gRPC may receive beyond MaxRequestBytes.
const grpcOverheadBytes = 512 * 1024

// DefaultMaxTxnOps is etcd's default limit of operations per txn.
const DefaultMaxTxnOps = 128

// API is the client-facing side of one member.
type API struct {
	cfg  Config
	b    Backend
	grpc RPCServer
	http *http.ServeMux
	gw   *gateway
}

// streamWorkers is the number of goroutines gRPC keeps to run streams on.
const streamWorkers = 256

// New builds the gRPC server and HTTP handler for b.
func New(cfg Config, b Backend) *API {
	if cfg.MaxTxnOps <= 0 {
		cfg.MaxTxnOps = DefaultMaxTxnOps
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.WatchProgressNotifyInterval <= 0 {
		cfg.WatchProgressNotifyInterval = DefaultWatchProgressNotifyInterval
	}
	if cfg.ElectionTimeout <= 0 {
		cfg.ElectionTimeout = config.DefaultElectionTimeout
	}
	a := &API{cfg: cfg, b: b}
	// The learner and leader checks (guard.go) come first, as in etcd: a
	// call they refuse is not counted in the gRPC metrics.
	metricsUnary, metricsStream, initMetrics := a.grpcMetrics()
	guard := &callGuard{leader: b.Leader, learner: b.IsLearner, interval: cfg.ElectionTimeout, nextUnary: metricsUnary, nextStream: metricsStream}
	unaryIn, streamIn := guard.unary, guard.stream
	if cfg.GRPCGo {
		opts := []grpc.ServerOption{
			grpc.MaxRecvMsgSize(int(cfg.MaxRequestBytes) + grpcOverheadBytes),
			grpc.MaxSendMsgSize(math.MaxInt32),
			grpc.MaxConcurrentStreams(math.MaxUint32),
			// Run streams on reused goroutines: a fresh goroutine per RPC
			// grew its stack through several copies on every call
			// (newstack was 8% of a 64-client put profile). Streams beyond
			// streamWorkers at once (long-lived watches, keep-alives) get
			// fresh goroutines.
			grpc.NumStreamWorkers(streamWorkers),
		}
		opts = append(opts, grpc.ChainUnaryInterceptor(unaryIn), grpc.ChainStreamInterceptor(streamIn))
		a.grpc = grpc.NewServer(opts...)
	} else {
		opts := []h2rpc.Option{
			h2rpc.MaxRecvMsgSize(int(cfg.MaxRequestBytes) + grpcOverheadBytes),
			h2rpc.MaxSendMsgSize(math.MaxInt32),
		}
		opts = append(opts, h2rpc.ChainUnaryInterceptor(unaryIn), h2rpc.ChainStreamInterceptor(streamIn))
		a.grpc = h2rpc.NewServer(opts...)
	}
	pb.RegisterKVServer(a.grpc, &kvServer{a: a})
	pb.RegisterClusterServer(a.grpc, &clusterServer{a: a, b: b})
	pb.RegisterMaintenanceServer(a.grpc, &maintenanceServer{a: a, b: b})
	pb.RegisterLeaseServer(a.grpc, &leaseServer{a: a, b: b})
	pb.RegisterWatchServer(a.grpc, &watchServer{a: a})
	a.http = http.NewServeMux()
	a.http.HandleFunc("/health", a.serveHealth)
	a.http.HandleFunc("/version", serveVersion)
	a.installProbes()
	a.registerCoord()
	// After every service is registered, so each gets its counters.
	initMetrics(a.grpc)
	return a
}

// GRPC returns the gRPC server to serve on the client listener.
func (a *API) GRPC() RPCServer { return a.grpc }

// HTTP returns the handler for plain HTTP on the client listener.
func (a *API) HTTP() http.Handler { return a.http }

// header builds a response header; revision is the store revision the
// response reflects.
func (a *API) header(revision int64) *pb.ResponseHeader {
	return &pb.ResponseHeader{
		ClusterId: a.b.ClusterID(), MemberId: a.b.ID(), RaftTerm: a.b.Term(), Revision: revision,
	}
}

// fillHeader completes a header that the store already gave a revision.
func (a *API) fillHeader(h **pb.ResponseHeader) {
	rev := int64(0)
	if *h != nil {
		rev = (*h).Revision
	}
	*h = a.header(rev)
}

func serveVersion(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"etcdserver": server.Version, "etcdcluster": server.Version})
}

// serveHealth answers like etcd's /health: healthy when a leader is known
// and a linearizable read succeeds (?serializable=true skips the read).
func (a *API) serveHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	reason := a.b.Health(r.Context(), r.URL.Query().Get("serializable") != "true")
	if reason != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]string{"health": "false", "reason": reason})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]string{"health": "true", "reason": ""})
}
