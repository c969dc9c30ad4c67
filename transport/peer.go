package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
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
//
// The stream is a TCP connection of its own: an HTTP/1.1 POST to
// pathStream asking to upgrade to streamUpgrade, answered 101, after which
// this side writes frames and the receiver writes one byte per keep-alive
// frame, nothing else. (It was a POST body over HTTP/2; each batch then
// passed through a pipe and net/http's writer goroutine here, and its
// reader and handler goroutines on the receiver.)
func (p *peer) stream() (connected bool, err error) {
	ctx, cancel := context.WithCancelCause(p.ctx)
	defer cancel(nil)
	p.mu.Lock()
	url := p.urls[p.urlIdx%len(p.urls)]
	p.streamCancel = func() { cancel(errors.New("transport: peer URLs changed")) }
	p.mu.Unlock()

	req, err := http.NewRequest(http.MethodPost, url+pathStream, nil)
	if err != nil {
		return false, err
	}
	p.t.setHeaders(req.Header, p.id)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", streamUpgrade)
	req.Header.Set(hdrKeepalive, p.t.keepaliveInterval().String())
	d := &net.Dialer{Timeout: p.t.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", req.URL.Host)
	if err != nil {
		return false, err
	}
	conn := p.t.conns.add(nc)
	defer conn.Close()
	// Ending the stream's context (Stop, removal, URL change, failure)
	// closes the connection, which wakes a blocked write or read.
	stopConn := context.AfterFunc(ctx, func() { conn.Close() })
	defer stopConn()
	conn.SetDeadline(time.Now().Add(p.t.cfg.DialTimeout))
	br := bufio.NewReaderSize(conn, 512)
	resp, err := p.upgrade(conn, br, req)
	if err != nil {
		if c := context.Cause(ctx); c != nil {
			return false, c
		}
		return false, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		return false, p.t.rejection(p.id, resp)
	}
	conn.SetDeadline(time.Time{})
	p.down.Store(false)
	p.setActive(true, nil)
	p.t.log.Info("stream to peer established", "peer", fmt.Sprintf("%x", p.id), "url", url)

	// The receiver writes only its keep-alive answers; the end of its side
	// is the end of the stream.
	var answered atomic.Uint64
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		var b [64]byte
		for {
			n, err := br.Read(b[:])
			answered.Add(uint64(n))
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = errStreamClosed
				}
				cancel(err)
				return
			}
		}
	}()
	defer func() { cancel(nil); <-watchDone }()
	return true, p.writeLoop(ctx, conn, &answered)
}

// upgrade sends the stream request on conn and reads the answer.
func (p *peer) upgrade(conn net.Conn, br *bufio.Reader, req *http.Request) (*http.Response, error) {
	if err := req.Write(conn); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, fmt.Errorf("transport: no answer to the stream request from %s: %w", req.URL.Host, err)
	}
	return resp, nil
}

// keepaliveFrame is an empty frame: length 0, the CRC-32C of nothing (0).
var keepaliveFrame = make([]byte, frameHeaderSize)

// keepaliveInterval is how often a stream's sender sends a keep-alive frame.
// A receiver that has answered none of the last two is taken for gone, and
// a sender silent for three intervals too (as the HTTP/2 pings that
// guarded these streams before: two DialTimeouts to ping, two to answer).
func (t *Transport) keepaliveInterval() time.Duration { return 2 * t.cfg.DialTimeout }

// writeLoop drains the queue into batched writes, and sends a keep-alive
// frame every keepaliveInterval, until ctx ends or a write fails; answered
// counts the receiver's answers to keep-alives.
func (p *peer) writeLoop(ctx context.Context, conn net.Conn, answered *atomic.Uint64) error {
	bw := bufio.NewWriterSize(conn, 64<<10)
	interval := p.t.keepaliveInterval()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var buf []byte
	var pings uint64
	for {
		n := 0
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-tick.C:
			if answered.Load()+1 < pings {
				return fmt.Errorf("transport: peer %x answered no keep-alive for %v", p.id, 2*interval)
			}
			pings++
			buf = append(buf[:0], keepaliveFrame...)
		case m := <-p.queue:
			if len(p.queue) == 0 {
				// Let the goroutines about to send run first, so that
				// their messages (a follower's forwarded proposals,
				// arriving one per client request) leave in this batch.
				runtime.Gosched()
			}
			buf, n = p.appendBatch(buf[:0], m)
		}
		conn.SetWriteDeadline(time.Now().Add(p.t.cfg.WriteTimeout))
		_, err := bw.Write(buf)
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			if c := context.Cause(ctx); c != nil {
				return c
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("transport: write to peer %x timed out after %v", p.id, p.t.cfg.WriteTimeout)
			}
			return err
		}
		if n > 0 {
			p.sentMsgs.Add(uint64(n))
			p.sentBatches.Add(1)
		}
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
