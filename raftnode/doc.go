// Package raftnode drives one go.etcd.io/raft/v3 node: it owns a raft.RawNode,
// ticks it, and runs the single Ready loop that persists, sends and hands
// committed entries to the applier.
//
// # Stepping raft
//
// There is no goroutine of raft's own (raft.Node runs one, and every
// proposal, message and Ready passed through it by channel). The RawNode
// sits behind a mutex: a proposal, a message from a peer, a ReadIndex
// request or a status query steps it on the caller's goroutine, then wakes
// the Ready loop through a one-slot channel. The Ready loop takes each Ready
// and gives it back (Advance) under the mutex too, but handles it without
// holding it, so callers keep stepping raft while a Ready is written; what
// they step in comes out in the next Ready. The leader's proposals are the
// exception (see below). raft drops a proposal while it knows no leader;
// [Node.Propose] then waits for one until its context ends, as raft.Node's
// proposals do. [Node.Step] drops without an error what raft would not take
// from the network, as raft.Node's Step does.
//
// # The Ready loop
//
// One goroutine takes raft's Readies and ticks raft every TickInterval; it
// takes a pending tick before every Ready too, so that Readies handled back
// to back under steady load do not hold the ticks (heartbeats, the quorum
// check) back. For every Ready it:
//
//  1. publishes the soft state (leader, role) and read states (ReadIndex);
//  2. if this member leads, sends the outgoing messages now, before it
//     applies (a commit index it advances reaches the followers, which
//     apply meanwhile) and before its own fsync (Raft thesis 10.2.1: the
//     leader's own log write counts toward the quorum only once it is
//     durable, so sending early is safe); a follower
//     sends the requests it forwards to the leader (MsgProp, MsgReadIndex)
//     now too, since they acknowledge nothing, so a client's write on a
//     follower does not wait for that follower's fsync to reach the leader;
//  3. queues an [Apply] batch (committed entries, an incoming snapshot) for
//     the apply goroutine, which runs concurrently with the rest of the loop;
//     if earlier Readies already made every committed entry durable (always
//     on the leader), the batch's Persisted channel is closed at once, so
//     applying does not wait for this Ready's fsync of newer entries. When
//     the batch's entries are durable, it holds no snapshot or
//     configuration change, the Ready writes no new entries and every
//     batch queued before was applied, the loop first offers it to
//     [Config.ApplyInline], which may apply it on the loop itself: a lone
//     client's write then skips the hand-off to the apply goroutine;
//  4. persists: an incoming snapshot's marker, then hard state and entries in
//     one WAL call with one fsync; appends the entries to the in-memory
//     raft.MemoryStorage and installs an incoming snapshot there;
//  5. signals [Apply.Persisted], so the applier may install a snapshot;
//  6. if this member follows, sends the other messages only now (a follower
//     acknowledges only what is durable); when the batch holds configuration
//     changes it first waits until the applier has applied them, so that
//     votes are counted against the new configuration;
//  7. calls Advance, and takes the next Ready if raft has one.
//
// # Proposals on the leader
//
// The leader does not step proposals one by one: [Node.Propose] queues the
// entry and wakes the Ready loop, and a proposal a follower forwards
// ([Node.Step]) joins the same queue. Before it takes each Ready, the loop
// steps everything queued as one MsgProp. The entries would have waited for
// that Ready anyway; stepped together, they cost raft one append, one
// acknowledgment of its own and one append message per follower, where
// each proposal used to cost all three (about 13 proposals a step with 64
// clients on one member). Propose has returned by then, so a proposal raft
// refuses while it knows a leader (a leadership transfer under way) is
// reported through [Config.Dropped]. One refused for want of a leader goes
// back into the queue until raft knows one or the proposer gives up;
// forwarded ones are dropped then, as raft drops them.
//
// Concurrent proposals land in the same Ready and therefore share one fsync.
// raft builds an append message (MsgApp) per follower for every MsgProp it
// steps and for acknowledgments that let it send more, so a Ready that
// follows several steps (a configuration change, proposals made before the
// loop noted its leadership, acknowledgments) may hold a run of them per
// follower; before sending, the loop merges each run of appends that
// continue one another into one message (coalesceAppends), so a follower
// gets, steps and acknowledges one message per Ready.
//
// # Reads
//
// A linearizable read asks raft for a read index (ReadIndex; the answer
// comes out of a Ready on [Node.ReadStates]). A leader that is the
// configuration's only voter would answer with its commit index at once;
// [Node.LocalReadIndex] returns that index without the round through the
// Ready loop, once the leader has an entry of its own term committed.
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
