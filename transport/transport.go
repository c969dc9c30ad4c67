package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Raft is the part of the raft node that the transport drives.
type Raft interface {
	// Process hands a received message to raft.
	Process(ctx context.Context, m *raftpb.Message) error
	// IsIDRemoved reports whether id belonged to a removed member.
	IsIDRemoved(id uint64) bool
	// ReportUnreachable tells raft that the last message to id may be lost.
	ReportUnreachable(id uint64)
	// ReportSnapshot tells raft how sending a snapshot to id ended.
	ReportSnapshot(id uint64, status raft.SnapshotStatus)
}

// SnapshotSink stores an incoming state transfer.
type SnapshotSink interface {
	// ReceiveSnapshot consumes r (the state stream for m, a MsgSnap)
	// completely and stores it durably in a staging place. At its end r
	// returns an error wrapping ErrSnapshotChecksum if the checksum does not
	// match (or ErrSnapshotCorrupt if the stream is malformed); the sink must
	// then discard what it wrote and return an error.
	ReceiveSnapshot(ctx context.Context, m *raftpb.Message, r io.Reader) error
}

// Config configures a Transport. Zero durations and sizes take the defaults
// named on each field.
type Config struct {
	LocalID   uint64 // required, non-zero
	ClusterID uint64 // required, non-zero
	Raft      Raft   // required
	Snapshots SnapshotSink
	Logger    *slog.Logger // default: discard

	DialTimeout  time.Duration // connect and response headers; default 1s
	WriteTimeout time.Duration // one batch write; a stalled stream is torn down; default 5s
	BackoffMin   time.Duration // first reconnect delay; default 50ms
	BackoffMax   time.Duration // reconnect delay cap; default 2s

	QueueSize         int // per-peer send queue (messages); default 4096
	MaxBatch          int // messages per write; default 256
	MaxFrameSize      int // largest accepted/sent message; default DefaultMaxFrameSize
	SnapshotChunkSize int // default 1 MiB

	// Now is the clock reported by the probe endpoint and used by Probe;
	// default time.Now.
	Now func() time.Time
	// OnRemoved is called at most once, in its own goroutine, when a peer
	// tells us that this member has been removed from the cluster.
	OnRemoved func(reportedBy uint64)
	// TLS is reserved for peer TLS; it must be nil for now (h2c only).
	TLS *tls.Config
}

func (c *Config) setDefaults() error {
	switch {
	case c.LocalID == 0:
		return fmt.Errorf("%w: LocalID is zero", ErrBadConfig)
	case c.ClusterID == 0:
		return fmt.Errorf("%w: ClusterID is zero", ErrBadConfig)
	case c.Raft == nil:
		return fmt.Errorf("%w: Raft is nil", ErrBadConfig)
	case c.TLS != nil:
		return fmt.Errorf("%w: TLS is not supported yet", ErrBadConfig)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.DialTimeout, time.Second)
	def(&c.WriteTimeout, 5*time.Second)
	def(&c.BackoffMin, 50*time.Millisecond)
	def(&c.BackoffMax, 2*time.Second)
	defInt(&c.QueueSize, 4096)
	defInt(&c.MaxBatch, 256)
	defInt(&c.MaxFrameSize, DefaultMaxFrameSize)
	defInt(&c.SnapshotChunkSize, 1<<20)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = c.BackoffMin
	}
	return nil
}

// Transport carries raft messages and snapshots between members. See the
// package doc.
type Transport struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // canceled by Stop
	cancel context.CancelFunc

	streamClient *http.Client // probes (message streams have connections of their own)
	snapClient   *http.Client // snapshot transfers, on connections of their own
	conns        *connSet

	removedOnce sync.Once
	wg          sync.WaitGroup // peer loops, snapshot senders, handlers

	mu       sync.RWMutex
	peers    map[uint64]*peer          // guarded by mu
	received map[uint64]*atomic.Uint64 // messages handed to raft, by sender; guarded by mu
	stopped  bool                      // guarded by mu

	// corruptChunk, when set by a test, is applied to every snapshot chunk
	// after its checksum has been accounted for.
	corruptChunk func([]byte)
}

