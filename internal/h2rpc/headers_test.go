package h2rpc

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// rawClient speaks HTTP/2 to a server connection frame by frame, so tests
// can send header blocks no gRPC client would.
type rawClient struct {
	t      *testing.T
	nc     net.Conn
	fr     *http2.Framer
	enc    *hpack.Encoder
	encBuf bytes.Buffer
	frames chan event // what the server sent; closed when it stops
	pingMu sync.Mutex
	acked  map[[8]byte]bool // data of the PING acknowledgments received
}

// event is a frame the server sent, copied out of the framer (whose frames
// are valid only until it reads the next).
type event struct {
	typ       http2.FrameType
	stream    uint32
	code      http2.ErrCode // RST_STREAM, GOAWAY
	data      int           // DATA length
	fields    []hpack.HeaderField
	endStream bool
}

func newRawClient(t *testing.T, ts *testService) *rawClient {
	t.Helper()
	s := NewServer()
	testpb.RegisterTestServiceServer(s, ts)
	client, server := net.Pipe()
	c := newConn(s, server)
	go c.serve()
	r := &rawClient{t: t, nc: client, fr: http2.NewFramer(client, client), frames: make(chan event, 100), acked: map[[8]byte]bool{}}
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.enc = hpack.NewEncoder(&r.encBuf)
	go func() {
		defer close(r.frames)
		for {
			f, err := r.fr.ReadFrame()
			if err != nil {
				return
			}
			e := event{typ: f.Header().Type, stream: f.Header().StreamID}
			switch f := f.(type) {
			case *http2.GoAwayFrame:
				e.code = f.ErrCode
			case *http2.RSTStreamFrame:
				e.code = f.ErrCode
			case *http2.DataFrame:
				e.data = len(f.Data())
			case *http2.MetaHeadersFrame:
				e.fields, e.endStream = f.Fields, f.StreamEnded()
			case *http2.PingFrame:
				if f.IsAck() {
					r.pingMu.Lock()
					r.acked[f.Data] = true
					r.pingMu.Unlock()
				}
			}
			r.frames <- e
		}
	}()
	t.Cleanup(func() {
		client.Close()
		<-c.ctx.Done() // the connection's end, whichever goroutine reads then
		s.Stop()
	})
	client.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := client.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := r.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return r
}

// block encodes fields with the connection's encoder, whose dynamic table
// the server's decoder must follow.
func (r *rawClient) block(fields ...[2]string) []byte {
	r.encBuf.Reset()
	for _, f := range fields {
		if err := r.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			r.t.Fatal(err)
		}
	}
	return bytes.Clone(r.encBuf.Bytes())
}

// headers sends block on stream id as a HEADERS frame followed by
// CONTINUATION frames, pieces frames in all.
func (r *rawClient) headers(id uint32, block []byte, pieces int, endStream bool) {
	r.t.Helper()
	if err := r.tryHeaders(id, block, pieces, endStream); err != nil {
		r.t.Fatal(err)
	}
}

// tryHeaders is headers for a block the server may give up on halfway.
func (r *rawClient) tryHeaders(id uint32, block []byte, pieces int, endStream bool) error {
	size := (len(block) + pieces - 1) / pieces
	first := block[:min(size, len(block))]
	rest := block[len(first):]
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(rest) == 0}); err != nil {
		return err
	}
	for len(rest) > 0 {
		n := min(size, len(rest))
		if err := r.fr.WriteContinuation(id, n == len(rest), rest[:n]); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// unary sends a UnaryCall request message on stream id and ends it.
func (r *rawClient) unary(id uint32, req *testpb.SimpleRequest) {
	r.t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		r.t.Fatal(err)
	}
	msg := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b)))
	if err := r.fr.WriteData(id, true, append(msg, b...)); err != nil {
		r.t.Fatal(err)
	}
}

// outcome is how the server ended a stream.
type outcome struct {
	rst        http2.ErrCode // RST_STREAM's code, if it reset the stream
	reset      bool
	goAway     bool
	goAwayCode http2.ErrCode
	status     string // grpc-status of the trailers
	message    string // grpc-message
	data       int    // DATA bytes received
}

