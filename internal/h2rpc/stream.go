package h2rpc

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"sync"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// stream is one call: the request's messages as they arrive, and the
// response side the handler writes through.
type stream struct {
	c      *conn
	id     uint32
	path   string
	m      *method
	ctx    context.Context
	sctx   streamCtx   // ctx, when lazyContext
	mdf    mdFields    // the request's metadata fields
	mdOnce sync.Once   // builds md from mdf (metadata)
	md     metadata.MD // valid after mdOnce
	// stop cancels ctx: the client's deadline passed or the stream ended.
	stop context.CancelFunc

	// Receiving; guarded by rmu.
	rmu     sync.Mutex
	rcond   sync.Cond // on rmu
	rbuf    []byte    // bytes of a message not yet complete
	msgs    [][]byte  // complete messages, oldest first
	rend    bool      // the client ended its side
	rerr    error     // the stream failed
	unacked int       // bytes consumed and not yet granted back
	started bool
	startMu sync.Mutex
	running bool // a unary call counted in c.unary; set by start

	// Sending; guarded by c.fcMu (sendWindow) and hmu (the rest).
	sendWindow int64
	hmu        sync.Mutex
	header     metadata.MD
	trailer    metadata.MD
	sentHeader bool
	ended      bool
}

func newStream(c *conn, id uint32, path string, m *method, h *reqHeaders) *stream {
	st := &stream{c: c, id: id, path: path, m: m, mdf: h.md}
	st.rcond.L = &st.rmu
	// One cancelable context: the client's deadline, if it sent one, and
	// the stream's end. Why the stream ended is st.rerr.
	ctx := c.ctx
	if !lazyContext {
		ctx = metadata.NewIncomingContext(ctx, st.mdf.md())
		ctx = peer.NewContext(ctx, c.peer)
	}
	if h.hasTimeout {
		ctx, st.stop = context.WithTimeout(ctx, h.timeout)
	} else {
		ctx, st.stop = context.WithCancel(ctx)
	}
	if lazyContext {
		st.sctx = streamCtx{Context: ctx, st: st}
		st.ctx = &st.sctx
	} else {
		st.ctx = grpc.NewContextWithServerTransportStream(ctx, transportStream{st})
	}
	return st
}

// cancel ends the stream's context and its receiving side with err (nil:
// context.Canceled), unless it failed already.
func (st *stream) cancel(err error) {
	st.stop()
	st.rmu.Lock()
	if st.rerr == nil {
		st.rerr = err
		if err == nil {
			st.rerr = context.Canceled
		}
	}
	st.rcond.Broadcast()
	st.rmu.Unlock()
}

// Abort ends the stream from the server's side while its handler runs:
// the handler's context is canceled, and Recv returns err once the
// messages already received are read. The handler's return still decides
// the call's status.
func (st *stream) Abort(err error) { st.cancel(err) }

// transportStream is st as grpc.SetHeader, grpc.SendHeader and
// grpc.SetTrailer find it in the context.
type transportStream struct{ st *stream }

func (t transportStream) Method() string                  { return t.st.path }
func (t transportStream) SetHeader(md metadata.MD) error  { return t.st.SetHeader(md) }
func (t transportStream) SendHeader(md metadata.MD) error { return t.st.SendHeader(md) }
func (t transportStream) SetTrailer(md metadata.MD) error {
	t.st.SetTrailer(md)
	return nil
}

