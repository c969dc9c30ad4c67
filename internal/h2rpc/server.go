package h2rpc

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/status"
)

// ErrServerStopped is returned by Serve after Stop or GracefulStop.
var ErrServerStopped = errors.New("h2rpc: server stopped")

// Option configures a Server.
type Option func(*options)

type options struct {
	maxRecv, maxSend int
	unary            []grpc.UnaryServerInterceptor
	stream           []grpc.StreamServerInterceptor
}

// MaxRecvMsgSize bounds a received message (default 4 MiB, as grpc-go's).
func MaxRecvMsgSize(n int) Option { return func(o *options) { o.maxRecv = n } }

// MaxSendMsgSize bounds a sent message (default: no bound below 2 GiB).
func MaxSendMsgSize(n int) Option { return func(o *options) { o.maxSend = n } }

// ChainUnaryInterceptor adds unary interceptors; the first is outermost.
func ChainUnaryInterceptor(in ...grpc.UnaryServerInterceptor) Option {
	return func(o *options) { o.unary = append(o.unary, in...) }
}

// ChainStreamInterceptor adds stream interceptors; the first is outermost.
func ChainStreamInterceptor(in ...grpc.StreamServerInterceptor) Option {
	return func(o *options) { o.stream = append(o.stream, in...) }
}

// method is one registered method.
type method struct {
	impl   any
	unary  *grpc.MethodDesc
	stream *grpc.StreamDesc
}

// Server serves registered gRPC services over plaintext HTTP/2.
type Server struct {
	opts  options
	codec encoding.CodecV2
	// methods by full path ("/pkg.Service/Method"); written only before
	// Serve.
	methods  map[string]*method
	services map[string]grpc.ServiceInfo
	unaryIn  grpc.UnaryServerInterceptor
	streamIn grpc.StreamServerInterceptor
	work     chan func()
	idle     atomic.Int32  // workers waiting for a call
	quit     chan struct{} // closed by Stop and GracefulStop, once done

	mu       sync.Mutex
	lis      map[net.Listener]bool
	conns    map[*conn]bool
	closed   bool // Stop or GracefulStop was called
	connWG   sync.WaitGroup
	quitOnce sync.Once
}

// NewServer returns a server with no services registered.
func NewServer(opt ...Option) *Server {
	s := &Server{
		opts:     options{maxRecv: 4 << 20, maxSend: 1<<31 - 1},
		codec:    encoding.GetCodecV2(proto.Name),
		methods:  map[string]*method{},
		services: map[string]grpc.ServiceInfo{},
		lis:      map[net.Listener]bool{},
		conns:    map[*conn]bool{},
		work:     make(chan func()),
		quit:     make(chan struct{}),
	}
	for _, o := range opt {
		o(&s.opts)
	}
	s.unaryIn = chainUnary(s.opts.unary)
	s.streamIn = chainStream(s.opts.stream)
	return s
}

// RegisterService registers a service and its implementation, as
// grpc.Server's does; generated RegisterXServer functions call it. It must
// be called before Serve.
func (s *Server) RegisterService(sd *grpc.ServiceDesc, impl any) {
	info := grpc.ServiceInfo{Metadata: sd.Metadata}
	for i := range sd.Methods {
		md := &sd.Methods[i]
		s.methods["/"+sd.ServiceName+"/"+md.MethodName] = &method{impl: impl, unary: md}
		info.Methods = append(info.Methods, grpc.MethodInfo{Name: md.MethodName})
	}
	for i := range sd.Streams {
		st := &sd.Streams[i]
		s.methods["/"+sd.ServiceName+"/"+st.StreamName] = &method{impl: impl, stream: st}
		info.Methods = append(info.Methods, grpc.MethodInfo{Name: st.StreamName, IsClientStream: st.ClientStreams, IsServerStream: st.ServerStreams})
	}
	s.services[sd.ServiceName] = info
}