// await reads frames until the server ends stream id, resets it or sends
// GOAWAY.
func (r *rawClient) await(id uint32) outcome {
	r.t.Helper()
	var o outcome
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-r.frames:
			if !ok {
				r.t.Fatalf("stream %d: connection closed before the stream ended", id)
			}
			switch {
			case e.typ == http2.FrameGoAway:
				o.goAway, o.goAwayCode = true, e.code
				return o
			case e.stream != id:
			case e.typ == http2.FrameRSTStream:
				o.reset, o.rst = true, e.code
				return o
			case e.typ == http2.FrameData:
				o.data += e.data
			case e.typ == http2.FrameHeaders:
				for _, h := range e.fields {
					switch h.Name {
					case "grpc-status":
						o.status = h.Value
					case "grpc-message":
						o.message = h.Value
					}
				}
				if e.endStream {
					return o
				}
			}
		case <-timeout:
			r.t.Fatalf("stream %d: no end within 10s", id)
		}
	}
}

func request(extra ...[2]string) [][2]string {
	return append([][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", "/grpc.testing.TestService/UnaryCall"},
		{":authority", "cairn"}, {"content-type", "application/grpc"}}, extra...)
}

// A request whose header block spans a HEADERS and CONTINUATION frames
// runs, and its metadata reaches the handler: repeated keys keep every
// value in order, -bin values are decoded, the transport's own fields are
// not metadata.
func TestHeaderBlockOverContinuationFrames(t *testing.T) {
	ts := &testService{md: make(chan metadata.MD, 1)}
	r := newRawClient(t, ts)
	b := r.block(request([2]string{"te", "trailers"}, [2]string{"grpc-timeout", "5S"}, [2]string{"dup", "a"},
		[2]string{"x-one", "1"}, [2]string{"dup", "b"}, [2]string{"key-bin", "AP8"}, [2]string{"dup", "c"})...)
	r.headers(1, b, 4, false)
	r.unary(1, &testpb.SimpleRequest{ResponseSize: 10})
	o := r.await(1)
	if o.reset || o.goAway || o.status != "0" || o.data == 0 {
		t.Fatalf("outcome %+v, want grpc-status 0 with a response", o)
	}
	md := <-ts.md
	want := map[string][]string{"dup": {"a", "b", "c"}, "x-one": {"1"}, "key-bin": {"\x00\xff"}, ":authority": {"cairn"}}
	for k, v := range want {
		if !slices.Equal(md[k], v) {
			t.Errorf("metadata %q = %q, want %q", k, md[k], v)
		}
	}
	for _, k := range []string{"te", "grpc-timeout", "content-type", ":path", ":method"} {
		if _, ok := md[k]; ok {
			t.Errorf("metadata holds the transport's %q", k)
		}
	}
}

// Header blocks HTTP/2 does not allow reset their stream and change
// nothing else: the connection goes on, and its decoder stays in step
// with the client's encoder (the next request reuses the table entries
// the refused block added).
func TestInvalidHeaderFieldsResetTheStream(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields [][2]string
	}{
		{"pseudo after regular", append(request([2]string{"x-a", "1"}), [2]string{":scheme", "https"})},
		{"duplicate pseudo", append([][2]string{{":method", "POST"}}, request()...)},
		{"unknown pseudo", append([][2]string{{":status", "200"}}, request()...)},
		{"upper-case name", request([2]string{"X-Upper", "1"})},
		{"control character in a value", request([2]string{"x-a", "a\x01b"})},
		{"empty name", request([2]string{"", "v"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := &testService{}
			r := newRawClient(t, ts)
			// Literal fields with incremental indexing: the server's
			// table grows with them even though the block is refused.
			r.headers(1, r.block(append(tc.fields, [2]string{"x-indexed", strings.Repeat("v", 40)})...), 1, false)
			if o := r.await(1); !o.reset || o.rst != http2.ErrCodeProtocol {
				t.Fatalf("outcome %+v, want RST_STREAM PROTOCOL_ERROR", o)
			}
			r.headers(3, r.block(request([2]string{"x-indexed", strings.Repeat("v", 40)})...), 1, false)
			r.unary(3, &testpb.SimpleRequest{ResponseSize: 1})
			if o := r.await(3); o.reset || o.goAway || o.status != "0" {
				t.Fatalf("next request: outcome %+v, want grpc-status 0", o)
			}
		})
	}
}