// recvData adds a DATA frame's payload (padding included in n, the frame's
// flow-controlled length) and splits off the complete messages. It returns
// how much of the client's stream window to grant back now: a unary call's
// request is granted as it arrives (it runs once whole, and its size is
// bounded), a streaming call's as its handler reads it (next).
func (st *stream) recvData(b []byte, n int) (int, error) {
	st.rmu.Lock()
	defer st.rmu.Unlock()
	if st.rend {
		return 0, status.Error(codes.Internal, "data after the end of the stream")
	}
	if st.m.unary != nil {
		st.unacked += n
	} else {
		st.unacked += n - len(b) // padding is consumed at once
	}
	grant := 0
	if st.unacked >= streamUpdateAt {
		grant, st.unacked = st.unacked, 0
	}
	st.rbuf = append(st.rbuf, b...)
	for len(st.rbuf) >= 5 {
		if st.rbuf[0] != 0 {
			return 0, status.Error(codes.Unimplemented, "compressed messages are not supported")
		}
		size := binary.BigEndian.Uint32(st.rbuf[1:5])
		if uint64(size) > uint64(st.c.s.opts.maxRecv) {
			return 0, status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", size, st.c.s.opts.maxRecv)
		}
		if len(st.rbuf) < 5+int(size) {
			break
		}
		msg := make([]byte, size)
		copy(msg, st.rbuf[5:5+size])
		st.msgs = append(st.msgs, msg)
		rest := copy(st.rbuf, st.rbuf[5+size:])
		st.rbuf = st.rbuf[:rest]
	}
	st.rcond.Broadcast()
	return grant, nil
}

// recvEnd records that the client ended its side (err nil) or that the
// stream failed.
func (st *stream) recvEnd(err error) {
	st.rmu.Lock()
	st.rend = true
	if err != nil && st.rerr == nil {
		st.rerr = err
	}
	st.rcond.Broadcast()
	st.rmu.Unlock()
}

// next returns the next request message, io.EOF once the client ended its
// side, or the stream's error. It grants the consumed bytes back to the
// client's stream window.
func (st *stream) next() ([]byte, error) {
	st.rmu.Lock()
	for len(st.msgs) == 0 && !st.rend && st.rerr == nil {
		st.rcond.Wait()
	}
	if len(st.msgs) == 0 {
		err := st.rerr
		if err == nil {
			if len(st.rbuf) > 0 {
				err = status.Error(codes.Internal, "the stream ended inside a message")
			} else {
				err = io.EOF
			}
		}
		st.rmu.Unlock()
		return nil, err
	}
	msg := st.msgs[0]
	st.msgs[0] = nil
	st.msgs = st.msgs[1:]
	inc := 0
	if st.m.unary == nil {
		st.unacked += 5 + len(msg)
	}
	if st.unacked >= streamUpdateAt && !st.rend {
		inc, st.unacked = st.unacked, 0
	}
	st.rmu.Unlock()
	if inc > 0 {
		st.c.write(func() error { return st.c.fr.WriteWindowUpdate(st.id, uint32(inc)) })
	}
	return msg, nil
}

// start runs the call on a worker, or has the reader run a unary call
// (conn.readLoop). The reader calls it.
func (st *stream) start() {
	st.startMu.Lock()
	if st.started {
		st.startMu.Unlock()
		return
	}
	st.started = true
	st.startMu.Unlock()
	if st.m.unary != nil {
		st.running = true
		st.c.unary.Add(1)
		if st.c.own == nil {
			st.c.own = st
			return
		}
	}
	st.c.s.run(st.serve)
}

func (st *stream) serve() {
	s := st.c.s
	var err error
	if st.m.unary != nil {
		var resp any
		resp, err = st.m.unary.Handler(st.m.impl, st.ctx, st.decodeUnary, s.unaryIn)
		if err == nil {
			err = st.SendMsg(resp)
		}
	} else {
		info := &grpc.StreamServerInfo{FullMethod: st.path, IsClientStream: st.m.stream.ClientStreams, IsServerStream: st.m.stream.ServerStreams}
		if s.streamIn != nil {
			err = s.streamIn(st.m.impl, st, info, st.m.stream.Handler)
		} else {
			err = st.m.stream.Handler(st.m.impl, st)
		}
	}
	st.c.endStream(st, err)
}

// decodeUnary is a unary handler's dec: the request's one message.
func (st *stream) decodeUnary(v any) error {
	msg, err := st.next()
	if errors.Is(err, io.EOF) {
		return status.Error(codes.Internal, "grpc: the request has no message")
	}
	if err != nil {
		return err
	}
	return st.decode(msg, v)
}

