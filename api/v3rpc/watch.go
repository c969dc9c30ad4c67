package v3rpc

import (
	"context"
	"errors"
	"io"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/mvcc"
)

// WatchBackend is the member's watch side.
type WatchBackend interface {
	Member
	// NewWatchStream opens a group of watches answered on one stream; the
	// caller closes it.
	NewWatchStream() *mvcc.WatchStream
}

// DefaultWatchProgressNotifyInterval is etcd's period of progress
// notifications for watches that ask for them.
const DefaultWatchProgressNotifyInterval = 10 * time.Minute

type watchServer struct {
	pb.UnimplementedWatchServer
	a *API
}

// Watch serves one bidirectional stream of many watches: requests are read
// by one goroutine, responses written by another, until the client goes
// away or an I/O error ends the stream. Like etcd, a client that only
// closes its sending side keeps receiving.
func (s *watchServer) Watch(stream pb.Watch_WatchServer) error {
	ws := s.a.b.NewWatchStream()
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	errc := make(chan error, 2)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		errc <- s.sendLoop(ctx, stream, ws)
	}()
	go func() {
		if err := s.recvLoop(stream, ws); err != nil {
			errc <- err
		}
	}()
	go s.progressLoop(ctx, ws)
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		err = ctx.Err()
	}
	cancel()
	ws.Close()
	<-sent
	if errors.Is(err, mvcc.ErrWatchStreamClosed) {
		return rpctypes.ErrGRPCStopped // the member is stopping; the client retries elsewhere
	}
	return toGRPCError(err)
}

func (s *watchServer) recvLoop(stream pb.Watch_WatchServer, ws *mvcc.WatchStream) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch u := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			if u.CreateRequest != nil {
				s.create(ws, u.CreateRequest)
			}
		case *pb.WatchRequest_CancelRequest:
			if u.CancelRequest != nil {
				ws.Cancel(u.CancelRequest.WatchId)
			}
		case *pb.WatchRequest_ProgressRequest:
			if u.ProgressRequest != nil {
				ws.RequestProgress()
			}
		default:
			s.a.cfg.Logger.Info("ignoring an unknown watch request", "type", u)
		}
	}
}

// create adds a watch with etcd's handling of the request's fields; the
// stream queues the created (or refused) response itself.
func (s *watchServer) create(ws *mvcc.WatchStream, c *pb.WatchCreateRequest) {
	if c.StartRevision < 0 {
		ws.Reject(rpctypes.ErrCompacted.Error())
		return
	}
	o := mvcc.WatchOptions{PrevKV: c.PrevKv, Fragment: c.Fragment, ProgressNotify: c.ProgressNotify}
	for _, f := range c.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			o.NoPut = true
		case pb.WatchCreateRequest_NODELETE:
			o.NoDelete = true
		}
	}
	// The stream queues etcd's refusal for a duplicate ID or empty range.
	_, _ = ws.Watch(c.WatchId, c.Key, c.RangeEnd, c.StartRevision, o)
}

func (s *watchServer) sendLoop(ctx context.Context, stream pb.Watch_WatchServer, ws *mvcc.WatchStream) error {
	limit := int(s.a.cfg.MaxRequestBytes) + grpcOverheadBytes
	for {
		r, err := ws.Next(ctx)
		if err != nil {
			return err
		}
		wr := &pb.WatchResponse{
			Header:          s.a.header(r.Revision),
			WatchId:         r.WatchID,
			Created:         r.Created,
			Canceled:        r.Canceled,
			CompactRevision: r.CompactRevision,
			CancelReason:    r.CancelReason,
			Events:          r.Events,
		}
		if r.Fragment {
			err = sendFragments(wr, limit, stream.Send)
		} else {
			err = stream.Send(wr)
		}
		if err != nil {
			return err
		}
	}
}

// progressLoop asks the stream for periodic progress notifications.
func (s *watchServer) progressLoop(ctx context.Context, ws *mvcc.WatchStream) {
	t := time.NewTicker(s.a.cfg.WatchProgressNotifyInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ws.ProgressTick()
		}
	}
}

// sendFragments sends wr as is when it is under limit bytes or has at most
// one event; otherwise it splits the events over several responses of at
// most limit bytes each (a single larger event goes alone), all but the
// last marked fragment, as etcd does for watches that ask for it.
func sendFragments(wr *pb.WatchResponse, limit int, send func(*pb.WatchResponse) error) error {
	if proto.Size(wr) < limit || len(wr.Events) < 2 {
		return send(wr)
	}
	base := proto.Size(&pb.WatchResponse{
		Header: wr.Header, WatchId: wr.WatchId, Created: wr.Created, Canceled: wr.Canceled,
		CompactRevision: wr.CompactRevision, CancelReason: wr.CancelReason, Fragment: true,
	})
	evs := wr.Events
	for len(evs) > 0 {
		n, size := 0, base
		for n < len(evs) {
			es := eventFieldSize(evs[n])
			if n > 0 && size+es >= limit {
				break
			}
			size += es
			n++
		}
		frag := &pb.WatchResponse{
			Header: wr.Header, WatchId: wr.WatchId, Created: wr.Created, Canceled: wr.Canceled,
			CompactRevision: wr.CompactRevision, CancelReason: wr.CancelReason,
			Events: evs[:n:n], Fragment: n < len(evs),
		}
		if err := send(frag); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
}

// eventFieldSize is the bytes one event adds to a WatchResponse: tag,
// length and message.
func eventFieldSize(ev *mvccpb.Event) int {
	n := proto.Size(ev)
	return protowire.SizeTag(11) + protowire.SizeBytes(n)
}
