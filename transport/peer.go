package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// errStreamClosed ends a stream that the receiver closed.
var errStreamClosed = errors.New("transport: stream closed by peer")

// peer is the sending side towards one member: a bounded queue and one
// goroutine (run) that keeps a stream open and writes batches to it.
type peer struct {
	t      *Transport
	id     uint64
	queue  chan *raftpb.Message
	ctx    context.Context // canceled by RemovePeer or Stop
	cancel context.CancelFunc
	down   atomic.Bool // the last connection attempt or stream failed

	sentMsgs    atomic.Uint64 // messages written to streams
	sentBatches atomic.Uint64 // writes (batches) to streams
	dropped     atomic.Uint64 // messages not queued: peer down or queue full

	mu           sync.Mutex
	urls         []string           // guarded by mu
	urlIdx       int                // guarded by mu; the URL to try next
	active       bool               // guarded by mu
	since        time.Time          // guarded by mu
	lastErr      error              // guarded by mu
	streamCancel context.CancelFunc // guarded by mu; ends the current stream
	loggedErr    string             // guarded by mu; last failure logged
	loggedAt     time.Time          // guarded by mu
}

func newPeer(t *Transport, id uint64, urls []string) *peer {
	ctx, cancel := context.WithCancel(t.ctx)
	return &peer{
		t: t, id: id, ctx: ctx, cancel: cancel,
		queue: make(chan *raftpb.Message, t.cfg.QueueSize),
		urls:  slices.Clone(urls),
		since: time.Now(),
	}
}

// enqueue queues m without blocking; false if the peer is down or full.
func (p *peer) enqueue(m *raftpb.Message) bool {
	if p.down.Load() {
		p.dropped.Add(1)
		return false
	}
	select {
	case p.queue <- m:
		return true
	default:
		p.dropped.Add(1)
		return false
	}
}

func (p *peer) setURLs(urls []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if slices.Equal(p.urls, urls) {
		return
	}
	cur := p.urls[p.urlIdx%len(p.urls)]
	p.urls = slices.Clone(urls)
	p.urlIdx = 0
	if !slices.Contains(urls, cur) && p.streamCancel != nil {
		p.streamCancel()
	}
}

func (p *peer) status() PeerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PeerStatus{
		ID: p.id, URLs: slices.Clone(p.urls), Active: p.active, Since: p.since, LastError: p.lastErr,
		MessagesSent: p.sentMsgs.Load(), BatchesSent: p.sentBatches.Load(),
		Dropped: p.dropped.Load(), Queued: len(p.queue),
	}
}

func (p *peer) setActive(active bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.active != active {
		p.since = time.Now()
	}
	p.active = active
	p.lastErr = err
	if !active {
		p.urlIdx++ // try the next URL next time
	}
}

