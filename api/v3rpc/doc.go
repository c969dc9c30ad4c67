// Package v3rpc serves the etcd v3 API on the client port: the gRPC services
// of go.etcd.io/etcd/api/v3 (KV, Watch, Lease, Cluster, Maintenance, and the
// Lock and Election services) and, on the same port, plain HTTP: the /v3/
// JSON gateway and the health, version and metrics endpoints.
//
// The gRPC services run on internal/h2rpc, cairn's own transport, or with
// Config.GRPCGo (--grpc-server=grpc-go) on grpc-go's server; both take the
// same registrations and the same metrics interceptors (see [RPCServer]).
//
// # Layers
//
// Each service validates requests (the checks etcd makes before a request
// reaches raft: empty keys, txn size and duplicate keys, option conflicts),
// calls a narrow interface of the member (see [Backend]), fills the response
// header (cluster_id, member_id, raft_term; the revision comes from the
// store), and maps errors to etcd's gRPC codes and messages (package
// go.etcd.io/etcd/api/v3/v3rpc/rpctypes), which clients compare.
//
// Before a call reaches its service, two checks etcd makes (guard.go): a
// learner refuses all but Status, serializable ranges and the Snapshot
// stream with "rpc not supported for learner"; a call that carries
// clientv3.WithRequireLeader's metadata ("hasleader: true") fails with
// etcd's "no leader" error if the member knows no leader when it starts,
// and such a stream (a watch; clientv3's lease keep-alives always ask) is
// ended with that error after three checks in a row, one per election
// timeout, find none.
//
// Nothing in this package changes state by itself: every write goes through
// the member's proposal path.
package v3rpc
