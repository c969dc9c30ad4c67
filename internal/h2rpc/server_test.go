package h2rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// testService implements grpc.testing.TestService for the transport tests.
type testService struct {
	testpb.UnimplementedTestServiceServer
	block    chan struct{} // UnaryCall with a payload ending in "block" waits for it
	canceled chan error    // FullDuplexCall reports its context's end
	deadline chan time.Duration
	md       chan metadata.MD // UnaryCall reports its incoming metadata
	inFlight atomic.Int32
	// where receives, for a UnaryCall whose payload starts with "where",
	// the payload and whether the call ran on the connection's reader.
	where chan ranOn
}

type ranOn struct {
	body     string
	onReader bool
}

func (ts *testService) UnaryCall(ctx context.Context, r *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	ts.inFlight.Add(1)
	defer ts.inFlight.Add(-1)
	body := r.GetPayload().GetBody()
	if bytes.HasPrefix(body, []byte("where")) {
		buf := make([]byte, 64<<10)
		stack := string(buf[:runtime.Stack(buf, false)])
		ts.where <- ranOn{string(body), strings.Contains(stack, ".(*conn).readLoop(")}
	}
	if bytes.HasSuffix(body, []byte("block")) {
		<-ts.block
	}
	if d, ok := ctx.Deadline(); ok && ts.deadline != nil {
		ts.deadline <- time.Until(d)
	}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if ts.md != nil {
			ts.md <- md
		}
		if v := md.Get("echo"); len(v) > 0 {
			grpc.SetHeader(ctx, metadata.Pairs("echo-header", v[0]))
			grpc.SetTrailer(ctx, metadata.Pairs("echo-trailer", v[0], "echo-bin", "\x00\xff"+v[0]))
		}
	}
	if p, ok := peer.FromContext(ctx); !ok || p.Addr == nil {
		return nil, status.Error(codes.Internal, "no peer in the context")
	}
	if st := r.GetResponseStatus(); st != nil {
		return nil, status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: bytes.Repeat([]byte{'r'}, int(r.GetResponseSize()))}}, nil
}

func (ts *testService) StreamingInputCall(s grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	total := 0
	for {
		m, err := s.Recv()
		if err == io.EOF {
			return s.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(m.GetPayload().GetBody())
	}
}

func (ts *testService) StreamingOutputCall(r *testpb.StreamingOutputCallRequest, s grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	for _, p := range r.GetResponseParameters() {
		if err := s.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
	}
	return nil
}

func (ts *testService) FullDuplexCall(s grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	defer func() {
		if ts.canceled != nil {
			<-s.Context().Done()
			ts.canceled <- s.Context().Err()
		}
	}()
	for {
		m, err := s.Recv()
		if err == io.EOF {
			s.SetTrailer(metadata.Pairs("done", "yes"))
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(&testpb.StreamingOutputCallResponse{Payload: m.GetPayload()}); err != nil {
			return err
		}
	}
}

// start serves ts on a loopback listener and returns a client connection.
func start(t *testing.T, ts *testService, opt ...Option) (*Server, *grpc.ClientConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(opt...)
	testpb.RegisterTestServiceServer(s, ts)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		s.Stop()
		if err := <-served; !errors.Is(err, ErrServerStopped) {
			t.Errorf("Serve returned %v, want ErrServerStopped", err)
		}
	})
	return s, cc
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestUnaryCallWithMetadataAndDeadline(t *testing.T) {
	ts := &testService{deadline: make(chan time.Duration, 1)}
	_, cc := start(t, ts)
	c := testpb.NewTestServiceClient(cc)
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctxT(t), "echo", "hello"), 7*time.Second)
	defer cancel()
	var header, trailer metadata.MD
	resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 300, Payload: &testpb.Payload{Body: []byte("x")}},
		grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetPayload().GetBody()) != 300 {
		t.Fatalf("response body of %d bytes, want 300", len(resp.GetPayload().GetBody()))
	}
	if got := header.Get("echo-header"); len(got) != 1 || got[0] != "hello" {
		t.Errorf("header echo-header = %q", got)
	}
	if got := trailer.Get("echo-trailer"); len(got) != 1 || got[0] != "hello" {
		t.Errorf("trailer echo-trailer = %q", got)
	}
	if got := trailer.Get("echo-bin"); len(got) != 1 || got[0] != "\x00\xffhello" {
		t.Errorf("binary trailer echo-bin = %q", got)
	}
	if d := <-ts.deadline; d <= 5*time.Second || d > 7*time.Second {
		t.Errorf("handler's deadline %v away, want about 7s (grpc-timeout)", d)
	}
}