func (st *stream) decode(msg []byte, v any) error {
	var err error
	if pm, ok := v.(proto.Message); ok {
		err = proto.Unmarshal(msg, pm)
	} else {
		err = st.c.s.codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(msg)}, v)
	}
	if err != nil {
		return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	return nil
}

// encode returns m as a gRPC message: the 5-byte prefix (uncompressed,
// length), then m's encoding. A protobuf message is encoded straight after
// the prefix; anything else goes through the registered codec.
func (s *Server) encode(m any) ([]byte, error) {
	var buf []byte
	if pm, ok := m.(proto.Message); ok {
		size := proto.Size(pm)
		if size > s.opts.maxSend {
			return nil, status.Errorf(codes.ResourceExhausted, "grpc: trying to send message larger than max (%d vs. %d)", size, s.opts.maxSend)
		}
		var err error
		buf, err = proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(make([]byte, 5, 5+size), pm)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
		}
	} else {
		data, err := s.codec.Marshal(m)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
		}
		defer data.Free()
		if data.Len() > s.opts.maxSend {
			return nil, status.Errorf(codes.ResourceExhausted, "grpc: trying to send message larger than max (%d vs. %d)", data.Len(), s.opts.maxSend)
		}
		buf = make([]byte, 5+data.Len())
		data.CopyTo(buf[5:])
	}
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(buf)-5))
	return buf, nil
}

// Context implements grpc.ServerStream.
func (st *stream) Context() context.Context { return st.ctx }

// SetHeader implements grpc.ServerStream.
func (st *stream) SetHeader(md metadata.MD) error {
	st.hmu.Lock()
	defer st.hmu.Unlock()
	if st.sentHeader || st.ended {
		return status.Error(codes.Internal, "transport: SetHeader called after the header was sent")
	}
	st.header = metadata.Join(st.header, md)
	return nil
}

// SendHeader implements grpc.ServerStream.
func (st *stream) SendHeader(md metadata.MD) error {
	if err := st.SetHeader(md); err != nil {
		return err
	}
	st.hmu.Lock()
	err := st.writeHeaderLocked()
	st.hmu.Unlock()
	st.c.flushLater()
	return err
}

// SetTrailer implements grpc.ServerStream.
func (st *stream) SetTrailer(md metadata.MD) {
	st.hmu.Lock()
	st.trailer = metadata.Join(st.trailer, md)
	st.hmu.Unlock()
}

// writeHeaderLocked sends the response headers once; hmu held. They wait
// in the buffer for the message that follows.
func (st *stream) writeHeaderLocked() error {
	if st.sentHeader {
		return nil
	}
	st.sentHeader = true
	md := st.header
	return st.c.writeFlush(func() error {
		return st.c.writeHeaders(st.id, false, func(enc *hpack.Encoder) {
			enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
			enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
			writeMD(enc, md)
		})
	}, false)
}

// SendMsg implements grpc.ServerStream: it encodes m and sends it, waiting
// for the client's flow-control windows as needed.
func (st *stream) SendMsg(m any) error {
	if err := st.ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	buf, err := st.c.s.encode(m)
	if err != nil {
		return err
	}
	st.hmu.Lock()
	if st.ended {
		st.hmu.Unlock()
		return status.Error(codes.Internal, "transport: the stream is done")
	}
	err = st.writeHeaderLocked()
	st.hmu.Unlock()
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	return st.c.writeData(st, buf)
}

// RecvMsg implements grpc.ServerStream.
func (st *stream) RecvMsg(m any) error {
	msg, err := st.next()
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return status.FromContextError(err).Err()
		}
		return err
	}
	return st.decode(msg, m)
}

