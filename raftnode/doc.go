// Package raftnode drives one go.etcd.io/raft/v3 node: it owns the raft.Node,
// ticks it, and runs the single Ready loop that persists, sends and hands
// committed entries to the applier.
//
// # The Ready loop
//
// One goroutine owns the raft.Node's Ready channel. For every Ready it:
//
//  1. publishes the soft state (leader, role) and read states (ReadIndex);
//  2. queues an [Apply] batch (committed entries, an incoming snapshot) for
//     the apply goroutine, which runs concurrently with the rest of the loop;
//     if earlier Readies already made every committed entry durable (always
//     on the leader), the batch's Persisted channel is closed at once, so
//     applying does not wait for this Ready's fsync of newer entries;
//  3. if this member leads, sends the outgoing messages now, before its own
//     fsync (Raft thesis 10.2.1: the leader's own log write counts toward the
//     quorum only once it is durable, so sending early is safe); a follower
//     sends the requests it forwards to the leader (MsgProp, MsgReadIndex)
//     now too, since they acknowledge nothing, so a client's write on a
//     follower does not wait for that follower's fsync to reach the leader;
//  4. persists: an incoming snapshot's marker, then hard state and entries in
//     one WAL call with one fsync; appends the entries to the in-memory
//     raft.MemoryStorage and installs an incoming snapshot there;
//  5. signals [Apply.Persisted], so the applier may install a snapshot;
//  6. if this member follows, sends the other messages only now (a follower
//     acknowledges only what is durable); when the batch holds configuration
//     changes it first waits until the applier has applied them, so that
//     votes are counted against the new configuration;
//  7. calls Advance.
//
// Concurrent proposals land in the same Ready and therefore share one fsync.
//
// # Proposals on a follower
//
// A follower that knows the leader sends a normal proposal straight to it
// ([Node.Propose] builds the MsgProp raft would forward), so the proposal
// does not wait for the follower's next Ready, which comes only after the
// fsync in progress. Configuration changes, and proposals while no leader
// is known, go through raft as usual.
//
// # Snapshots
//
// Outgoing MsgSnap messages are not sent as ordinary messages: the state is
// streamed by the transport from a [Config.SnapshotSource] (a consistent copy
// of the store), and raft is told the outcome through ReportSnapshot.
//
// # Concurrency
//
// Every exported method of [Node] is safe for concurrent use. The apply
// goroutine receives batches from [Node.Apply] in log order; it must close
// [Apply.Applied] when done with a batch.
package raftnode