func TestErrorStatusReachesTheClient(t *testing.T) {
	_, cc := start(t, &testService{})
	c := testpb.NewTestServiceClient(cc)
	msg := "etcdserver: key not found, 100% sure: ünïcode\nline two"
	_, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{ResponseStatus: &testpb.EchoStatus{Code: int32(codes.NotFound), Message: msg}})
	if s := status.Convert(err); s.Code() != codes.NotFound || s.Message() != msg {
		t.Fatalf("status %v %q, want NotFound %q", s.Code(), s.Message(), msg)
	}
	_, err = c.UnimplementedCall(ctxT(t), &testpb.Empty{})
	if s := status.Convert(err); s.Code() != codes.Unimplemented || !strings.Contains(s.Message(), "UnimplementedCall") {
		t.Fatalf("unregistered method: %v", err)
	}
	err = cc.Invoke(ctxT(t), "/no.Such/Service", &testpb.Empty{}, &testpb.Empty{})
	if s := status.Convert(err); s.Code() != codes.Unimplemented || !strings.Contains(s.Message(), "unknown service") {
		t.Fatalf("unknown service: %v", err)
	}
}

func TestStatusDetailsReachTheClient(t *testing.T) {
	s := NewServer()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	want := status.New(codes.FailedPrecondition, "with details")
	want, err = want.WithDetails(durationpb.New(3 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "grpc.testing.TestService",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "EmptyCall", Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(&testpb.Empty{}); err != nil {
				return nil, err
			}
			return nil, want.Err()
		}}},
	}, struct{}{})
	go s.Serve(ln)
	defer s.Stop()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = testpb.NewTestServiceClient(cc).EmptyCall(ctxT(t), &testpb.Empty{})
	got := status.Convert(err)
	if got.Code() != codes.FailedPrecondition || len(got.Details()) != 1 {
		t.Fatalf("status %v with %d details, want FailedPrecondition with 1", got.Code(), len(got.Details()))
	}
	if d, ok := got.Details()[0].(*durationpb.Duration); !ok || d.AsDuration() != 3*time.Second {
		t.Fatalf("detail %v", got.Details()[0])
	}
}

// Messages larger than every flow-control window, both ways: the request
// beyond this server's 1 MiB stream window, the response beyond the
// client's.
func TestLargeMessagesBothWays(t *testing.T) {
	_, cc := start(t, &testService{}, MaxRecvMsgSize(8<<20))
	c := testpb.NewTestServiceClient(cc)
	body := bytes.Repeat([]byte("0123456789"), 300_000) // 3 MB
	resp, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{ResponseSize: 5 << 20, Payload: &testpb.Payload{Body: body}})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.GetPayload().GetBody()); n != 5<<20 {
		t.Fatalf("response of %d bytes", n)
	}
	// Beyond MaxRecvMsgSize: refused, and the connection still serves.
	_, err = c.UnaryCall(ctxT(t), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 9<<20)}})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a 9 MiB request: %v, want ResourceExhausted", err)
	}
	if _, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{ResponseSize: 10}); err != nil {
		t.Fatalf("a call after the refused one: %v", err)
	}
}