// New returns a Transport with no peers.
func New(cfg Config) (*Transport, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:      cfg,
		log:      cfg.Logger.With("local", fmt.Sprintf("%x", cfg.LocalID)),
		ctx:      ctx,
		cancel:   cancel,
		conns:    &connSet{conns: map[net.Conn]struct{}{}},
		peers:    map[uint64]*peer{},
		received: map[uint64]*atomic.Uint64{},
	}
	t.streamClient = &http.Client{Transport: t.newRoundTripper()}
	t.snapClient = &http.Client{Transport: t.newRoundTripper()}
	return t, nil
}

// h2cProtocols is the protocol set of our client: HTTP/2 with prior
// knowledge over plain TCP.
func h2cProtocols() *http.Protocols {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &p
}

func (t *Transport) newRoundTripper() *http.Transport {
	d := &net.Dialer{Timeout: t.cfg.DialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Protocols: h2cProtocols(),
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return t.conns.add(c), nil
		},
		HTTP2: &http.HTTP2Config{
			SendPingTimeout:  2 * t.cfg.DialTimeout,
			PingTimeout:      2 * t.cfg.DialTimeout,
			WriteByteTimeout: t.cfg.WriteTimeout,
		},
	}
}

// peerPingTimeout is how long an HTTP/2 connection to or from a peer may
// stay silent before a ping, and then wait for its answer, outside the
// transport's own connections (which use twice DialTimeout).
const peerPingTimeout = 5 * time.Second

// PeerClient returns a client for requests to other members' peer listeners
// outside the transport (the server's forwarded lease requests). It speaks
// what ConfigureServer serves, HTTP/2 without TLS, so every request to a
// peer shares one connection: over HTTP/1.1 each concurrent request beyond
// a small idle pool would open a TCP connection of its own and close it
// after (about 7,500 sockets in TIME-WAIT after four seconds of forwarded
// keep-alives through three members).
func PeerClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Protocols: h2cProtocols(),
		HTTP2:     &http.HTTP2Config{SendPingTimeout: peerPingTimeout, PingTimeout: peerPingTimeout},
	}}
}

// ConfigureServer prepares the peer listener's server for the transport:
// HTTP/1 and unencrypted HTTP/2 (prior knowledge). Leave its ReadTimeout and
// WriteTimeout at zero: streams are long-lived.
func ConfigureServer(s *http.Server) {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	s.Protocols = &p
	if s.HTTP2 == nil {
		s.HTTP2 = &http.HTTP2Config{SendPingTimeout: peerPingTimeout, PingTimeout: peerPingTimeout}
	}
}

// AddPeer starts a stream to member id at urls (the first one first; the next
// one after a failure). Adding a known peer updates its URLs.
func (t *Transport) AddPeer(id uint64, urls []string) {
	if id == t.cfg.LocalID || id == 0 || len(urls) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	if p, ok := t.peers[id]; ok {
		p.setURLs(urls)
		return
	}
	p := newPeer(t, id, urls)
	t.peers[id] = p
	t.wg.Add(1)
	go p.run()
}

// UpdatePeer changes the URLs of a peer and reconnects if the stream used a
// URL no longer listed. An unknown peer is added.
func (t *Transport) UpdatePeer(id uint64, urls []string) { t.AddPeer(id, urls) }

// RemovePeer stops the stream to id and forgets it.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	t.mu.Unlock()
	if p != nil {
		p.cancel()
	}
}

// Send queues msgs to their peers and returns without waiting. A message to
// an unknown peer, to a peer whose stream is down, or that does not fit in
// the peer's queue is dropped and raft is told the peer is unreachable. MsgSnap
// must go through SendSnapshot; one given here is dropped and reported as a
// failed snapshot.
func (t *Transport) Send(msgs []*raftpb.Message) {
	var unreachable, snapFailed []uint64
	t.mu.RLock()
	for _, m := range msgs {
		to := m.GetTo()
		if m.GetType() == raftpb.MessageType_MsgSnap {
			t.log.Error("MsgSnap given to Send; use SendSnapshot", "to", fmt.Sprintf("%x", to))
			snapFailed = append(snapFailed, to)
			continue
		}
		p := t.peers[to]
		if p == nil || !p.enqueue(m) {
			if !slices.Contains(unreachable, to) {
				unreachable = append(unreachable, to)
			}
		}
	}
	t.mu.RUnlock()
	for _, id := range snapFailed {
		t.cfg.Raft.ReportSnapshot(id, raft.SnapshotFailure)
	}
	for _, id := range unreachable {
		t.cfg.Raft.ReportUnreachable(id)
	}
}

