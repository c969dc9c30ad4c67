package h2rpc

import (
	"bytes"
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/protobuf/proto"
)

// Tests of readLoop's choice of goroutine for unary calls, and of its
// deferred PING acknowledgments.

// A unary call whose request is the last frame the reader has runs on the
// reading goroutine, which hands the reading on first: a call that blocks
// there must not stop the connection, whose next call runs meanwhile.
func TestLoneUnaryCallRunsOnTheReader(t *testing.T) {
	ts := &testService{where: make(chan ranOn, 2), block: make(chan struct{})}
	_, cc := start(t, ts)
	c := testpb.NewTestServiceClient(cc)
	// A first call settles the connection: the client's acknowledgment of
	// the server's settings could otherwise arrive just behind a request
	// and leave the reader a frame to read.
	if _, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() {
		_, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("whereblock")}})
		first <- err
	}()
	if w := <-ts.where; !w.onReader {
		t.Errorf("a lone call (%s) ran on a worker, not on the reader", w.body)
	}
	// The first call still blocks on the goroutine that was the reader.
	if _, err := c.UnaryCall(ctxT(t), &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("where")}}); err != nil {
		t.Fatalf("a call while another blocks on the former reader: %v", err)
	}
	if w := <-ts.where; !w.onReader {
		t.Errorf("the second lone call ran on a worker, not on the reader that took over")
	}
	select {
	case err := <-first:
		t.Fatalf("the blocked call ended early: %v", err)
	default:
	}
	close(ts.block)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

// Requests that arrive together: every call but the last runs on a worker,
// so the reader goes on to the frames behind it; the last runs on the
// reader. A PING that came with them is acknowledged with its data.
func TestBufferedRequestsRunOnWorkersAndPingsAreAcknowledged(t *testing.T) {
	ts := &testService{where: make(chan ranOn, 3), block: make(chan struct{})}
	r := newRawClient(t, ts)
	var burst bytes.Buffer
	fr := http2.NewFramer(&burst, nil)
	if err := fr.WritePing(false, [8]byte{'p', 'i', 'n', 'g'}); err != nil {
		t.Fatal(err)
	}
	for i, body := range []string{"where1block", "where3", "where5"} {
		id := uint32(2*i + 1)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.block(request()...), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		b, err := proto.Marshal(&testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte(body)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := fr.WriteData(id, true, append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b))), b...)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.nc.Write(burst.Bytes()); err != nil { // one write: the server reads it whole
		t.Fatal(err)
	}
	got := map[string]bool{}
	for range 3 {
		select {
		case w := <-ts.where:
			got[w.body] = w.onReader
		case <-time.After(10 * time.Second):
			t.Fatalf("calls ran: %v; want three", got)
		}
	}
	if got["where1block"] || got["where3"] || !got["where5"] {
		t.Errorf("ran on the reader: %v; want only the last request's call (where5)", got)
	}
	r.awaitOK(3, 5)
	close(ts.block)
	if o := r.await(1); o.status != "0" {
		t.Fatalf("stream 1: %+v", o)
	}
	r.expectPingAck([8]byte{'p', 'i', 'n', 'g'})
}

// expectPingAck waits for a PING acknowledgment carrying data; the frames
// await skipped (other streams' and the connection's) are gone, so it
// looks at what the reader has recorded.
func (r *rawClient) expectPingAck(data [8]byte) {
	r.t.Helper()
	r.pingMu.Lock()
	defer r.pingMu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for !r.acked[data] {
		if time.Now().After(deadline) {
			r.t.Fatalf("no PING acknowledgment with %q", data[:])
		}
		r.pingMu.Unlock()
		time.Sleep(5 * time.Millisecond)
		r.pingMu.Lock()
	}
}

// awaitOK reads frames until each of streams ids ended with status OK.
func (r *rawClient) awaitOK(ids ...uint32) {
	r.t.Helper()
	open := map[uint32]bool{}
	for _, id := range ids {
		open[id] = true
	}
	timeout := time.After(10 * time.Second)
	for len(open) > 0 {
		select {
		case e, ok := <-r.frames:
			if !ok {
				r.t.Fatalf("streams %v: connection closed first", open)
			}
			if !open[e.stream] || e.typ != http2.FrameHeaders || !e.endStream {
				if e.typ == http2.FrameRSTStream && open[e.stream] {
					r.t.Fatalf("stream %d reset: %v", e.stream, e.code)
				}
				continue
			}
			for _, h := range e.fields {
				if h.Name == "grpc-status" && h.Value != "0" {
					r.t.Fatalf("stream %d ended with status %s", e.stream, h.Value)
				}
			}
			delete(open, e.stream)
		case <-timeout:
			r.t.Fatalf("streams %v: no end within 10s", open)
		}
	}
}

// The worker pool keeps at most maxIdleWorkers idle goroutines, however
// many ran at once, and hands work to an idle one.
func TestIdleWorkersAreBounded(t *testing.T) {
	s := NewServer()
	defer s.Stop()
	release := make(chan struct{})
	var started sync.WaitGroup
	n := maxIdleWorkers + 50
	started.Add(n)
	for range n {
		s.run(func() { started.Done(); <-release })
	}
	started.Wait()
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for s.idle.Load() != maxIdleWorkers {
		if time.Now().After(deadline) {
			t.Fatalf("%d idle workers after %d ran at once, want %d", s.idle.Load(), n, maxIdleWorkers)
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // the extra ones have ended, not waited
	if got := s.idle.Load(); got != maxIdleWorkers {
		t.Fatalf("%d idle workers, want %d", got, maxIdleWorkers)
	}
	ran := make(chan struct{})
	hold := make(chan struct{})
	s.run(func() { close(ran); <-hold })
	<-ran
	if got := s.idle.Load(); got != maxIdleWorkers-1 {
		t.Errorf("%d idle while one runs a call, want %d: the call did not go to an idle worker", got, maxIdleWorkers-1)
	}
	close(hold)
}
