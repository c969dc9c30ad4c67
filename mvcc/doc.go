// Package mvcc is the etcd v3 revisioned key-value model on the member's
// Pebble backend.
//
// # Model
//
// The store has a global revision (main, sub). Every write request that
// changes something (put, delete of at least one key, txn with such an op)
// bumps main by one; its changes get sub 0, 1, 2, ... A read-only request, a
// delete that matches nothing or a txn that changes nothing does not bump it.
// Each key version carries create_revision, mod_revision, version (1 on
// create, +1 per put, reset by delete) and lease. A delete writes a tombstone,
// so history keeps it. Requests use etcdserverpb and mvccpb types with etcd's
// exact meaning (see Range, Writer).
//
// # On-disk layout (prefixes owned in package backend's table)
//
//	'k' + esc(key) + ^main(8) + ^sub(8)  -> 'p' uvarint(create) uvarint(version) varint(lease) value
//	                                       or 't' (tombstone)
//	'r' + main(8) + sub(8)               -> user key (the event log watches replay)
//	'c/compact'                          -> scheduled compaction revision (8 bytes)
//	'c/compact-done'                     -> compaction revision whose physical work finished
//	'c/compact-next'                     -> target(8) + backend key where the unfinished pass resumes
//
// esc(key) maps 0x00 to 0x00 0xff and ends with 0x00 0x01, so it preserves
// the order of user keys and no encoded key is a prefix of another. The
// revision is inverted (bitwise not, big endian), so the newest version of a
// key sorts first: the version visible at revision R is one seek to
// esc(key) + ^R. The current revision is not stored: it is the newest 'r'
// entry, or the compaction revision if compaction removed them all, and at
// least 1: like etcd's, an empty store is at revision 1 and the first write
// makes revision 2.
//
// There is no in-memory index of versions: memory grows with the number of
// keys only by a Bloom filter's 10 bits per key. A range walks the 'k' span
// and takes, for each user key, the newest version at or below the read
// revision (a Next or two, then a seek past older versions). Three bounded
// structures save Pebble work on hot paths: a put needs its key's previous
// version (create revision, version and lease; the value only for prev_kv,
// ignore_value and watchers that want previous values), which the
// write-through latest-version cache (prevcache.go, Options.LatestCacheBytes,
// 16 MiB by default) holds for recently written keys, filled only from
// committed writers in End: the metadata of up to about 120,000 keys by
// default, and the values of as many as the rest of its budget holds. When
// it knows only a key's metadata and no watcher wants previous values
// (Options.PrevValuesWanted), a put's event carries PrevKv without the
// value and the put reads nothing of the old version; the key filter
// (keyfilter.go, rebuilt from a scan at open and when it fills) tells that a
// key was never written, so a new key's put and a read of a missing key skip
// the seek; a range of one key at the current revision is answered from the
// cache or the filter when either knows the key (pointRead); and idle read
// iterators are pooled while the backend's commit generation is unchanged (a
// commit closes them), so reads between writes do not open a new Pebble
// iterator.
//
// # Writes
//
// Only the apply goroutine writes. Write(bt) begins a Writer over the backend
// batch that the apply layer commits with the applied Raft index; several
// requests (several Raft entries) may share one Writer and batch, each bumping
// the revision, and reads inside the Writer see earlier writes of the batch.
// After bt.Commit succeeds the apply layer calls End, which makes the new
// revision visible to readers and returns the events in revision order. If the
// batch is discarded instead, the Writer is dropped and nothing changes. A
// request that fails changes nothing: a txn is fully checked (compares,
// ignore_value/ignore_lease, leases, range revisions) before its first write.
//
// # Reads
//
// Range, Events, Hash and HashKV may run on any goroutine, concurrently with
// writes and compaction. A read takes the current revision, then a Pebble
// iterator or snapshot (a point-in-time view that contains every batch up to
// that revision), then checks the compaction revision; versions newer than the
// read revision are skipped by their revision.
//
// # Compaction
//
// Writer.Compact records the revision in the batch; from End on, reads below
// it get ErrCompacted. A background goroutine then removes, in chunks of whole
// keys (each its own small batch committed with CommitNoIndex), every version
// older than the newest version at or below the compaction revision, that
// newest version too if it is a tombstone, and the 'r' entries at or below it.
// Each chunk records where the pass stands, so a pass resumes after a crash or
// reopen (New restarts it). Removal never changes what a read at or above the
// compaction revision sees, so chunks need no coordination with writes.
// WaitCompaction waits for the physical work, for tests and Defragment.
//
// # Watches
//
// WatchHub fans committed events out to watchers, with etcd's semantics. The
// apply goroutine hands it each committed batch's events (Writer.End's
// result) with Notify, in revision order; the hub's revision is the newest
// one notified. A WatchStream (one gRPC Watch stream) groups watchers whose
// responses reach one consumer through Next, in order: created first, then
// events (all events of one revision in one response, revisions ascending,
// never a gap or a duplicate), then canceled.
//
// A watcher is synced (Notify queues its events directly) or unsynced (a
// background goroutine reads its events from History, the store's event
// log, then moves it to synced). A watcher starts unsynced when its start
// revision is at or below the hub's revision, and so does every watcher
// that wants previous values: the hub counts those, the store reads a
// batch's previous values in End only while the count is above zero
// (WantsPrevValues), and such a watcher takes the revisions End made
// visible before it was counted from history. Notify never waits for a
// consumer: each watcher may have at most QueueEvents undelivered events
// queued (one revision is never split); a watcher without room becomes
// unsynced at the first revision it did not get, and catches up from
// history once its consumer has drained half of its queue. A watcher that
// needs history below the compaction revision is canceled with
// compact_revision set (a watch may start at the compaction revision
// itself, as in etcd; since the event log is compacted through it, such a
// watch receives the revisions after it). Memory is bounded by the watchers
// and their queues; nothing is kept per key of the key space.
//
// Restore tells the hub that the member's store was replaced by a received
// state copy: synced watchers behind the new revision catch up from the new
// store's history, whose past is the same (it is the same replicated log).
//
// # Concurrency
//
// Store.mu guards rev and compactRev (the visible state); compaction progress
// is guarded by Store.cmu. Writer belongs to the apply goroutine. WatchHub.mu
// guards the watcher sets, each watcher's next revision and state, and each
// stream's watchers (the count of prev_kv watchers is atomic, read by the
// apply goroutine in End); WatchStream.qmu guards the stream's queue and the
// per-watcher queue accounting. Lock order: WatchHub.mu, then
// WatchStream.qmu; History is read with neither held.
package mvcc
