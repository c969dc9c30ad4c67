package h2rpc

import (
	"bufio"
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
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Flow-control windows this server grants (RFC 9113, 6.9): per stream, and
// for the whole connection.
const (
	streamWindow = 1 << 20
	connWindow   = 16 << 20
	// Window updates are sent once this much of a window was consumed.
	streamUpdateAt = streamWindow / 4
	connUpdateAt   = connWindow / 4
	// maxHeaderList bounds a request's decoded header list.
	maxHeaderList = 16 << 10
	// prefaceTimeout bounds the wait for a client's preface and settings.
	prefaceTimeout = 10 * time.Second
)

// conn is one client connection: one goroutine at a time reads frames
// (readLoop) and runs calls on workers, or runs a unary call itself after
// handing the reading to a worker (see readLoop); every writer takes wmu,
// and the last of a burst flushes the buffered writer.
type conn struct {
	s    *Server
	nc   net.Conn
	peer *peer.Peer
	ctx  context.Context // canceled when the connection ends
	stop context.CancelFunc

	br *bufio.Reader
	fr *http2.Framer
	// The reader's header decoding (headers.go): the decoder, and the
	// request whose header block it is reading.
	hdec *hpack.Decoder
	rh   reqHeaders

	wmu     sync.Mutex // guards bw, the framer's writing side, henc, hbuf, werr
	bw      *bufio.Writer
	henc    *hpack.Encoder
	hbuf    bytes.Buffer
	werr    error
	writers atomic.Int32 // writers waiting for or holding wmu
	// flushc wakes the flusher goroutine, which flushes what streaming
	// calls' messages left in the buffer.
	flushc chan struct{}
	// unary counts the unary calls running on this connection.
	unary atomic.Int32
	// own is a unary call whose request the reader just completed; the
	// reader runs it itself if it has no other frame to read (readLoop).
	own *stream // reader only
	// pings holds the data of clients' PINGs not yet acknowledged: the
	// reader acknowledges them when it has read every frame it has.
	pings [][8]byte // reader only

	// Send-side flow control: the client's windows.
	fcMu        sync.Mutex
	fcCond      *sync.Cond
	sendConn    int64 // connection window
	initWindow  int64 // the client's SETTINGS_INITIAL_WINDOW_SIZE
	maxFrame    int   // the client's SETTINGS_MAX_FRAME_SIZE
	closed      bool  // guarded by fcMu: no more writes
	recvUnacked int   // connection bytes received and not yet granted back; reader only

	mu       sync.Mutex // guards streams, draining, lastID
	streams  map[uint32]*stream
	lastID   uint32
	draining bool
	idle     chan struct{} // receives when the last stream ends while draining
}

func newConn(s *Server, nc net.Conn) *conn {
	ctx, stop := context.WithCancel(context.Background())
	c := &conn{
		s: s, nc: nc, ctx: ctx, stop: stop,
		peer:       &peer.Peer{Addr: nc.RemoteAddr(), LocalAddr: nc.LocalAddr()},
		br:         bufio.NewReaderSize(nc, 32<<10),
		bw:         bufio.NewWriterSize(nc, 32<<10),
		sendConn:   65535,
		initWindow: 65535,
		maxFrame:   16384,
		streams:    map[uint32]*stream{},
		idle:       make(chan struct{}, 1),
		flushc:     make(chan struct{}, 1),
	}
	c.fcCond = sync.NewCond(&c.fcMu)
	c.fr = http2.NewFramer(c.bw, c.br)
	c.fr.SetReuseFrames()
	c.hdec = hpack.NewDecoder(4096, c.field)
	c.hdec.SetMaxStringLength(maxHeaderList)
	c.henc = hpack.NewEncoder(&c.hbuf)
	return c
}

// serve runs the connection: the handshake, then the reading.
func (c *conn) serve() {
	go c.flusher()
	if err := c.handshake(); err != nil {
		c.end(err)
		return
	}
	c.read()
}

// read reads frames until the connection ends, or until it hands the
// reading to another goroutine.
func (c *conn) read() {
	if err := c.readLoop(); err != errHandedOff {
		c.end(err)
	}
}

// end closes the connection once its reading ended, and tells the server.
func (c *conn) end(err error) {
	c.close(err)
	c.s.connDone(c)
}

// handshake reads the client preface and sends this server's settings.
func (c *conn) handshake() error {
	c.nc.SetReadDeadline(time.Now().Add(prefaceTimeout))
	buf := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c.br, buf); err != nil {
		return fmt.Errorf("h2rpc: reading the client preface: %w", err)
	}
	if string(buf) != http2.ClientPreface {
		return errors.New("h2rpc: bad client preface")
	}
	c.nc.SetReadDeadline(time.Time{})
	return c.write(func() error {
		if err := c.fr.WriteSettings(
			http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 1<<31 - 1},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: streamWindow},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: maxHeaderList},
		); err != nil {
			return err
		}
		return c.fr.WriteWindowUpdate(0, connWindow-65535)
	})
}

