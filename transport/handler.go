package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// streamUpgrade is the protocol a message stream upgrades its HTTP/1.1
// request to.
const streamUpgrade = "cairn-raft-stream"

// Paths served by Handler, all under PathPrefix.
const (
	PathPrefix   = "/raft/"
	pathStream   = "/raft/stream"
	pathSnapshot = "/raft/snapshot"
	pathProbe    = "/raft/probe"
)

// Headers carried by every request and response.
const (
	hdrFrom      = "X-Cairn-From"       // sender member ID, hex
	hdrTo        = "X-Cairn-To"         // receiver member ID, hex (0 or absent: any, probes only)
	hdrClusterID = "X-Cairn-Cluster-Id" // cluster ID, hex
	hdrMemberID  = "X-Cairn-Member-Id"  // responder's member ID, hex
	hdrReject    = "X-Cairn-Reject"     // why a request was refused
	hdrKeepalive = "X-Cairn-Keepalive"  // a stream's keep-alive interval (Go duration)
)

// Values of hdrReject.
const (
	rejectCluster = "cluster-id-mismatch"
	rejectMember  = "wrong-member"
	rejectRemoved = "member-removed"
	rejectBad     = "bad-request"
	rejectStopped = "stopped"
)

// Handler serves the peer endpoints under PathPrefix. The server mounts it on
// the peer listener (configured with ConfigureServer); other paths are free.
func (t *Transport) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pathStream, t.handleStream)
	mux.HandleFunc("POST "+pathSnapshot, t.handleSnapshot)
	mux.HandleFunc("GET "+pathProbe, t.handleProbe)
	return mux
}

func (t *Transport) setHeaders(h http.Header, to uint64) {
	h.Set(hdrFrom, strconv.FormatUint(t.cfg.LocalID, 16))
	h.Set(hdrTo, strconv.FormatUint(to, 16))
	h.Set(hdrClusterID, strconv.FormatUint(t.cfg.ClusterID, 16))
}

func parseID(h http.Header, key string, required bool) (uint64, error) {
	v := h.Get(key)
	if v == "" && !required {
		return 0, nil
	}
	id, err := strconv.ParseUint(v, 16, 64)
	if err != nil || (required && id == 0) {
		return 0, fmt.Errorf("%w: header %s: %q", ErrBadRequest, key, v)
	}
	return id, nil
}

// checkRequest validates the identity headers of an incoming request. On
// failure it writes the refusal and returns false.
func (t *Transport) checkRequest(w http.ResponseWriter, r *http.Request, anyTo bool) (from uint64, ok bool) {
	w.Header().Set(hdrMemberID, strconv.FormatUint(t.cfg.LocalID, 16))
	w.Header().Set(hdrClusterID, strconv.FormatUint(t.cfg.ClusterID, 16))
	from, err := parseID(r.Header, hdrFrom, true)
	if err != nil {
		t.refuse(w, http.StatusBadRequest, rejectBad, err.Error())
		return 0, false
	}
	cid, err := parseID(r.Header, hdrClusterID, true)
	if err != nil {
		t.refuse(w, http.StatusBadRequest, rejectBad, err.Error())
		return 0, false
	}
	to, err := parseID(r.Header, hdrTo, !anyTo)
	if err != nil {
		t.refuse(w, http.StatusBadRequest, rejectBad, err.Error())
		return 0, false
	}
	log := t.log.With("from", fmt.Sprintf("%x", from), "path", r.URL.Path, "remote", r.RemoteAddr)
	switch {
	case cid != t.cfg.ClusterID:
		log.Error("rejected peer request: cluster ID mismatch",
			"their_cluster", fmt.Sprintf("%x", cid), "our_cluster", fmt.Sprintf("%x", t.cfg.ClusterID))
		t.refuse(w, http.StatusPreconditionFailed, rejectCluster,
			fmt.Sprintf("cluster ID mismatch: ours %x, yours %x", t.cfg.ClusterID, cid))
	case to != 0 && to != t.cfg.LocalID:
		log.Error("rejected peer request addressed to another member",
			"addressed_to", fmt.Sprintf("%x", to))
		t.refuse(w, http.StatusPreconditionFailed, rejectMember,
			fmt.Sprintf("this is member %x, not %x", t.cfg.LocalID, to))
	case t.cfg.Raft.IsIDRemoved(from):
		log.Warn("rejected peer request from a removed member")
		t.refuse(w, http.StatusGone, rejectRemoved, fmt.Sprintf("member %x has been removed", from))
	default:
		return from, true
	}
	return 0, false
}

