// Package membership owns the member list of a cairn cluster: who the members
// are, their IDs, the cluster ID, and how the list changes through Raft
// configuration changes.
//
// # Identity
//
// A member ID is a non-zero uint64 derived deterministically (SHA-256, first
// eight bytes, big-endian) from the member's sorted, de-duplicated peer URLs
// and the cluster token. Members of the initial cluster use [MemberID], so
// every member of a fresh cluster computes the same IDs from the same
// --initial-cluster flag. Members added at runtime use [RuntimeMemberID],
// which also mixes in a caller-supplied value (typically the proposer's clock
// in nanoseconds): the same peer URLs may be added again after a removal, and
// a removed ID must never come back. The cluster ID ([ClusterID]) is derived
// from the token and the sorted IDs of the initial members, so two clusters
// bootstrapped with different tokens or different member sets never share an
// ID. A hash that happens to be zero is re-hashed: zero means "none" in Raft.
//
// # Changes
//
// A [Cluster] holds the cluster ID, the members by ID and the set of removed
// IDs. It changes only through [Cluster.Apply], called by the single apply
// goroutine in Raft log order with a [Change]:
//
//   - ChangeAddVoter / ChangeAddLearner: a new member (raft ConfChangeAddNode /
//     ConfChangeAddLearnerNode with a [ConfChangeContext] naming the member);
//   - ChangePromoteLearner: a learner becomes a voter (ConfChangeAddNode whose
//     context has Promote set);
//   - ChangeRemove: the member leaves for good; its ID is remembered as removed
//     (ConfChangeRemoveNode);
//   - ChangeUpdatePeerURLs: new peer URLs (ConfChangeUpdateNode);
//   - ChangePublish: a started member publishes its name and client URLs
//     (carried in a normal entry, not a Raft configuration change).
//
// [Cluster.Validate] checks a change against the current list without
// applying it; Apply validates again and changes nothing when validation
// fails. Validation is deterministic (no clocks, no map order), so every member
// reaches the same verdict for the same log entry. When Apply refuses a raft
// configuration change, the apply layer must hand raft a ConfChange with
// NodeId 0 (a no-op) instead of the refused one, so that raft's view and this
// list never diverge. [ChangeFromConfChange] and [Change.ConfChange] convert
// between the two forms.
//
// Rules enforced: IDs are non-zero; an added ID must not exist or have been
// removed (ErrIDExists, ErrIDRemoved); peer URLs must be valid http(s) URLs of
// the form scheme://host:port and not used by another member
// (ErrPeerURLExists); a non-empty name must be unique (ErrNameExists); at most
// MaxLearners learners (ErrTooManyLearners); only a learner can be promoted
// (ErrMemberNotLearner); the last voter cannot be removed (ErrLastVoter,
// raft itself would refuse it).
//
// # Persistence
//
// [Cluster.Encode] produces a deterministic JSON document (members sorted by
// ID, removed IDs sorted):
//
//	{"version":1,"clusterID":N,"members":[{"id":N,"name":"a","peerURLs":[...],
//	 "clientURLs":[...],"isLearner":true}],"removed":[N,...]}
//
// The apply layer stores it in the backend (under its 'C' prefix) and in
// snapshots; identical lists encode to identical bytes on every member.
// [Decode] accepts only documents that Apply could have produced (version 1,
// unique IDs and URLs, no removed ID among members, at least one voter, at
// most MaxLearners learners, no unknown fields, no trailing data) and is
// fuzzed. [ConfChangeContext] is the JSON payload of a raft ConfChange
// context.
//
// # Concurrency
//
// A Cluster is safe for concurrent use: one writer (the apply goroutine) and
// any number of readers (API handlers, the transport set-up). Readers get
// copies; nothing returned aliases internal state.
package membership