// write runs f holding wmu, then flushes if no other writer waits: the
// writes of a burst leave in one system call.
func (c *conn) write(f func() error) error { return c.writeFlush(f, true) }

// writeFlush is write; with flush false it leaves its bytes buffered for a
// write that the caller makes next (a unary response's headers and message
// go out with its trailers).
func (c *conn) writeFlush(f func() error, flush bool) error {
	c.writers.Add(1)
	c.wmu.Lock()
	err := c.werr
	if err == nil {
		err = f()
		if err == nil && flush && c.writers.Load() == 1 {
			err = c.bw.Flush()
		}
		if err != nil {
			c.werr = err
		}
	}
	c.writers.Add(-1)
	if err == nil && flush && c.writers.Load() == 0 && c.bw.Buffered() > 0 {
		// A writer that saw another waiting left its bytes to it, but that
		// one may have found the connection failed: flush here too.
		err = c.bw.Flush()
		if err != nil {
			c.werr = err
		}
	}
	c.wmu.Unlock()
	if err != nil {
		c.close(err)
	}
	return err
}

// flushLater has the flusher flush the buffer soon. A streaming call's
// messages (a watch's events, from many streams) leave it that way: the
// messages written while the flusher waits for a processor go out in one
// system call, as grpc-go's writer goroutine sends them, instead of a
// system call each.
func (c *conn) flushLater() {
	select {
	case c.flushc <- struct{}{}:
	default:
	}
}

// flusher flushes the buffer each time flushLater asks, until the
// connection ends.
func (c *conn) flusher() {
	for {
		select {
		case <-c.flushc:
		case <-c.ctx.Done():
			return
		}
		c.wmu.Lock()
		small := c.bw.Buffered() < minBatch
		c.wmu.Unlock()
		if small {
			// Let the calls that are about to write run first, as
			// grpc-go's writer does before a small flush.
			runtime.Gosched()
		}
		c.write(func() error { return nil })
	}
}

// minBatch is the buffered size below which the flusher yields first.
const minBatch = 1000

// errHandedOff is readLoop's return when another goroutine took over the
// reading.
var errHandedOff = errors.New("h2rpc: reading handed off")

// readLoop reads frames until the connection fails (or the reading is
// handed off: errHandedOff).
//
// A unary call whose request is complete runs on a worker, as does the
// reading of further frames, but not always in that order. If the reader
// has buffered another whole frame it goes on reading and leaves the call
// to a worker. If not, its next step would be to wait on the socket: it
// gives the reading to a worker and runs the call itself. A lone client's
// call then starts at once, on a goroutine already running, instead of
// waiting until the reader parks or another processor takes the worker
// (BENCHMARKS.md, thirteenth pass).
//
// Clients' PINGs (grpc-go clients ping after receiving data, to size their
// windows) are acknowledged once the reader has no whole frame left, so a
// PING that arrives with a request is not a write ahead of the call.
func (c *conn) readLoop() error {
	for {
		if !c.frameBuffered() {
			if st := c.own; st != nil {
				c.own = nil
				c.s.run(c.read)
				st.serve()
				return errHandedOff
			}
			if err := c.ackPings(); err != nil {
				return err
			}
		} else {
			c.ownToWorker()
		}
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.resetStream(se.StreamID, se.Code)
				continue
			}
			if ce, ok := err.(http2.ConnectionError); ok {
				c.goAway(http2.ErrCode(ce), "")
			}
			return err
		}
		if err := c.handleFrame(f); err != nil {
			c.ownToWorker()
			return err
		}
	}
}

// ownToWorker runs the reader's completed unary call, if any, on a worker.
func (c *conn) ownToWorker() {
	if st := c.own; st != nil {
		c.own = nil
		c.s.run(st.serve)
	}
}

// frameBuffered reports whether the read buffer holds a whole frame, so
// that reading it will not wait on the socket.
func (c *conn) frameBuffered() bool {
	n := c.br.Buffered()
	if n < frameHeaderLen {
		return false
	}
	h, _ := c.br.Peek(frameHeaderLen)
	return n >= frameHeaderLen+(int(h[0])<<16|int(h[1])<<8|int(h[2]))
}

// frameHeaderLen is the size of an HTTP/2 frame header (RFC 9113, 4.1).
const frameHeaderLen = 9