// Requests gRPC cannot serve are answered with a status, not run.
func TestUnservableHeadersAreRefused(t *testing.T) {
	big := make([][2]string, 0, 20)
	for i := range 20 {
		big = append(big, [2]string{"x-big-" + string(rune('a'+i)), strings.Repeat("v", 1000)})
	}
	for _, tc := range []struct {
		name    string
		fields  [][2]string
		pieces  int
		status  string
		message string
	}{
		{"malformed grpc-timeout", request([2]string{"grpc-timeout", "12x"}), 1, "13", "malformed grpc-timeout"},
		{"compressed message", request([2]string{"grpc-encoding", "gzip"}), 1, "12", "grpc-encoding"},
		{"malformed binary metadata", request([2]string{"k-bin", "%%%"}), 1, "13", "malformed binary metadata"},
		{"GET", append([][2]string{{":method", "GET"}}, request()[1:]...), 1, "13", "is not POST"},
		{"header list over the limit", request(big...), 1, "13", "header list larger"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := &testService{}
			r := newRawClient(t, ts)
			r.headers(1, r.block(tc.fields...), tc.pieces, true)
			o := r.await(1)
			if o.status != tc.status || !strings.Contains(o.message, tc.message) {
				t.Fatalf("outcome %+v, want grpc-status %s with %q", o, tc.status, tc.message)
			}
			if n := ts.inFlight.Load(); n != 0 {
				t.Fatalf("%d calls in flight", n)
			}
			r.headers(3, r.block(request()...), 1, false)
			r.unary(3, &testpb.SimpleRequest{ResponseSize: 1})
			if o := r.await(3); o.status != "0" {
				t.Fatalf("next request: outcome %+v, want grpc-status 0", o)
			}
		})
	}
}

// A header block is not followed past what cannot be a valid request: the
// connection ends with GOAWAY when a fragment is far larger than the
// header list limit allows, or when CONTINUATION frames go on after the
// list went over the limit or after an invalid field (whose block's size
// is no longer counted).
func TestOversizedOrInvalidHeaderBlockEndsTheConnection(t *testing.T) {
	var big [][2]string
	for i := range 40 {
		big = append(big, [2]string{"x-big-" + string(rune('a'+i)), strings.Repeat("v", 1000)})
	}
	for _, tc := range []struct {
		name   string
		fields [][2]string
		pieces int
	}{
		{"one fragment far over the limit", request([2]string{"x-huge", strings.Repeat("v", 3*maxHeaderList)}), 1},
		{"continuation after the limit", request(big...), 40},
		{"continuation after an invalid field", append([][2]string{{":status", "200"}}, request()...), 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := &testService{}
			r := newRawClient(t, ts)
			r.tryHeaders(1, r.block(tc.fields...), tc.pieces, true) // the server may stop reading
			if o := r.await(1); !o.goAway || o.goAwayCode != http2.ErrCodeProtocol {
				t.Fatalf("outcome %+v, want GOAWAY PROTOCOL_ERROR", o)
			}
			if n := ts.inFlight.Load(); n != 0 {
				t.Fatalf("%d calls in flight", n)
			}
		})
	}
}

// The handler's context answers gRPC's accessors (metadata, peer, header
// and trailer) with the lazy stream context, which this gRPC release
// allows, and with the context.WithValue chain streams fall back to.
func TestHandlerContextLookups(t *testing.T) {
	if !lazyContext {
		t.Fatal("streamCtx does not answer this gRPC release's accessors: every call pays for context.WithValue")
	}
	for _, lazy := range []bool{true, false} {
		t.Run(fmt.Sprintf("lazy=%v", lazy), func(t *testing.T) {
			defer func(old bool) { lazyContext = old }(lazyContext)
			lazyContext = lazy
			TestUnaryCallWithMetadataAndDeadline(t)
			TestHeaderBlockOverContinuationFrames(t)
		})
	}
}