// run keeps a stream to the peer open until the peer is removed or the
// transport stops, reconnecting with bounded exponential backoff.
func (p *peer) run() {
	defer p.t.wg.Done()
	backoff := p.t.cfg.BackoffMin
	for {
		connected, err := p.stream()
		if p.ctx.Err() != nil {
			p.setActive(false, ErrStopped)
			return
		}
		p.down.Store(true)
		p.setActive(false, err)
		p.logFailure(err)
		p.t.cfg.Raft.ReportUnreachable(p.id)
		if connected {
			backoff = p.t.cfg.BackoffMin
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		timer := time.NewTimer(wait)
		select {
		case <-p.ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		backoff = min(2*backoff, p.t.cfg.BackoffMax)
	}
}

// logFailure logs a stream failure, repeating an identical message at most
// every 30 seconds.
func (p *peer) logFailure(err error) {
	p.mu.Lock()
	msg := err.Error()
	repeat := msg == p.loggedErr && time.Since(p.loggedAt) < 30*time.Second
	if !repeat {
		p.loggedErr, p.loggedAt = msg, time.Now()
	}
	p.mu.Unlock()
	if repeat {
		return
	}
	var rej *RejectedError
	if errors.As(err, &rej) {
		p.t.log.Error(rej.Error(), "peer", fmt.Sprintf("%x", p.id))
		return
	}
	p.t.log.Warn("stream to peer failed", "peer", fmt.Sprintf("%x", p.id), "err", err)
}

// stream opens one stream and writes batches to it until it fails. connected
// reports whether the peer accepted the stream.
func (p *peer) stream() (connected bool, err error) {
	ctx, cancel := context.WithCancelCause(p.ctx)
	defer cancel(nil)
	p.mu.Lock()
	url := p.urls[p.urlIdx%len(p.urls)]
	p.streamCancel = func() { cancel(errors.New("transport: peer URLs changed")) }
	p.mu.Unlock()

	pr, pw := io.Pipe()
	stopPipe := context.AfterFunc(ctx, func() { pr.CloseWithError(context.Cause(ctx)) })
	defer stopPipe()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+pathStream, pr)
	if err != nil {
		return false, err
	}
	p.t.setHeaders(req.Header, p.id)
	resp, err := p.t.doWithTimeout(ctx, cancel, p.t.streamClient, req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, p.t.rejection(p.id, resp)
	}
	// Once the response headers are in, canceling the request context no
	// longer aborts an HTTP/2 stream: a body write waiting for flow control
	// and the body read below would both wait for the peer. Closing the
	// response body aborts the stream and wakes both, so do it as soon as
	// the stream's context ends (write timeout, URL change, Stop, failure).
	stopBody := context.AfterFunc(ctx, func() { resp.Body.Close() })
	defer stopBody()
	p.down.Store(false)
	p.setActive(true, nil)
	p.t.log.Info("stream to peer established", "peer", fmt.Sprintf("%x", p.id), "url", url)

	// The receiver never writes a body: its end is the end of the stream.
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		_, err := io.Copy(io.Discard, resp.Body)
		if err == nil {
			err = errStreamClosed
		}
		cancel(err)
	}()
	defer func() { cancel(nil); <-watchDone }()
	return true, p.writeLoop(ctx, cancel, pw)
}

// writeLoop drains the queue into batched writes until ctx ends or a write
// fails.
func (p *peer) writeLoop(ctx context.Context, cancel context.CancelCauseFunc, pw *io.PipeWriter) error {
	bw := bufio.NewWriterSize(pw, 64<<10)
	var buf []byte
	for {
		var m *raftpb.Message
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case m = <-p.queue:
		}
		if len(p.queue) == 0 {
			// Let the goroutines about to send run first, so that their
			// messages (a follower's forwarded proposals, arriving one per
			// client request) leave in this batch.
			runtime.Gosched()
		}
		var n int
		buf, n = p.appendBatch(buf[:0], m)
		timer := time.AfterFunc(p.t.cfg.WriteTimeout, func() {
			cancel(fmt.Errorf("transport: write to peer %x timed out after %v", p.id, p.t.cfg.WriteTimeout))
		})
		_, err := bw.Write(buf)
		if err == nil {
			err = bw.Flush()
		}
		timer.Stop()
		if err != nil {
			if c := context.Cause(ctx); c != nil {
				err = c
			}
			return err
		}
		p.sentMsgs.Add(uint64(n))
		p.sentBatches.Add(1)
		if cap(buf) > 4<<20 {
			buf = nil
		}
	}
}

// appendBatch appends the frame of m and of the messages queued behind it, up
// to MaxBatch, and returns how many frames it appended. A message that cannot
// be framed (too large) is dropped and logged.
func (p *peer) appendBatch(buf []byte, m *raftpb.Message) ([]byte, int) {
	n := 0
	for tried := 1; ; tried++ {
		var err error
		if buf, err = appendFrame(buf, m, p.t.cfg.MaxFrameSize); err != nil {
			p.t.log.Error("dropping message", "peer", fmt.Sprintf("%x", p.id), "type", m.GetType(), "err", err)
		} else {
			n++
		}
		if tried >= p.t.cfg.MaxBatch {
			return buf, n
		}
		select {
		case m = <-p.queue:
		default:
			return buf, n
		}
	}
}