// writeData sends b on st as DATA frames within the client's windows. A
// unary call's message is left buffered for its trailers to flush; a
// streaming call's, for the flusher.
func (c *conn) writeData(st *stream, b []byte) error {
	if st.m.unary == nil {
		defer c.flushLater()
	}
	for len(b) > 0 {
		c.fcMu.Lock()
		if !c.closed && st.ctx.Err() == nil && (c.sendConn <= 0 || st.sendWindow <= 0) {
			// Whatever waits in the buffer must reach the client for it
			// to grant more.
			c.fcMu.Unlock()
			c.write(func() error { return nil })
			c.fcMu.Lock()
		}
		for !c.closed && st.ctx.Err() == nil && (c.sendConn <= 0 || st.sendWindow <= 0) {
			c.fcCond.Wait()
		}
		if c.closed {
			c.fcMu.Unlock()
			return status.Error(codes.Unavailable, "transport: the connection is closed")
		}
		if err := st.ctx.Err(); err != nil {
			c.fcMu.Unlock()
			return status.FromContextError(err).Err()
		}
		n := int64(len(b))
		n = min(n, c.sendConn, st.sendWindow, int64(c.maxFrame))
		c.sendConn -= n
		st.sendWindow -= n
		c.fcMu.Unlock()
		chunk := b[:n]
		b = b[n:]
		if err := c.writeFlush(func() error { return c.fr.WriteData(st.id, false, chunk) }, false); err != nil {
			return status.Error(codes.Unavailable, err.Error())
		}
	}
	return nil
}

// writeStatus ends st's response with err's status: trailers after the
// headers, or a trailers-only response if no header was sent.
func (c *conn) writeStatus(st *stream, err error) {
	st.hmu.Lock()
	if st.ended {
		st.hmu.Unlock()
		return
	}
	st.ended = true
	headerSent := st.sentHeader
	st.sentHeader = true
	header, trailer := st.header, st.trailer
	st.hmu.Unlock()
	s, ok := status.FromError(err)
	if !ok {
		s = status.FromContextError(err)
	}
	var details string
	if p := s.Proto(); len(p.GetDetails()) > 0 {
		if b, merr := proto.Marshal(p); merr == nil {
			details = encodeBinHeader(b)
		}
	}
	// A unary call that ends while others run on the connection leaves its
	// response to the flusher, which sends it with those of the calls that
	// end meanwhile in one system call; a lone call flushes its own at once.
	direct := st.m == nil || st.m.unary == nil || c.unary.Load() <= 1
	if !direct {
		defer c.flushLater()
	}
	c.writeFlush(func() error {
		return c.writeHeaders(st.id, true, func(enc *hpack.Encoder) {
			if !headerSent {
				enc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
				enc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
				writeMD(enc, header)
			}
			enc.WriteField(hpack.HeaderField{Name: "grpc-status", Value: strconv.Itoa(int(s.Code()))})
			if msg := s.Message(); msg != "" {
				enc.WriteField(hpack.HeaderField{Name: "grpc-message", Value: encodeGrpcMessage(msg)})
			}
			if details != "" {
				enc.WriteField(hpack.HeaderField{Name: "grpc-status-details-bin", Value: details})
			}
			writeMD(enc, trailer)
		})
	}, direct)
}

// writeHeaders encodes a header block with fill and writes it as HEADERS
// (and CONTINUATION) frames; wmu held.
func (c *conn) writeHeaders(id uint32, end bool, fill func(*hpack.Encoder)) error {
	c.hbuf.Reset()
	fill(c.henc)
	block := c.hbuf.Bytes()
	c.fcMu.Lock()
	max := c.maxFrame
	c.fcMu.Unlock()
	first := block
	if len(first) > max {
		first = block[:max]
	}
	block = block[len(first):]
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: end, EndHeaders: len(block) == 0}); err != nil {
		return err
	}
	for len(block) > 0 {
		chunk := block
		if len(chunk) > max {
			chunk = chunk[:max]
		}
		block = block[len(chunk):]
		if err := c.fr.WriteContinuation(id, len(block) == 0, chunk); err != nil {
			return err
		}
	}
	return nil
}

// writeMD writes metadata as header fields, binary values base64-encoded.
func writeMD(enc *hpack.Encoder, md metadata.MD) {
	for k, vs := range md {
		if isReservedHeader(k) {
			continue
		}
		for _, v := range vs {
			if len(k) > 4 && k[len(k)-4:] == "-bin" {
				v = encodeBinHeader([]byte(v))
			}
			enc.WriteField(hpack.HeaderField{Name: k, Value: v})
		}
	}
}
