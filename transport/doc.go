// Package transport carries Raft traffic between the members of a cluster on
// their peer URLs (port 2380 by default): message streams, snapshot
// transfers and a small probe used for RTT and clock-drift checks.
//
// # Protocol
//
// Requests are HTTP/2 without TLS (h2c, "prior knowledge"), using the
// standard library's http.Protocols with SetUnencryptedHTTP2 on both the
// client (our http.Transport) and the server (ConfigureServer), except the
// message streams, which upgrade an HTTP/1.1 request to a TCP connection of
// their own (below). One TCP connection to a peer multiplexes its probes;
// snapshot transfers use a second connection pool so a large transfer does
// not delay the others. TLS is a later addition (Config.TLS must be nil for
// now). PeerClient is the same protocol for the server's own requests to
// peers (forwarded lease requests), one shared connection per peer.
//
// Every request carries three headers: X-Cairn-From (sender member ID),
// X-Cairn-To (receiver member ID) and X-Cairn-Cluster-Id, all hex. The
// receiver refuses, logs (sender, its cluster ID, ours) and answers with
// X-Cairn-Reject naming the reason:
//
//	412 cluster-id-mismatch  the sender belongs to another cluster
//	412 wrong-member         the request is addressed to another member ID
//	410 member-removed       the sender was removed (Raft.IsIDRemoved)
//	400 bad-request          malformed headers or body
//	503 stopped              the transport is stopping
//
// Responses also carry X-Cairn-Member-Id and X-Cairn-Cluster-Id, so the
// sender can log "peer 2 rejected us: cluster ID mismatch (ours .., theirs
// ..)". The sender turns a refusal into a *RejectedError; a 410 also calls
// Config.OnRemoved once, so a removed member learns that it is out.
//
// # Message streams
//
// For each peer, one goroutine keeps one stream open: a TCP connection on
// which it sends "POST /raft/stream" over HTTP/1.1 with "Connection:
// Upgrade", "Upgrade: cairn-raft-stream" and X-Cairn-Keepalive (its
// keep-alive interval, a Go duration). The receiver checks the request like
// any other, answers "101 Switching Protocols", takes over the connection
// and reads frames until it ends (each direction has its own stream, opened
// by its sender). A request that does not upgrade is refused (400). Frames:
//
//	uint32 length | uint32 CRC-32C(payload) | payload (proto-marshalled raftpb.Message)
//
// big-endian, at most Config.MaxFrameSize (64 MiB) each; a larger header is
// refused before any allocation and a large payload is allocated as it
// arrives. A frame with an empty payload is a keep-alive, which the
// sender sends every two DialTimeouts and the receiver answers with one
// byte (the only bytes it writes): a sender with two keep-alives
// unanswered, or a receiver that has read nothing for three intervals,
// ends the stream. (The streams were HTTP/2 request bodies until the
// upgrade saved each batch a pipe and three goroutine hand-offs; HTTP/2
// pings guarded them.)
//
// Send never blocks: it puts messages in the peer's bounded queue (QueueSize); on overflow, for an unknown peer or while the peer's stream is
// down it drops the message and calls Raft.ReportUnreachable. The peer
// goroutine drains the queue into one write per batch (up to MaxBatch
// messages). A write that does not finish within WriteTimeout, a refused or
// failed connection, or a stream the peer closes ends the stream; the
// goroutine reports the peer unreachable and reconnects after an exponential
// backoff between BackoffMin and BackoffMax (50 ms .. 2 s, with jitter),
// trying the peer's next URL. Messages from one peer are handed to
// Raft.Process in order, by the handler goroutine of that peer's stream,
// except forwarded proposals (MsgProp): raft takes those only while it knows
// a leader, so each stream hands them over on a goroutine of its own, in
// order, through a bounded queue (full: dropped), and a leaderless member
// keeps reading the heartbeats that end its leaderless state. A message not
// addressed to this member, a message whose From is not the stream's sender
// (except MsgProp and MsgReadIndex, which raft forwards with the original
// requester as From), or a MsgSnap on a stream, is dropped and logged.
// PeerStatus and Peers report each peer's stream state and message counters
// (sent, dropped, queued, received), which the server exports as metrics.
//
// # Snapshots
//
// SendSnapshot sends a MsgSnap with POST /raft/snapshot, in the background:
// the message frame, then the state (from the caller's open function) in
// chunks "uint32 length | bytes", then a trailer "uint32 0 | uint64 total |
// uint32 CRC-32C of the state". The receiver hands the state to the
// SnapshotSink through a reader that returns an error wrapping
// ErrSnapshotChecksum instead of io.EOF when the trailer does not match; only
// after the sink has returned nil and the trailer was verified does it pass
// the MsgSnap to Raft.Process. The sender reports SnapshotFinish when the
// receiver answered 2xx, else SnapshotFailure (and the peer unreachable).
//
// # Probe
//
// GET /raft/probe answers {"memberID","clusterID","timeUnixNano"} using
// Config.Now. Probe measures the round trip and estimates the peer's clock
// offset as peerTime - (start + rtt/2).
//
// # Lifecycle and concurrency
//
// New, then AddPeer/UpdatePeer/RemovePeer as membership changes, Send and
// SendSnapshot from the raft loop (both return at once), Handler mounted by
// the server on the peer listener, Stop at the end. All methods are safe for
// concurrent use. Stop ends every peer goroutine, snapshot sender and handler
// of an incoming request (blocked body reads are interrupted with a read
// deadline), closes every client connection and returns when all of them
// are gone; afterwards the handler answers 503. Locks: Transport.mu guards
// the peer map and the stopped flag; peer.mu guards a peer's URLs and status;
// neither is held while calling Raft.
package transport