func TestStreamingCalls(t *testing.T) {
	_, cc := start(t, &testService{})
	c := testpb.NewTestServiceClient(cc)
	ctx := ctxT(t)

	// Client streaming, 4 MB in all: beyond the stream window, granted
	// back as the handler reads.
	in, err := c.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 250 {
		if err := in.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 16000)}}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := in.CloseAndRecv()
	if err != nil || got.GetAggregatedPayloadSize() != 250*16000 {
		t.Fatalf("client streaming: %v, %d bytes", err, got.GetAggregatedPayloadSize())
	}

	// Server streaming.
	var params []*testpb.ResponseParameters
	for i := range 50 {
		params = append(params, &testpb.ResponseParameters{Size: int32(i * 1000)})
	}
	out, err := c.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		m, err := out.Recv()
		if err != nil || len(m.GetPayload().GetBody()) != i*1000 {
			t.Fatalf("server streaming message %d: %v", i, err)
		}
	}
	if _, err := out.Recv(); err != io.EOF {
		t.Fatalf("after the last message: %v, want EOF", err)
	}

	// Bidirectional, one message at a time, then the client half-closes.
	bidi, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		b := []byte(fmt.Sprint(i))
		if err := bidi.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: b}}); err != nil {
			t.Fatal(err)
		}
		m, err := bidi.Recv()
		if err != nil || !bytes.Equal(m.GetPayload().GetBody(), b) {
			t.Fatalf("echo %d: %v %q", i, err, m.GetPayload().GetBody())
		}
	}
	if err := bidi.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := bidi.Recv(); err != io.EOF {
		t.Fatalf("after half-close: %v, want EOF", err)
	}
	if tr := bidi.Trailer(); len(tr.Get("done")) != 1 {
		t.Fatalf("trailer %v", tr)
	}
}

func TestCanceledStreamCancelsTheHandler(t *testing.T) {
	ts := &testService{canceled: make(chan error, 1)}
	_, cc := start(t, ts)
	ctx, cancel := context.WithCancel(ctxT(t))
	bidi, err := testpb.NewTestServiceClient(cc).FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := bidi.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("a")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := bidi.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-ts.canceled:
		if err == nil {
			t.Fatal("handler context ended without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context was not canceled after the client canceled")
	}
}

func TestManyConcurrentCalls(t *testing.T) {
	_, cc := start(t, &testService{})
	c := testpb.NewTestServiceClient(cc)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 64 {
		wg.Go(func() {
			for i := range 100 {
				size := int32((g*100 + i) % 5000)
				resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: size})
				if err != nil {
					errs <- err
					return
				}
				if len(resp.GetPayload().GetBody()) != int(size) {
					errs <- fmt.Errorf("response of %d bytes, want %d", len(resp.GetPayload().GetBody()), size)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestGracefulStopWaitsForCallsInFlight(t *testing.T) {
	ts := &testService{block: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer()
	testpb.RegisterTestServiceServer(s, ts)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	c := testpb.NewTestServiceClient(cc)
	done := make(chan error, 1)
	go func() {
		_, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("block")}})
		done <- err
	}()
	for ts.inFlight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	stopped := make(chan struct{})
	go func() { s.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("GracefulStop returned with a call in flight")
	case <-time.After(200 * time.Millisecond):
	}
	close(ts.block)
	if err := <-done; err != nil {
		t.Fatalf("the call in flight: %v", err)
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("GracefulStop did not return after the last call ended")
	}
	if err := <-served; !errors.Is(err, ErrServerStopped) {
		t.Fatalf("Serve: %v", err)
	}
}

func TestInterceptorsRunInOrder(t *testing.T) {
	var order []string
	var mu sync.Mutex
	note := func(s string) {
		mu.Lock()
		order = append(order, s)
		mu.Unlock()
	}
	u := func(name string) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			note(name + " " + info.FullMethod)
			return h(ctx, req)
		}
	}
	st := func(name string) grpc.StreamServerInterceptor {
		return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			note(name + " " + info.FullMethod)
			return h(srv, ss)
		}
	}
	_, cc := start(t, &testService{}, ChainUnaryInterceptor(u("u1"), u("u2")), ChainStreamInterceptor(st("s1"), st("s2")))
	c := testpb.NewTestServiceClient(cc)
	if _, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	out, err := c.StreamingOutputCall(ctxT(t), &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.Recv(); err != io.EOF {
		t.Fatal(err)
	}
	want := []string{"u1 /grpc.testing.TestService/UnaryCall", "u2 /grpc.testing.TestService/UnaryCall",
		"s1 /grpc.testing.TestService/StreamingOutputCall", "s2 /grpc.testing.TestService/StreamingOutputCall"}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("interceptors ran %q, want %q", order, want)
	}
}