func (t *Transport) refuse(w http.ResponseWriter, status int, reason, msg string) {
	w.Header().Set(hdrReject, reason)
	http.Error(w, msg, status)
}

// rejection turns a refusal response into a *RejectedError (and reports our
// removal).
func (t *Transport) rejection(peer uint64, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	e := &RejectedError{
		Peer: peer, OurCluster: t.cfg.ClusterID, Status: resp.StatusCode,
		Detail: strings.TrimSpace(string(body)),
	}
	e.TheirCluster, _ = parseID(resp.Header, hdrClusterID, false)
	e.TheirID, _ = parseID(resp.Header, hdrMemberID, false)
	switch resp.Header.Get(hdrReject) {
	case rejectCluster:
		e.Reason = ErrClusterIDMismatch
	case rejectMember:
		e.Reason = ErrWrongMember
	case rejectRemoved:
		e.Reason = ErrMemberRemoved
		t.notifyRemoved(peer)
	case rejectStopped:
		e.Reason = ErrStopped
	default:
		e.Reason = ErrBadRequest
	}
	return e
}

// serveContext returns a context ended by the request's end or by Stop, and
// arranges for a blocked body read to fail when Stop is called.
func (t *Transport) serveContext(w http.ResponseWriter, r *http.Request) (context.Context, func()) {
	ctx, cancel := context.WithCancel(r.Context())
	rc := http.NewResponseController(w)
	fired := make(chan struct{})
	stop := context.AfterFunc(t.ctx, func() {
		defer close(fired)
		cancel()
		_ = rc.SetReadDeadline(time.Now())
	})
	// The controller must not be used after the handler returns: wait for a
	// concurrently running stop to finish.
	return ctx, func() {
		if !stop() {
			<-fired
		}
		cancel()
	}
}

// handleStream receives one long-lived message stream from a peer.
// admit checks an incoming stream or snapshot request's identity and that
// the transport runs; on success the caller must call release when done.
// ctx ends with the request or with Stop.
func (t *Transport) admit(w http.ResponseWriter, r *http.Request) (from uint64, ctx context.Context, release func(), ok bool) {
	from, ok = t.checkRequest(w, r, false)
	if !ok {
		return 0, nil, nil, false
	}
	if !t.enter() {
		t.refuse(w, http.StatusServiceUnavailable, rejectStopped, ErrStopped.Error())
		return 0, nil, nil, false
	}
	ctx, done := t.serveContext(w, r)
	return from, ctx, func() {
		done()
		t.wg.Done()
	}, true
}

func (t *Transport) handleStream(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 1 || !strings.EqualFold(r.Header.Get("Upgrade"), streamUpgrade) {
		t.refuse(w, http.StatusBadRequest, rejectBad, "a stream request must upgrade to "+streamUpgrade+" over HTTP/1.1")
		return
	}
	keepalive, err := time.ParseDuration(r.Header.Get(hdrKeepalive))
	if err != nil || keepalive <= 0 {
		t.refuse(w, http.StatusBadRequest, rejectBad, fmt.Sprintf("bad %s: %q", hdrKeepalive, r.Header.Get(hdrKeepalive)))
		return
	}
	from, ctx, release, ok := t.admit(w, r)
	if !ok {
		return
	}
	defer release()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.log.Warn("cannot take over a stream's connection", "err", err)
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n%s: %x\r\n%s: %x\r\n\r\n",
		streamUpgrade, hdrMemberID, t.cfg.LocalID, hdrClusterID, t.cfg.ClusterID)
	if err := brw.Flush(); err != nil {
		return
	}
	log := t.log.With("from", fmt.Sprintf("%x", from))
	log.Info("stream from peer accepted")
	received := t.receivedCounter(from)
	props := t.proposalForwarder(ctx, log, received)
	defer props.stop()
	dec := newFrameDecoder(brw.Reader, t.cfg.MaxFrameSize)
	// The sender sends a keep-alive frame every keepalive: silent for
	// three, it is gone (paused, partitioned) and the stream ends.
	silent := 3 * keepalive
	var deadline time.Time
	for {
		if now := time.Now(); deadline.Sub(now) < silent/2 {
			deadline = now.Add(silent)
			conn.SetReadDeadline(deadline)
		}
		m, err := dec.decode()
		if err != nil {
			switch {
			case ctx.Err() != nil:
				log.Info("stream from peer closed", "err", context.Cause(ctx), "received", received.Load())
			case errors.Is(err, io.EOF):
				log.Info("stream from peer ended by the peer", "received", received.Load())
			case errors.Is(err, os.ErrDeadlineExceeded):
				log.Warn("stream from peer ended: the peer was silent", "for", silent, "received", received.Load())
			default:
				log.Warn("stream from peer ended", "err", err, "received", received.Load())
			}
			return
		}
		if dec.size == 0 {
			// A keep-alive: answer it.
			conn.SetWriteDeadline(time.Now().Add(keepalive))
			if _, err := conn.Write([]byte{0}); err != nil {
				log.Warn("stream from peer ended: cannot answer its keep-alive", "err", err, "received", received.Load())
				return
			}
			continue
		}
		if t.cfg.Raft.IsIDRemoved(from) {
			// The sender was removed while its stream was open: end the
			// stream, so its next attempt is refused with 410 and it learns
			// of its removal.
			log.Warn("closing stream from a removed member")
			return
		}
		if err := t.checkMessage(m, from); err != nil {
			log.Warn("dropping message", "type", m.GetType(), "err", err)
			continue
		}
		if m.GetType() == raftpb.MessageType_MsgProp {
			props.forward(m)
			continue
		}
		if err := t.cfg.Raft.Process(ctx, m); err != nil {
			if ctx.Err() != nil {
				log.Info("stream from peer closed while raft took a message", "err", context.Cause(ctx), "received", received.Load())
				return
			}
			log.Warn("raft refused message", "type", m.GetType(), "err", err)
			continue
		}
		received.Add(1)
	}
}