// ackPings acknowledges the PINGs read since the last call.
func (c *conn) ackPings() error {
	if len(c.pings) == 0 {
		return nil
	}
	err := c.write(func() error {
		for _, d := range c.pings {
			if err := c.fr.WritePing(true, d); err != nil {
				return err
			}
		}
		return nil
	})
	c.pings = c.pings[:0]
	return err
}

func (c *conn) handleFrame(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		if err := f.ForeachSetting(c.applySetting); err != nil {
			c.goAway(http2.ErrCodeProtocol, err.Error())
			return err
		}
		return c.write(c.fr.WriteSettingsAck)
	case *http2.PingFrame:
		if f.IsAck() {
			return nil
		}
		c.pings = append(c.pings, f.Data)
		return nil
	case *http2.WindowUpdateFrame:
		return c.windowUpdate(f.StreamID, int64(f.Increment))
	case *http2.HeadersFrame:
		return c.beginHeaders(f)
	case *http2.ContinuationFrame:
		return c.headerFragment(f.HeaderBlockFragment(), f.HeadersEnded())
	case *http2.DataFrame:
		return c.data(f)
	case *http2.RSTStreamFrame:
		if st := c.stream(f.StreamID); st != nil {
			st.cancel(status.Errorf(codes.Canceled, "stream reset by the client: %v", f.ErrCode))
		}
		return nil
	case *http2.GoAwayFrame:
		// The client opens no more streams; those open run to their end.
		return nil
	case *http2.PriorityFrame, *http2.UnknownFrame:
		return nil
	case *http2.PushPromiseFrame:
		c.goAway(http2.ErrCodeProtocol, "push promise from a client")
		return errors.New("h2rpc: push promise from a client")
	}
	return nil
}

func (c *conn) applySetting(s http2.Setting) error {
	if err := s.Valid(); err != nil {
		return err
	}
	switch s.ID {
	case http2.SettingInitialWindowSize:
		c.fcMu.Lock()
		delta := int64(s.Val) - c.initWindow
		c.initWindow = int64(s.Val)
		c.mu.Lock()
		for _, st := range c.streams {
			st.sendWindow += delta
		}
		c.mu.Unlock()
		c.fcCond.Broadcast()
		c.fcMu.Unlock()
	case http2.SettingMaxFrameSize:
		c.fcMu.Lock()
		c.maxFrame = int(s.Val)
		c.fcMu.Unlock()
	case http2.SettingHeaderTableSize:
		c.wmu.Lock()
		c.henc.SetMaxDynamicTableSize(min(s.Val, 4096))
		c.wmu.Unlock()
	}
	return nil
}

func (c *conn) windowUpdate(id uint32, inc int64) error {
	c.fcMu.Lock()
	defer c.fcMu.Unlock()
	if id == 0 {
		c.sendConn += inc
		if c.sendConn > 1<<31-1 {
			go c.goAway(http2.ErrCodeFlowControl, "") // fcMu is held; goAway writes
			return errors.New("h2rpc: connection window overflow")
		}
	} else if st := c.stream(id); st != nil {
		st.sendWindow += inc
	}
	c.fcCond.Broadcast()
	return nil
}

func (c *conn) stream(id uint32) *stream {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streams[id]
}

// headers opens a stream for a request whose header block was read.
func (c *conn) headers(h *reqHeaders) error {
	id := h.id
	if id%2 == 0 || id <= c.lastSeen() {
		if st := c.stream(id); st != nil {
			// Trailers from the client: gRPC has none; end its side.
			st.recvEnd(nil)
			return nil
		}
		c.goAway(http2.ErrCodeProtocol, "bad stream id")
		return fmt.Errorf("h2rpc: headers on stream %d", id)
	}
	c.mu.Lock()
	c.lastID = id
	draining := c.draining
	c.mu.Unlock()
	if draining {
		c.resetStream(id, http2.ErrCodeRefusedStream)
		return nil
	}
	if h.truncated {
		return c.refuse(id, status.Errorf(codes.Internal, "header list larger than %d bytes", maxHeaderList))
	}
	if h.refusal != nil {
		return c.refuse(id, h.refusal)
	}
	if h.method != "POST" {
		return c.refuse(id, status.Errorf(codes.Internal, "method %q is not POST", h.method))
	}
	path, ctype := h.path, h.ctype
	if !strings.HasPrefix(ctype, "application/grpc") {
		// Not gRPC: answer as HTTP would.
		c.resetStream(id, http2.ErrCodeRefusedStream)
		return nil
	}
	m, err := c.s.lookup(path)
	if err != nil {
		// A request body that follows is dropped: the stream is not kept.
		return c.refuse(id, err)
	}
	st := newStream(c, id, path, m, h)
	c.fcMu.Lock()
	st.sendWindow = c.initWindow
	c.fcMu.Unlock()
	c.mu.Lock()
	c.streams[id] = st
	c.mu.Unlock()
	c.fcMu.Lock()
	closed := c.closed
	c.fcMu.Unlock()
	if closed {
		// close took the streams before this one was added: end it, or
		// its handler would wait for messages that never come.
		st.cancel(status.Error(codes.Unavailable, "connection closed"))
		c.forget(st)
		return nil
	}
	if h.endStream {
		st.recvEnd(nil)
	}
	if m.stream != nil || h.endStream {
		st.start()
	}
	return nil
}

