// Package failpoint holds the crash points of the member: named places in
// the code where a robustness test can make the process die, to check that
// a restart recovers whatever state that point leaves on disk.
//
// A point is a call Hit(Name). In normal builds Hit is an empty function
// (fp_off.go) that the compiler removes, so the points cost nothing. A
// binary built with `-tags failpoints` reads the environment variable
// CAIRNFP (not CAIRN_*: the config refuses unknown CAIRN_ variables) when a
// point is hit:
//
//	CAIRNFP=name[=action][@n][,name...]
//
// action is "kill" (default: the process sends itself SIGKILL, the closest
// thing to a power cut that keeps the page cache) or "panic"; n (default 1)
// makes the point fire on its n-th hit only, so a test can let a member get
// past its start before it crashes. Before dying the process writes
// "failpoint: <name> hit: <action>" to stderr so tests can tell a crash at
// the point from any other death.
//
// The points are the constants below; each names where it sits.
package failpoint

// Env is the environment variable read by failpoints builds.
const Env = "CAIRNFP"

// The crash points.
const (
	// WALBeforeSync: the server's WAL adapter, before a Ready's entries
	// and hard state are written and fsynced.
	WALBeforeSync = "wal-before-fsync"
	// WALAfterSync: right after that fsync, before raft hears of it (the
	// entries are durable but not yet sent by a follower or applied).
	WALAfterSync = "wal-after-fsync"
	// ApplyMidBatch: the apply goroutine, after an entry was written to the
	// applied batch and before the batch is committed.
	ApplyMidBatch = "apply-mid-batch"
	// SnapshotInstall: snap.Install, after the live store was moved aside
	// and before the staged state is renamed into its place.
	SnapshotInstall = "snapshot-install"
	// CompactMidChunk: mvcc compaction, after a chunk's deletions were
	// batched and before the chunk is committed.
	CompactMidChunk = "compact-mid-chunk"
)

// Names lists every crash point.
func Names() []string {
	return []string{WALBeforeSync, WALAfterSync, ApplyMidBatch, SnapshotInstall, CompactMidChunk}
}
