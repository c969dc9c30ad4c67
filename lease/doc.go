// Package lease owns leases: etcd v3 leases granted, kept alive, revoked and
// expired, with the keys attached to them.
//
// # Model
//
// A lease has an ID (any int64 but 0), a granted TTL in seconds and a
// persisted remaining TTL: the countdown a new leader starts from (0 means
// "the full TTL"). Keys are attached to a lease by putting them with it, and
// detached by putting them with another lease or none, or by deleting them.
// Revoking a lease deletes every attached key in one revision, like etcd,
// then the lease.
//
// # Who decides what
//
// Grant, Revoke and Checkpoint are raft entries, applied by the apply
// goroutine through a [Tx] (deterministic: no clock, no randomness). Time
// belongs to the leader only: the member that leads calls [Lessor.Promote]
// once it has applied everything committed before its term, and from then
// tracks each lease's deadline with its own clock ([Config.Clock]). It renews
// leases on keep-alives ([Lessor.Renew]), proposes revocation of the expired
// ones ([Lessor.Expired], rate-limited by the caller) and records remaining
// TTLs in the log ([Lessor.CheckpointsDue]): soon after every renewal (a
// renewed lease must not look shorter to a new leader) and whenever the
// persisted value drifted by more than max(MinCheckpointInterval, TTL/10)
// from the truth. A new leader starts every countdown from the persisted
// remaining TTL plus the election timeout ("extend"), so a leader change
// neither resets a lease to its full TTL (unlike etcd, issue 9395) nor expires
// it at once. [Lessor.Demote] drops the deadlines when leadership is lost.
// Followers never decide anything about expiry; they answer lists and
// lookups of the committed state and forward keep-alives to the leader.
//
// # On-disk layout (prefix 'L' of the backend)
//
//	"L/l/" + id (8 bytes, big endian)       -> record: 0x01, varint(ttl), varint(remaining)
//	"L/k/" + id (8 bytes, big endian) + key  -> "" : key is attached to lease id
//
// Both live in the apply batch, so they commit with the applied index, travel
// in state copies and survive restarts ([Lessor.Load] rebuilds the in-memory
// lease table; attachments are never loaded into memory). The attachment
// index is maintained from the revisioned store's events of the batch
// ([Tx.Flush], and before every lease request of the batch): a put event
// whose lease differs from its previous version's detaches the key from the
// old lease and attaches it to the new one; a delete event detaches it.
//
// # Lifecycle of a batch
//
// The apply goroutine calls [Lessor.Begin] with the backend batch and the
// revisioned store's writer, applies requests (lease requests through the
// Tx), calls [Tx.Flush] before committing the batch and [Tx.End] after; End
// publishes the batch's lease changes to readers. A Tx dropped without End
// (the batch was discarded) changes nothing in memory. While a Tx is open,
// [Lessor.Exists] (the revisioned store's LeaseExists) sees its changes.
//
// # Concurrency
//
// Lessor.mu guards the lease table and every leader field (primary,
// deadlines, checkpoint state). The open Tx belongs to the apply goroutine.
// All methods are safe for concurrent use except the Tx's, and Exists, which
// only the apply goroutine calls.
package lease
