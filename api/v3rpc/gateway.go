package v3rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/tmc/grpc-websocket-proxy/wsproxy"
	gw "go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	electiongw "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb/gw"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	lockgw "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb/gw"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// The JSON gateway serves every gRPC service as POST /v3/<service>/<method>
// with the request message as JSON (protojson with the .proto field names:
// bytes as base64, 64-bit integers as strings, unset fields omitted), the
// same paths and encoding as etcd's gateway, which is generated with
// grpc-gateway (we use etcd's generated handlers as a library). Streams
// (watch, lease keepalive, election observe) answer with one JSON object
// per line, {"result": ...}, or {"error": ...} at the end; websocket
// clients are served too, as by etcd. Errors are the gRPC status as JSON,
// {"code": 3, "message": "etcdserver: key is not provided"}, with the HTTP
// status that grpc-gateway maps the code to (etcd 3.6 and later; etcd 3.5
// and older, on grpc-gateway v1, also sent an "error" field).
//
// The handlers call the member's own gRPC server over a client connection
// to the member's first client address (as etcd does), set up on the first
// request because the address is known only once the member listens. The
// gateway thus goes through exactly the code paths of gRPC clients,
// streams included.

// AddrBackend tells where the member serves clients.
type AddrBackend interface {
	// ClientAddrs returns the addresses the member listens on for clients;
	// empty before it listens.
	ClientAddrs() []net.Addr
}

// errGatewayNotReady answers gateway requests before the member listens.
var errGatewayNotReady = status.Error(codes.Unavailable, "v3rpc: gateway: member is not serving clients yet")

// gateway is the /v3/ handler.
type gateway struct {
	addrs        AddrBackend
	maxSendBytes int
	log          *slog.Logger

	mu     sync.Mutex
	h      http.Handler     // guarded by mu: built on first use
	conn   *grpc.ClientConn // guarded by mu: the connection h uses
	closed bool             // guarded by mu
}

// gatewayMarshaler encodes messages like etcd's gateway: JSON with the
// .proto field names, unset fields omitted, unknown input fields ignored.
func gatewayMarshaler() runtime.Marshaler {
	return &runtime.HTTPBodyMarshaler{Marshaler: &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
	}}
}

func (g *gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rest, ok := strings.CutPrefix(r.URL.Path, "/v3beta/"); ok {
		r.URL.Path = "/v3/" + rest // etcd still accepts the beta prefix
	}
	h, err := g.handler()
	if err != nil {
		runtime.DefaultHTTPErrorHandler(r.Context(), runtime.NewServeMux(), gatewayMarshaler(), w, r, err)
		return
	}
	h.ServeHTTP(w, r)
}

// handler returns the gateway, dialing the member on first use.
func (g *gateway) handler() (http.Handler, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.h != nil {
		return g.h, nil
	}
	if g.closed {
		return nil, status.Error(codes.Unavailable, "v3rpc: gateway: closed")
	}
	target, err := dialTarget(g.addrs.ClientAddrs())
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(g.maxSendBytes)),
	)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "v3rpc: gateway: dial %s: %v", target, err)
	}
	mux := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, gatewayMarshaler()))
	for _, register := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		gw.RegisterKVHandler, gw.RegisterWatchHandler, gw.RegisterLeaseHandler,
		gw.RegisterClusterHandler, gw.RegisterMaintenanceHandler, gw.RegisterAuthHandler,
		lockgw.RegisterLockHandler, electiongw.RegisterElectionHandler,
	} {
		if err := register(context.Background(), mux, conn); err != nil {
			_ = conn.Close()
			return nil, status.Errorf(codes.Internal, "v3rpc: gateway: register: %v", err)
		}
	}
	g.log.Info("JSON gateway connected to the member", "target", target)
	g.conn = conn
	g.h = wsproxy.WebsocketProxy(mux,
		// Browsers open websockets with GET; the gateway routes are POST.
		wsproxy.WithRequestMutator(func(_ *http.Request, out *http.Request) *http.Request {
			out.Method = http.MethodPost
			return out
		}),
		wsproxy.WithMaxRespBodyBufferSize(math.MaxInt32),
		wsproxy.WithLogger(wsLogger{g.log}),
	)
	return g.h, nil
}

// dialTarget picks the address to dial: the first TCP client address, with
// an unspecified IP (listening on all interfaces) replaced by loopback.
func dialTarget(addrs []net.Addr) (string, error) {
	for _, a := range addrs {
		ta, ok := a.(*net.TCPAddr)
		if !ok {
			continue
		}
		ip := ta.IP
		switch {
		case ip == nil || ip.Equal(net.IPv4zero):
			ip = net.IPv4(127, 0, 0, 1)
		case ip.Equal(net.IPv6unspecified):
			ip = net.IPv6loopback
		}
		return net.JoinHostPort(ip.String(), fmt.Sprint(ta.Port)), nil
	}
	return "", errGatewayNotReady
}

// close closes the connection to the member; later requests fail.
func (g *gateway) close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	g.h = nil
	if g.conn == nil {
		return nil
	}
	err := g.conn.Close()
	g.conn = nil
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// wsLogger adapts slog to the websocket proxy's logger.
type wsLogger struct{ l *slog.Logger }

func (w wsLogger) Warnln(v ...any)  { w.l.Warn(fmt.Sprint(v...)) }
func (w wsLogger) Debugln(v ...any) { w.l.Debug(fmt.Sprint(v...)) }

// CoordBackend is what the JSON gateway and the Lock and Election services
// need from the member besides KV.
type CoordBackend interface {
	AddrBackend
	HistoryBackend
}

// registerCoord registers the Lock and Election services and mounts the
// JSON gateway on /v3/ (and etcd's old /v3beta/).
func (a *API) registerCoord() {
	kv := &kvServer{a: a}
	c := &coordinator{kv: kv, w: historyWaiter{a.b}}
	if g, ok := a.b.(LeaseGranter); ok {
		c.grant = g
	}
	v3lockpb.RegisterLockServer(a.grpc, &lockServer{c: c})
	v3electionpb.RegisterElectionServer(a.grpc, &electionServer{c: c, header: a.header})
	a.gw = &gateway{
		addrs:        a.b,
		maxSendBytes: int(a.cfg.MaxRequestBytes) + grpcOverheadBytes,
		log:          a.cfg.Logger.With("component", "gateway"),
	}
	a.http.Handle("/v3/", a.gw)
	a.http.Handle("/v3beta/", a.gw)
}

// Close releases the gateway's connection to the member. Call it after the
// member stopped serving.
func (a *API) Close() error { return a.gw.close() }