// PeerStatus describes the stream to one peer.
type PeerStatus struct {
	ID        uint64
	URLs      []string
	Active    bool      // a stream is established
	Since     time.Time // when Active last changed
	LastError error     // why the last stream ended or failed; nil if none

	MessagesSent uint64 // messages written to streams to this peer
	BatchesSent  uint64 // writes those messages took
	Dropped      uint64 // messages not queued: peer down or queue full
	Queued       int    // messages waiting in the send queue
	// Received counts messages from the peer handed to raft. A peer that
	// stops receiving while its sender keeps sending shows up as
	// MessagesSent rising on one member and Received flat on the other.
	Received uint64
}

// PeerStatus returns the status of the stream to id.
func (t *Transport) PeerStatus(id uint64) (PeerStatus, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	p := t.peers[id]
	if p == nil {
		return PeerStatus{}, false
	}
	return t.statusLocked(p), true
}

// ActivePeers returns the IDs of the peers with an established stream, sorted.
func (t *Transport) ActivePeers() []uint64 {
	var out []uint64
	for _, st := range t.Peers() {
		if st.Active {
			out = append(out, st.ID)
		}
	}
	return out
}

// Peers returns the status of every current peer, sorted by ID.
func (t *Transport) Peers() []PeerStatus {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]PeerStatus, 0, len(t.peers))
	for _, id := range slices.Sorted(maps.Keys(t.peers)) {
		out = append(out, t.statusLocked(t.peers[id]))
	}
	return out
}

// statusLocked is p's status with the count of messages received from it.
// t.mu is held.
func (t *Transport) statusLocked(p *peer) PeerStatus {
	st := p.status()
	if c := t.received[p.id]; c != nil {
		st.Received = c.Load()
	}
	return st
}

// receivedCounter returns the counter of messages received from id.
func (t *Transport) receivedCounter(id uint64) *atomic.Uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.received[id]
	if c == nil {
		c = new(atomic.Uint64)
		t.received[id] = c
	}
	return c
}

// Stop closes every stream and connection and waits for every goroutine the
// transport started, including handlers of incoming requests. Idempotent.
func (t *Transport) Stop() {
	t.mu.Lock()
	t.stopped = true
	t.peers = map[uint64]*peer{}
	t.mu.Unlock()
	t.cancel()
	t.wg.Wait()
	t.streamClient.CloseIdleConnections()
	t.snapClient.CloseIdleConnections()
	t.conns.closeAll()
}

// enter registers a goroutine that must finish before Stop returns; it fails
// once Stop has begun.
func (t *Transport) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	t.wg.Add(1)
	return true
}

func (t *Transport) peer(id uint64) *peer {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.peers[id]
}

// notifyRemoved calls Config.OnRemoved once.
func (t *Transport) notifyRemoved(by uint64) {
	if t.cfg.OnRemoved == nil {
		return
	}
	t.removedOnce.Do(func() { go t.cfg.OnRemoved(by) })
}

// connSet tracks the client connections so that Stop can close them all.
type connSet struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{} // guarded by mu
}

type trackedConn struct {
	net.Conn
	set  *connSet
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.set.mu.Lock()
		delete(c.set.conns, c.Conn)
		c.set.mu.Unlock()
	})
	return c.Conn.Close()
}

func (s *connSet) add(c net.Conn) net.Conn {
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	return &trackedConn{Conn: c, set: s}
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	conns := slices.Collect(maps.Keys(s.conns))
	s.conns = map[net.Conn]struct{}{}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}
