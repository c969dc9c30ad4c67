// Package h2rpc is a lean gRPC server transport: it serves services
// registered the way grpc.Server's are (generated RegisterXServer functions
// take any grpc.ServiceRegistrar) over plaintext HTTP/2, with
// golang.org/x/net/http2's framer and HPACK. It is the gRPC server of every
// cairn member unless --grpc-server=grpc-go asks for grpc-go's.
//
// Why: grpc-go's server spends, per unary call, a goroutine hand-off to a
// stream worker and another to its writer goroutine (loopyWriter), and its
// own bookkeeping around both; in cairn's profiles its code was the largest
// share of a member's CPU. A throwaway comparison serving one canned
// response (BENCHMARKS.md, tenth pass) found a minimal HTTP/2 server
// spending half grpc-go's CPU per call.
//
// # Design
//
// One goroutine at a time reads a connection's frames. A unary call runs
// once its request has arrived whole: on a reused worker goroutine if the
// reader has more frames buffered, else on the reader itself, which first
// hands the reading to a worker (a lone client's call starts without a
// goroutine hand-off on its path). A streaming call runs on a worker from
// its headers on. Clients' PINGs are acknowledged once the reader has no
// whole frame left, not ahead of the calls that arrived with them. Writers
// share the connection's buffered
// writer under a mutex. A unary call that is the only one running on its
// connection flushes its response (headers, message, trailers) itself: a
// lone call's response leaves at once. Otherwise, and for every message of
// a streaming call, the connection's flusher goroutine is woken to flush;
// when little is buffered it first yields, as grpc-go's writer does, so
// that the calls about to write run first and their responses (or a
// watch's events from many streams) leave in one system call.
//
// The reader decodes a request's header block itself, field by field as
// the HPACK decoder emits them (headers.go), checking each as x/net's
// framer would (pseudo-header fields first, each once; valid names and
// values; the header list within 16 KiB) and filing it into the request;
// the framer's own decoding collected them into a new slice per request
// first. A handler's context answers gRPC's metadata, peer and stream
// lookups from the stream itself and builds the metadata map only if it
// is read (ctx.go); should a gRPC release look them up differently, it
// falls back to context.WithValue.
//
// Flow control (RFC 9113, 6.9) both ways: responses wait for the client's
// connection and stream windows; this server grants 16 MiB for the
// connection (back as it reads) and 1 MiB per stream, back as a unary
// request arrives (its size is bounded by MaxRecvMsgSize) or as a streaming
// handler reads its messages.
//
// Supported: unary and streaming calls, grpc-timeout deadlines, request
// metadata (including -bin headers) in the incoming context, peer
// information, response headers and trailers set through grpc.SetHeader,
// grpc.SendHeader and grpc.SetTrailer or the stream, status codes, messages
// and details, interceptors, size limits, GOAWAY on a graceful stop.
// Not supported: compression (a compressed request is refused with
// Unimplemented), TLS, server-side keepalive enforcement.
package h2rpc
