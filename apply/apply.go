// Package apply turns committed Raft entries into state changes.
//
// A normal entry carries one etcdserverpb.InternalRaftRequest, marshalled
// with protobuf ([Encode], [Decode]); its header ID connects the result with
// the proposer waiting for it ([PeekID] reads that ID without decoding, so
// the proposing member can apply the request object it holds). [Apply] dispatches the request to the state
// owners (today the revisioned store through the [KV] interface) and returns
// a [Result]. Applying is deterministic: no clock, no randomness, no map
// iteration order; the same log applied on every member yields the same
// state and the same results.
//
// # Configuration changes and replay
//
// Raft must see every committed configuration change through
// ApplyConfChange, in order, including when the member replays log entries
// that its store already reflects (after a restart, or after installing a
// state copy that is newer than the raft snapshot that came with it). A
// change that failed validation when first applied is handed to raft with
// NodeID 0 (a no-op); on replay it must be treated the same way, and the
// membership it would be validated against has moved on. So the applier
// records the outcome of every configuration change in the store, in the
// same batch ([ConfChangeOutcomeKey]), and replays from that record.
package apply

import (
	"encoding/binary"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// ErrUnknownRequest marks an entry with no request this member understands.
var ErrUnknownRequest = errors.New("apply: unknown request")

// KV is the revisioned store's write side for one batch of entries.
type KV interface {
	Put(*pb.PutRequest) (*pb.PutResponse, error)
	DeleteRange(*pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error)
	Txn(*pb.TxnRequest) (*pb.TxnResponse, error)
	Compact(rev int64) (*pb.CompactionResponse, error)
}

// Result is what applying one request produced.
type Result struct {
	Resp proto.Message
	Err  error
}

// Encode marshals a request for proposal.
func Encode(r *pb.InternalRaftRequest) ([]byte, error) {
	b, err := proto.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("apply: encode request: %w", err)
	}
	return b, nil
}

// Decode unmarshals an entry's data.
func Decode(data []byte) (*pb.InternalRaftRequest, error) {
	r := &pb.InternalRaftRequest{}
	if err := proto.Unmarshal(data, r); err != nil {
		return nil, fmt.Errorf("apply: decode request: %w", err)
	}
	return r, nil
}

// PeekID returns the header ID of an encoded request without decoding the
// rest (the request's own fields are skipped, not parsed), so the member
// that proposed the entry can apply the request object it still holds.
// ok is false if data has no header ID or is not well-formed protobuf as
// far as it was read; a caller then decodes.
func PeekID(data []byte) (id uint64, ok bool) {
	wellFormed := eachField(data, headerField, protowire.BytesType, func(h []byte) {
		var v uint64
		found := false
		if eachField(h, 1, protowire.VarintType, func(b []byte) { v, _ = protowire.ConsumeVarint(b); found = true }) && found {
			id, ok = v, v != 0 // a later header field would win (merge); keep reading
		}
	})
	if !wellFormed {
		return 0, false
	}
	return id, ok
}

// headerField is InternalRaftRequest.header's field number.
const headerField = 100

// eachField walks the fields of a protobuf message and calls fn with the
// contents (a bytes field's payload, a varint's encoding) of each field
// numbered num of wire type typ, in order. It reports whether the message
// was well-formed as far as the walk read it.
func eachField(msg []byte, num protowire.Number, typ protowire.Type, fn func([]byte)) bool {
	for len(msg) > 0 {
		n, t, k := protowire.ConsumeTag(msg)
		if k < 0 {
			return false
		}
		msg = msg[k:]
		k = protowire.ConsumeFieldValue(n, t, msg)
		if k < 0 {
			return false
		}
		if n == num && t == typ {
			v := msg[:k]
			if t == protowire.BytesType {
				v, _ = protowire.ConsumeBytes(v)
			}
			fn(v)
		}
		msg = msg[k:]
	}
	return true
}

// RequestID returns the ID a proposer waits on.
func RequestID(r *pb.InternalRaftRequest) uint64 {
	if h := r.GetHeader(); h != nil && h.GetID() != 0 {
		return h.GetID()
	}
	return r.GetID()
}

// Apply applies one request to kv.
func Apply(kv KV, r *pb.InternalRaftRequest) Result {
	switch {
	case r.GetPut() != nil:
		resp, err := kv.Put(r.GetPut())
		return result(resp, err)
	case r.GetDeleteRange() != nil:
		resp, err := kv.DeleteRange(r.GetDeleteRange())
		return result(resp, err)
	case r.GetTxn() != nil:
		resp, err := kv.Txn(r.GetTxn())
		return result(resp, err)
	case r.GetCompaction() != nil:
		resp, err := kv.Compact(r.GetCompaction().GetRevision())
		return result(resp, err)
	default:
		return Result{Err: ErrUnknownRequest}
	}
}

// result avoids storing a typed nil response in the interface.
func result[T proto.Message](resp T, err error) Result {
	if err != nil {
		return Result{Err: err}
	}
	return Result{Resp: resp}
}

// confChangeOutcomePfx is the backend prefix, under the membership prefix
// 'C', of the recorded configuration change outcomes.
var confChangeOutcomePfx = []byte("C/ccr/")

// ConfChangeOutcomeKey is where the outcome of the configuration change at
// a raft index is kept: [OutcomeApplied] or [OutcomeRejected].
func ConfChangeOutcomeKey(index uint64) []byte {
	k := make([]byte, len(confChangeOutcomePfx)+8)
	copy(k, confChangeOutcomePfx)
	binary.BigEndian.PutUint64(k[len(confChangeOutcomePfx):], index)
	return k
}

// Outcomes of a configuration change.
var (
	OutcomeApplied  = []byte{1}
	OutcomeRejected = []byte{0}
)
