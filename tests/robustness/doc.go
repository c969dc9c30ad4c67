// Package robustness drives real cairn clusters through faults while
// concurrent clients use them, and checks what the clients saw.
//
// A run (Scenario) starts three member processes on 127.0.0.1-3 through
// tests/framework, each behind a framework.Proxy on its peer port. Eight
// workers with their own official etcd clients issue single-key puts,
// deletes, txns (compare value, version or mod revision, then put, else get)
// and linearizable and serializable gets on ten keys; a lease client grants,
// attaches a key, keeps alive once and revokes; one watcher watches the
// whole keyspace from revision 1. Meanwhile the test goroutine injects one
// fault at a time, drawn from the scenario's list with a seeded generator:
// kill -9 (a random member or the leader) and restart, SIGSTOP/SIGCONT
// longer than the election timeout, a full partition of one member, dropped
// or blackholed connections into one member, delay on every peer link,
// leader transfer, and removing a follower and adding a fresh member.
//
// Checks, after the faults end and every key is read once more:
//
//   - porcupine: the KV history is linearizable against KVModel (per key;
//     writes whose client got an error may or may not have happened, so
//     their return time is the end of the history);
//   - the watch stream: strictly increasing revisions, no gap, each event
//     once, ending at the final revision, every acknowledged write present
//     with its key and value, every put value one that a client wrote;
//   - serializable reads return only values some client wrote;
//   - after an acknowledged lease revoke, its key is gone.
//
// A failing run keeps history.json, porcupine.html, watch.json and every
// member's log under -robustness.artifacts (default $TMPDIR/cairn-robustness)
// and prints the seed that replays its schedule. TestRobustness is the
// short mode that `go test` runs; TestRobustnessRandom runs
// -robustness.runs randomized scenarios (`make robustness`).
package robustness
