package h2rpc

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// A handler finds three things in its context through gRPC's accessors:
// the request's metadata (metadata.FromIncomingContext), the client's
// address (peer.FromContext) and the stream (grpc.SetHeader and the like,
// through grpc.ServerTransportStreamFromContext). Stored the usual way,
// with a context.WithValue each, they cost three contexts per call, and
// the metadata a map built whether or not anything reads it (cairn's
// handlers do not yet). A streamCtx answers the three lookups itself,
// from the stream, and builds the metadata map only when it is asked for.
//
// It must answer under the keys the accessors look up, which gRPC does
// not export: keyOf learns each by calling the accessor on a context that
// records what it is asked. lazyContext checks the result once, through
// the accessors themselves; should a gRPC release look its values up some
// other way, streams fall back to context.WithValue.

// keyRecorder is a context that records the first key asked of it.
type keyRecorder struct {
	context.Context
	key any
}

func (r *keyRecorder) Value(k any) any {
	if r.key == nil {
		r.key = k
	}
	return nil
}

// keyOf returns the key lookup asks its context for.
func keyOf(lookup func(context.Context)) any {
	r := &keyRecorder{Context: context.Background()}
	lookup(r)
	return r.key
}

var (
	mdKey     = keyOf(func(ctx context.Context) { metadata.FromIncomingContext(ctx) })
	peerKey   = keyOf(func(ctx context.Context) { peer.FromContext(ctx) })
	streamKey = keyOf(func(ctx context.Context) { grpc.ServerTransportStreamFromContext(ctx) })

	// lazyContext reports whether streamCtx answers gRPC's accessors.
	lazyContext = checkLazyContext()
)

// streamCtx is a stream's context: its cancelable context, which answers
// the metadata, peer and stream lookups from the stream.
type streamCtx struct {
	context.Context
	st *stream
}

func (c *streamCtx) Value(k any) any {
	switch k {
	case mdKey:
		return c.st.metadata()
	case peerKey:
		return c.st.c.peer
	case streamKey:
		return transportStream{c.st}
	}
	return c.Context.Value(k)
}

// mdFields are a request's metadata fields as they came, the usual few
// without an allocation of their own.
type mdFields struct {
	first [4][2]string
	n     int
	more  [][2]string
}

func (f *mdFields) add(k, v string) {
	if f.n < len(f.first) {
		f.first[f.n] = [2]string{k, v}
		f.n++
		return
	}
	f.more = append(f.more, [2]string{k, v})
}

// md builds the metadata map: repeated keys keep their values in order.
func (f *mdFields) md() metadata.MD {
	md := make(metadata.MD, f.n+len(f.more))
	for _, kv := range f.first[:f.n] {
		md[kv[0]] = append(md[kv[0]], kv[1])
	}
	for _, kv := range f.more {
		md[kv[0]] = append(md[kv[0]], kv[1])
	}
	return md
}

// metadata is the stream's metadata map, built the first time it is asked
// for.
func (st *stream) metadata() metadata.MD {
	st.mdOnce.Do(func() { st.md = st.mdf.md() })
	return st.md
}

// checkLazyContext reports whether gRPC's accessors find what a streamCtx
// holds.
func checkLazyContext() bool {
	if mdKey == nil || peerKey == nil || streamKey == nil {
		return false
	}
	c := &conn{peer: &peer.Peer{}}
	st := &stream{c: c}
	st.mdf.add("k", "v")
	ctx := &streamCtx{Context: context.Background(), st: st}
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok || len(md["k"]) != 1 || md["k"][0] != "v" {
		return false
	}
	if p, ok := peer.FromContext(ctx); !ok || p != c.peer {
		return false
	}
	ts, ok := grpc.ServerTransportStreamFromContext(ctx).(transportStream)
	return ok && ts.st == st
}

// get returns the first value of key.
func (f *mdFields) get(key string) (string, bool) {
	for _, kv := range f.first[:f.n] {
		if kv[0] == key {
			return kv[1], true
		}
	}
	for _, kv := range f.more {
		if kv[0] == key {
			return kv[1], true
		}
	}
	return "", false
}

// IncomingValue returns the first value of the request metadata key (in
// lower case) from a handler's context. On a context this package made it
// reads the request's fields and builds no metadata map; on any other it
// asks gRPC's metadata.
func IncomingValue(ctx context.Context, key string) (string, bool) {
	if sc, ok := ctx.(*streamCtx); ok {
		return sc.st.mdf.get(key)
	}
	if v := metadata.ValueFromIncomingContext(ctx, key); len(v) > 0 {
		return v[0], true
	}
	return "", false
}
