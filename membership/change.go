package membership

import (
	"bytes"
	"encoding/json"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// ChangeType says what a Change does.
type ChangeType uint8

// The kinds of change; see the package doc for their raft counterparts.
const (
	ChangeAddVoter ChangeType = iota + 1
	ChangeAddLearner
	ChangePromoteLearner
	ChangeRemove
	ChangeUpdatePeerURLs
	ChangePublish
)

func (t ChangeType) String() string {
	switch t {
	case ChangeAddVoter:
		return "add-voter"
	case ChangeAddLearner:
		return "add-learner"
	case ChangePromoteLearner:
		return "promote-learner"
	case ChangeRemove:
		return "remove"
	case ChangeUpdatePeerURLs:
		return "update-peer-urls"
	case ChangePublish:
		return "publish"
	}
	return fmt.Sprintf("change-type(%d)", uint8(t))
}

// Change is one change of the member list. Member.ID names the member in all
// cases; the other fields used depend on Type: the whole member for adds
// (IsLearner is ignored, Type decides), PeerURLs for ChangeUpdatePeerURLs,
// Name and ClientURLs for ChangePublish.
type Change struct {
	Type   ChangeType
	Member Member
}

// ConfChangeContext is the payload of a raft ConfChange's Context: the member
// being added or updated, and whether an AddNode is the promotion of a
// learner.
type ConfChangeContext struct {
	Member  Member `json:"member"`
	Promote bool   `json:"promote,omitempty"`
}

// Marshal encodes c as JSON.
func (c *ConfChangeContext) Marshal() ([]byte, error) {
	return json.Marshal(c)
}

// Unmarshal decodes b into c. Unknown fields, trailing data and a zero member
// ID are errors; URLs are checked later, by Cluster.Validate.
func (c *ConfChangeContext) Unmarshal(b []byte) error {
	var v ConfChangeContext
	if err := strictJSON(b, &v); err != nil {
		return fmt.Errorf("%w: conf change context: %w", ErrBadChange, err)
	}
	if v.Member.ID == 0 {
		return fmt.Errorf("%w: conf change context: %w", ErrBadChange, ErrIDZero)
	}
	*c = v
	return nil
}

// strictJSON decodes exactly one JSON value from b into v, refusing unknown
// fields and trailing data.
func strictJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return fmt.Errorf("trailing data after JSON value")
	}
	if _, err := d.Token(); err == nil {
		return fmt.Errorf("trailing data after JSON value")
	}
	return nil
}

// ChangeFromConfChange converts a raft ConfChange (with a ConfChangeContext
// in its Context, except for removals) to a Change. The context's member ID
// must equal the ConfChange's NodeId.
func ChangeFromConfChange(cc *raftpb.ConfChange) (Change, error) {
	id := cc.GetNodeId()
	if id == 0 {
		return Change{}, fmt.Errorf("%w: conf change for node 0", ErrBadChange)
	}
	if cc.GetType() == raftpb.ConfChangeType_ConfChangeRemoveNode {
		return Change{Type: ChangeRemove, Member: Member{ID: id}}, nil
	}
	var ctx ConfChangeContext
	if err := ctx.Unmarshal(cc.GetContext()); err != nil {
		return Change{}, err
	}
	if ctx.Member.ID != id {
		return Change{}, fmt.Errorf("%w: context names member %x, conf change names %x",
			ErrBadChange, ctx.Member.ID, id)
	}
	ch := Change{Member: ctx.Member}
	switch cc.GetType() {
	case raftpb.ConfChangeType_ConfChangeAddNode:
		ch.Type = ChangeAddVoter
		if ctx.Promote {
			ch.Type = ChangePromoteLearner
		}
	case raftpb.ConfChangeType_ConfChangeAddLearnerNode:
		ch.Type = ChangeAddLearner
	case raftpb.ConfChangeType_ConfChangeUpdateNode:
		ch.Type = ChangeUpdatePeerURLs
	default:
		return Change{}, fmt.Errorf("%w: unknown conf change type %v", ErrBadChange, cc.GetType())
	}
	if ctx.Promote && ch.Type != ChangePromoteLearner {
		return Change{}, fmt.Errorf("%w: promote flag on %v", ErrBadChange, cc.GetType())
	}
	return ch, nil
}

// ConfChange builds the raft ConfChange proposing ch, with requestID in its
// Id field. ChangePublish is not a configuration change and is refused.
func (ch Change) ConfChange(requestID uint64) (*raftpb.ConfChange, error) {
	var t raftpb.ConfChangeType
	switch ch.Type {
	case ChangeAddVoter, ChangePromoteLearner:
		t = raftpb.ConfChangeType_ConfChangeAddNode
	case ChangeAddLearner:
		t = raftpb.ConfChangeType_ConfChangeAddLearnerNode
	case ChangeRemove:
		t = raftpb.ConfChangeType_ConfChangeRemoveNode
	case ChangeUpdatePeerURLs:
		t = raftpb.ConfChangeType_ConfChangeUpdateNode
	default:
		return nil, fmt.Errorf("%w: %s is not a raft configuration change", ErrBadChange, ch.Type)
	}
	if ch.Member.ID == 0 {
		return nil, fmt.Errorf("%w: %s", ErrIDZero, ch.Type)
	}
	cc := &raftpb.ConfChange{Type: t.Enum(), NodeId: proto.Uint64(ch.Member.ID), Id: proto.Uint64(requestID)}
	if ch.Type != ChangeRemove {
		m := ch.Member.clone()
		m.IsLearner = ch.Type == ChangeAddLearner
		b, err := (&ConfChangeContext{Member: m, Promote: ch.Type == ChangePromoteLearner}).Marshal()
		if err != nil {
			return nil, err
		}
		cc.Context = b
	}
	return cc, nil
}

// ValidateConfChange converts cc and validates it against the current list.
func (c *Cluster) ValidateConfChange(cc *raftpb.ConfChange) error {
	ch, err := ChangeFromConfChange(cc)
	if err != nil {
		return err
	}
	return c.Validate(ch)
}