func TestParseTimeout(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"1S": time.Second, "250m": 250 * time.Millisecond, "3u": 3 * time.Microsecond, "99999999n": 99999999,
		"2M": 2 * time.Minute, "1H": time.Hour, "99999999H": time.Duration(1<<63 - 1),
	} {
		if got, err := parseTimeout(in); err != nil || got != want {
			t.Errorf("parseTimeout(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "S", "1", "1x", "-1S", "+1S", "123456789S", "1.5S", " 1S"} {
		if _, err := parseTimeout(bad); err == nil {
			t.Errorf("parseTimeout(%q) accepted", bad)
		}
	}
}

func FuzzParseTimeout(f *testing.F) {
	for _, s := range []string{"1S", "99999999H", "5m", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseTimeout(s)
		if err == nil && d < 0 {
			t.Fatalf("parseTimeout(%q) = %v", s, d)
		}
	})
}

// FuzzServeConn feeds a connection the client preface, then arbitrary
// bytes: the server must neither panic nor hang, whatever the frames say.
func FuzzServeConn(f *testing.F) {
	var hdr bytes.Buffer
	fr := http2.NewFramer(&hdr, nil)
	fr.WriteSettings()
	fr.WritePing(false, [8]byte{1})
	fr.WriteWindowUpdate(0, 1000)
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, h := range [][2]string{{":method", "POST"}, {":path", "/grpc.testing.TestService/UnaryCall"}, {":scheme", "http"},
		{":authority", "x"}, {"content-type", "application/grpc"}, {"grpc-timeout", "1S"}} {
		enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true})
	fr.WriteData(1, true, []byte{0, 0, 0, 0, 2, 0x18, 5})
	f.Add(hdr.Bytes())
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := NewServer()
		testpb.RegisterTestServiceServer(s, &testService{})
		client, server := net.Pipe()
		c := newConn(s, server)
		go c.serve()
		done := c.ctx.Done() // the connection's end, whichever goroutine reads then
		go io.Copy(io.Discard, client)
		client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		client.Write([]byte(http2.ClientPreface))
		client.Write(b)
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the connection did not end after the client closed")
		}
		s.Stop() // ends its idle workers
	})
}

// TestStreamOpenedAsTheConnectionClosesEnds: headers read just after the
// connection closed (a writer failed) open a stream that close did not see;
// it must end at once, not run a handler that waits for messages forever.
func TestStreamOpenedAsTheConnectionClosesEnds(t *testing.T) {
	ts := &testService{canceled: make(chan error, 1)}
	s := NewServer()
	testpb.RegisterTestServiceServer(s, ts)
	defer s.Stop()
	client, server := net.Pipe()
	defer client.Close()
	c := newConn(s, server)
	c.close(errors.New("a write failed"))
	h := &reqHeaders{id: 1, method: "POST", path: "/grpc.testing.TestService/FullDuplexCall", ctype: "application/grpc"}
	if err := c.headers(h); err != nil {
		t.Fatal(err)
	}
	if st := c.stream(1); st != nil {
		t.Fatal("a stream opened after the connection closed is among its streams, its handler waiting")
	}
	select {
	case err := <-ts.canceled: // it may have run, as long as it ended
		if err == nil {
			t.Error("the handler's context ended without an error")
		}
	case <-time.After(200 * time.Millisecond):
	}
}

// BenchmarkUnaryCall runs small unary calls from a grpc-go client over
// loopback, in parallel; the allocations include the client's.
func BenchmarkUnaryCall(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := NewServer()
	testpb.RegisterTestServiceServer(s, &testService{})
	go s.Serve(ln)
	defer s.Stop()
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	c := testpb.NewTestServiceClient(cc)
	req := &testpb.SimpleRequest{ResponseSize: 64, Payload: &testpb.Payload{Body: []byte("key")}}
	if _, err := c.UnaryCall(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if _, err := c.UnaryCall(ctx, req); err != nil {
				b.Error(err)
			}
			cancel()
		}
	})
}
