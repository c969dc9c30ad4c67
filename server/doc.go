// Package server is one cairn member: it wires storage (WAL, Pebble backend,
// revisioned store), consensus (raftnode), the peer transport and the
// listeners, and owns the order in which they start and stop.
//
// # Data directory
//
//	<data-dir>/member/wal/   the Raft log (package wal); --wal-dir moves it
//	<data-dir>/member/db/    the Pebble store (packages backend, mvcc)
//	<data-dir>/member/snap/  state copies received from a leader (package snap)
//	<data-dir>/member/removed  written when the member learns it was removed; New refuses the data dir
//	<data-dir>/cairn.lock    held while the member runs
//
// # Start
//
// [New] decides between three starts:
//
//   - new: no WAL and --initial-cluster-state new. The cluster ID and member
//     IDs are derived from --initial-cluster-token and --initial-cluster; the
//     WAL is created with them and raft is bootstrapped with one
//     configuration change per initial member.
//   - join: no WAL and --initial-cluster-state existing. The member asks the
//     peers in --initial-cluster for the member list (GET /members on the
//     peer port), finds itself by its peer URLs (it must have been added
//     first), and starts with an empty log that the leader fills.
//   - restart: a WAL exists. The newest snapshot marker in the WAL is
//     matched against the state in the store (installing a received state
//     copy if a crash interrupted that), the log after the marker is loaded,
//     and raft restarts. The cluster ID and member ID come from the WAL;
//     a data dir that belongs to another cluster or member is refused.
//
// In every case the member list starts as the store has it and is changed
// only by applying the log, so every member rebuilds it identically. A
// member that is the only voter campaigns as soon as the entries committed
// before the start are applied, instead of waiting out the election
// timeout; with other voters the timeout stands.
//
// # Apply
//
// Committed entries are applied in order (see apply.go), by the apply
// goroutine or, when it is idle and raftnode offers a batch whose entries
// are already durable (raftnode.Config.ApplyInline), by raft's Ready loop
// itself; applyMu makes the two take turns. All entries of one Ready go into
// one backend batch with the last index, which is committed only after that
// Ready is durable in the WAL. Proposers wait in
// a registry keyed by request ID; a proposal raft refuses after
// raftnode.Node.Propose returned (the leader queues proposals for its Ready
// loop) reaches its proposer there too, through raftnode.Config.Dropped. Entries at or below the store's applied
// index are skipped (their effect is already in the store), except that
// configuration changes are always handed to raft, with the outcome recorded
// when they were first applied.
//
// # Alarms, quota and metrics
//
// Alarms (NOSPACE, CORRUPT) are replicated state changed only by applied
// AlarmRequests and persisted in the backend; while NOSPACE is active,
// requests that may grow the store are refused before proposing and again
// when applied (see alarm.go). A write that would take the backend over
// --quota-backend-bytes raises NOSPACE for this member. Metrics use etcd's
// names and a registry passed to [Server.RegisterMetrics] (metrics.go), plus
// cairn_network_peer_* counters from the transport's per-peer status.
//
// # Reads
//
// Linearizable reads go through ReadIndex: concurrent reads share one
// ReadIndex round, then wait until the applied index reaches the read index.
// On a leader that is the only voter, a read takes the commit index as its
// read index without a round (raftnode.Node.LocalReadIndex).
// Serializable reads go straight to the local store.
package server