func (c *conn) lastSeen() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastID
}

// data passes a DATA frame's payload to its stream.
func (c *conn) data(f *http2.DataFrame) error {
	n := int(f.Length)
	c.recvUnacked += n
	if c.recvUnacked >= connUpdateAt {
		inc := c.recvUnacked
		c.recvUnacked = 0
		if err := c.write(func() error { return c.fr.WriteWindowUpdate(0, uint32(inc)) }); err != nil {
			return err
		}
	}
	st := c.stream(f.StreamID)
	if st == nil {
		if f.StreamID == 0 || f.StreamID > c.lastSeen() {
			c.goAway(http2.ErrCodeProtocol, "data on an idle stream")
			return fmt.Errorf("h2rpc: data on idle stream %d", f.StreamID)
		}
		return nil // a stream already ended or refused
	}
	grant, err := st.recvData(f.Data(), n)
	if err != nil {
		st.cancel(err)
		c.endStream(st, err)
		return nil
	}
	if grant > 0 && !f.StreamEnded() {
		if err := c.write(func() error { return c.fr.WriteWindowUpdate(st.id, uint32(grant)) }); err != nil {
			return err
		}
	}
	if f.StreamEnded() {
		st.recvEnd(nil)
		if st.m.unary != nil {
			st.start()
		}
	}
	return nil
}

// refuse answers a request it cannot run with a trailers-only response.
func (c *conn) refuse(id uint32, err error) error {
	st := &stream{c: c, id: id}
	c.writeStatus(st, err)
	return nil
}

// resetStream sends RST_STREAM and forgets the stream.
func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	if st := c.stream(id); st != nil {
		st.cancel(status.Error(codes.Canceled, "stream reset"))
		c.forget(st)
	}
	c.write(func() error { return c.fr.WriteRSTStream(id, code) })
}

// endStream is called when a stream's handler returned or the stream
// failed: it writes the status and forgets the stream.
func (c *conn) endStream(st *stream, err error) {
	c.writeStatus(st, err)
	if c.forget(st) && st.running {
		c.unary.Add(-1)
	}
}

// forget drops st from the open streams; it reports whether st was there.
func (c *conn) forget(st *stream) bool {
	c.mu.Lock()
	_, ok := c.streams[st.id]
	delete(c.streams, st.id)
	last := c.draining && len(c.streams) == 0
	c.mu.Unlock()
	if ok {
		st.cancel(nil)
		c.fcMu.Lock()
		c.fcCond.Broadcast() // a writer blocked on this stream's window
		c.fcMu.Unlock()
	}
	if last {
		select {
		case c.idle <- struct{}{}:
		default:
		}
	}
	return ok
}

// goAway tells the client the connection ends after the last stream it
// opened.
func (c *conn) goAway(code http2.ErrCode, msg string) {
	last := c.lastSeen()
	c.write(func() error { return c.fr.WriteGoAway(last, code, []byte(msg)) })
}

// drain sends GOAWAY, waits for the open streams to end, then closes.
func (c *conn) drain() {
	c.mu.Lock()
	c.draining = true
	n := len(c.streams)
	c.mu.Unlock()
	c.goAway(http2.ErrCodeNo, "graceful stop")
	if n > 0 {
		select {
		case <-c.idle:
		case <-c.ctx.Done():
		}
	}
	c.close(errors.New("h2rpc: server stopped"))
}

// close ends the connection: pending writes fail, handlers' contexts are
// canceled.
func (c *conn) close(err error) {
	c.fcMu.Lock()
	if c.closed {
		c.fcMu.Unlock()
		return
	}
	c.closed = true
	c.fcCond.Broadcast()
	c.fcMu.Unlock()
	c.stop()
	c.nc.Close()
	c.mu.Lock()
	streams := make([]*stream, 0, len(c.streams))
	for _, st := range c.streams {
		streams = append(streams, st)
	}
	c.streams = map[uint32]*stream{}
	c.mu.Unlock()
	for _, st := range streams {
		st.cancel(status.Error(codes.Unavailable, "connection closed"))
	}
}