// GetServiceInfo returns the registered services, as grpc.Server's does.
func (s *Server) GetServiceInfo() map[string]grpc.ServiceInfo { return s.services }

// Serve accepts connections on ln until it fails or the server stops. It
// returns ErrServerStopped after Stop or GracefulStop.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerStopped
	}
	s.lis[ln] = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.lis, ln)
		s.mu.Unlock()
	}()
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerStopped
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return ErrServerStopped
		}
		s.conns[c] = true
		s.connWG.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// connDone forgets c, whose reading ended.
func (s *Server) connDone(c *conn) {
	s.mu.Lock()
	_, ok := s.conns[c]
	delete(s.conns, c)
	s.mu.Unlock()
	if ok { // tests serve connections Serve did not accept
		s.connWG.Done()
	}
}

// Stop closes the listeners and every connection at once; calls in flight
// fail on the client.
func (s *Server) Stop() {
	s.shutdown(func(c *conn) { c.close(errors.New("h2rpc: server stopped")) })
}

// GracefulStop closes the listeners, tells every client to open no new
// streams (GOAWAY), and waits for the calls in flight to end.
func (s *Server) GracefulStop() {
	s.shutdown((*conn).drain)
}

// shutdown marks the server closed, closes its listeners, ends every
// connection with end, waits for them, and lets the idle workers go.
func (s *Server) shutdown(end func(*conn)) {
	s.mu.Lock()
	s.closed = true
	for ln := range s.lis {
		ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		end(c)
	}
	s.connWG.Wait()
	s.quitOnce.Do(func() { close(s.quit) })
}

// maxIdleWorkers bounds the idle goroutines kept to run calls on; a
// goroutine that finds that many idle when it is done ends.
const maxIdleWorkers = 256

// run runs f on an idle worker goroutine, or a new one: reusing goroutines
// keeps their grown stacks, as grpc-go's stream workers do. A connection's
// reading runs on workers too (conn.readLoop hands it over), so a worker
// may read for as long as its connection is quiet; only idle ones are
// counted, so quiet connections do not take the pool from the calls.
func (s *Server) run(f func()) {
	select {
	case s.work <- f:
	default:
		go s.worker(f)
	}
}

// worker runs f, then every call handed to it while it is idle, for the
// server's life or until maxIdleWorkers others are idle.
func (s *Server) worker(f func()) {
	for {
		f()
		if s.idle.Add(1) > maxIdleWorkers {
			s.idle.Add(-1)
			return
		}
		select {
		case f = <-s.work:
			s.idle.Add(-1)
		case <-s.quit:
			s.idle.Add(-1)
			return
		}
	}
}

func chainUnary(in []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	switch len(in) {
	case 0:
		return nil
	case 1:
		return in[0]
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		next := h
		for i := len(in) - 1; i > 0; i-- {
			ic, nh := in[i], next
			next = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, nh) }
		}
		return in[0](ctx, req, info, next)
	}
}

func chainStream(in []grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	switch len(in) {
	case 0:
		return nil
	case 1:
		return in[0]
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		next := h
		for i := len(in) - 1; i > 0; i-- {
			ic, nh := in[i], next
			next = func(srv any, ss grpc.ServerStream) error { return ic(srv, ss, info, nh) }
		}
		return in[0](srv, ss, info, next)
	}
}

// lookup splits and finds a method path.
func (s *Server) lookup(path string) (*method, error) {
	if m := s.methods[path]; m != nil {
		return m, nil
	}
	svc, name, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if !ok || !strings.HasPrefix(path, "/") {
		return nil, status.Errorf(codes.Unimplemented, "malformed method name: %q", path)
	}
	if _, known := s.services[svc]; known {
		return nil, status.Errorf(codes.Unimplemented, "unknown method %s for service %s", name, svc)
	}
	return nil, status.Errorf(codes.Unimplemented, "unknown service %s", svc)
}