// proposalQueueSize bounds the proposals of one stream waiting for raft.
const proposalQueueSize = 4096

// proposalForwarder hands one stream's proposals (MsgProp forwarded by a
// follower) to raft on a goroutine of their own. Raft.Process may block on a
// proposal (raft.Node's did while it knew no leader; the server's raftnode
// no longer does, but the interface does not promise it); done by the
// stream's reader, that would stall every later message of the stream,
// including the new leader's heartbeats that end the leaderless state (bug
// 1 of ROBUSTNESS.md: a resumed old leader stayed leaderless for good).
// Proposals that do not fit the bounded queue are dropped, as raft itself
// drops proposals it cannot take: the proposer's request times out.
type proposalForwarder struct {
	log     *slog.Logger
	queue   chan *raftpb.Message
	cancel  context.CancelFunc
	done    chan struct{}
	dropped int // only the stream's reader touches it
}

func (t *Transport) proposalForwarder(ctx context.Context, log *slog.Logger, received *atomic.Uint64) *proposalForwarder {
	ctx, cancel := context.WithCancel(ctx)
	f := &proposalForwarder{log: log, queue: make(chan *raftpb.Message, proposalQueueSize),
		cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for {
			select {
			case <-ctx.Done():
				return
			case m := <-f.queue:
				if err := t.cfg.Raft.Process(ctx, m); err != nil {
					if ctx.Err() != nil {
						return
					}
					log.Warn("raft refused a forwarded proposal", "err", err)
					continue
				}
				received.Add(1)
			}
		}
	}()
	return f
}

// forward queues m without blocking, or drops it if the queue is full.
func (f *proposalForwarder) forward(m *raftpb.Message) {
	select {
	case f.queue <- m:
	default:
		f.dropped++
		if f.dropped == 1 || f.dropped%1000 == 0 {
			f.log.Warn("dropping forwarded proposals: raft is not taking them (no leader?)", "dropped", f.dropped)
		}
	}
}

// stop ends the forwarder's goroutine and waits for it.
func (f *proposalForwarder) stop() {
	f.cancel()
	<-f.done
}

// checkMessage checks a message received on a stream from member from.
func (t *Transport) checkMessage(m *raftpb.Message, from uint64) error {
	forwarded := m.GetType() == raftpb.MessageType_MsgProp || m.GetType() == raftpb.MessageType_MsgReadIndex
	switch {
	case m.GetTo() != t.cfg.LocalID:
		return fmt.Errorf("%w: message to %x", ErrWrongMember, m.GetTo())
	case m.GetFrom() != from && !forwarded:
		// raft forwards proposals and read-index requests with the
		// original requester as From: a member that stepped down passes
		// on what its former followers sent it.
		return fmt.Errorf("%w: message from %x on the stream of %x", ErrBadRequest, m.GetFrom(), from)
	case m.GetType() == raftpb.MessageType_MsgSnap:
		return fmt.Errorf("%w: MsgSnap on a message stream", ErrBadRequest)
	}
	return nil
}
