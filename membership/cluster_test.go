package membership

import (
	"errors"
	"reflect"
	"sync"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func newTestCluster(t *testing.T) *Cluster {
	t.Helper()
	nu, err := ParseInitialCluster("a=http://h1:2380,b=http://h2:2380,b=http://h2b:2380,c=http://h3:2380")
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewInitial("tok", nu)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewInitial(t *testing.T) {
	c := newTestCluster(t)
	ms := c.Members()
	if len(ms) != 3 {
		t.Fatalf("got %d members, want 3", len(ms))
	}
	ids := []uint64{}
	for i, m := range ms {
		if i > 0 && ms[i-1].ID >= m.ID {
			t.Fatal("Members not sorted by ID")
		}
		if m.IsLearner {
			t.Fatalf("initial member %s is a learner", m.Name)
		}
		if m.ID != MemberID("tok", m.PeerURLs) {
			t.Fatalf("member %s has ID %x, want MemberID of its URLs", m.Name, m.ID)
		}
		ids = append(ids, m.ID)
	}
	if c.ID() != ClusterID("tok", ids) {
		t.Fatal("cluster ID is not ClusterID(token, member IDs)")
	}
	nu, _ := ParseInitialCluster("a=http://h1:2380,b=http://h2:2380,b=http://h2b:2380,c=http://h3:2380")
	if other, _ := NewInitial("tok2", nu); other.ID() == c.ID() {
		t.Fatal("same cluster ID with another token")
	}
	if fewer, _ := NewInitial("tok", nu[:2]); fewer.ID() == c.ID() {
		t.Fatal("same cluster ID with another member set")
	}
	b, ok := c.MemberByName("b")
	if !ok || !reflect.DeepEqual(b.PeerURLs, []string{"http://h2:2380", "http://h2b:2380"}) {
		t.Fatalf("MemberByName(b) = %+v, %v", b, ok)
	}
	if _, ok := c.MemberByName("zz"); ok {
		t.Fatal("MemberByName found a missing name")
	}
	if _, err := NewInitial("", []NamedURLs{{Name: "a", URLs: []string{"http://h:1"}}}); !errors.Is(err, ErrBadInitialCluster) {
		t.Fatalf("empty token: %v", err)
	}
	if _, err := NewInitial("t", nil); !errors.Is(err, ErrBadInitialCluster) {
		t.Fatalf("no members: %v", err)
	}
}

func TestReadersGetCopies(t *testing.T) {
	c := newTestCluster(t)
	m := c.Members()[0]
	m.PeerURLs[0] = "http://mutated:1"
	got, _ := c.Member(m.ID)
	if got.PeerURLs[0] == "http://mutated:1" {
		t.Fatal("Members returned a slice aliasing internal state")
	}
}

// applyOK applies ch and fails the test on error.
func applyOK(t *testing.T, c *Cluster, ch Change) {
	t.Helper()
	if err := c.Apply(ch); err != nil {
		t.Fatalf("Apply(%s %x): %v", ch.Type, ch.Member.ID, err)
	}
}

func TestConfChangePaths(t *testing.T) {
	c := newTestCluster(t)
	id := RuntimeMemberID("tok", []string{"http://h4:2380"}, 42)
	applyOK(t, c, Change{Type: ChangeAddLearner, Member: Member{ID: id, PeerURLs: []string{"http://h4:2380"}}})
	if m, _ := c.Member(id); !m.IsLearner {
		t.Fatal("added learner is not a learner")
	}
	if !reflect.DeepEqual(c.LearnerIDs(), []uint64{id}) || len(c.VoterIDs()) != 3 {
		t.Fatalf("learners %v voters %v", c.LearnerIDs(), c.VoterIDs())
	}
	applyOK(t, c, Change{Type: ChangePromoteLearner, Member: Member{ID: id}})
	if m, _ := c.Member(id); m.IsLearner {
		t.Fatal("promoted member is still a learner")
	}
	applyOK(t, c, Change{Type: ChangeUpdatePeerURLs, Member: Member{ID: id, PeerURLs: []string{"http://h5:2380"}}})
	if m, _ := c.Member(id); !reflect.DeepEqual(m.PeerURLs, []string{"http://h5:2380"}) {
		t.Fatalf("peer URLs not updated: %v", m.PeerURLs)
	}
	applyOK(t, c, Change{Type: ChangePublish, Member: Member{ID: id, Name: "d", ClientURLs: []string{"http://h5:2379"}}})
	if m, ok := c.MemberByName("d"); !ok || m.ID != id || m.ClientURLs[0] != "http://h5:2379" {
		t.Fatalf("published member: %+v %v", m, ok)
	}
	applyOK(t, c, Change{Type: ChangeRemove, Member: Member{ID: id}})
	if _, ok := c.Member(id); ok || !c.IsRemoved(id) {
		t.Fatal("removed member still present or not marked removed")
	}
	v := RuntimeMemberID("tok", []string{"http://h6:2380"}, 1)
	applyOK(t, c, Change{Type: ChangeAddVoter, Member: Member{ID: v, PeerURLs: []string{"http://h6:2380"}, IsLearner: true}})
	if m, _ := c.Member(v); m.IsLearner {
		t.Fatal("ChangeAddVoter added a learner")
	}
}

func TestValidationErrors(t *testing.T) {
	c := newTestCluster(t)
	a, _ := c.MemberByName("a")
	learner := uint64(0xabc)
	applyOK(t, c, Change{Type: ChangeAddLearner, Member: Member{ID: learner, PeerURLs: []string{"http://l:1"}}})
	gone := uint64(0xdead)
	applyOK(t, c, Change{Type: ChangeAddVoter, Member: Member{ID: gone, PeerURLs: []string{"http://g:1"}}})
	applyOK(t, c, Change{Type: ChangeRemove, Member: Member{ID: gone}})
	url := func(s string) []string { return []string{s} }
	cases := []struct {
		name string
		ch   Change
		want error
	}{
		{"zero id", Change{ChangeAddVoter, Member{PeerURLs: url("http://n:1")}}, ErrIDZero},
		{"duplicate id", Change{ChangeAddVoter, Member{ID: a.ID, PeerURLs: url("http://n:1")}}, ErrIDExists},
		{"re-add removed", Change{ChangeAddVoter, Member{ID: gone, PeerURLs: url("http://n:1")}}, ErrIDRemoved},
		{"peer url used", Change{ChangeAddVoter, Member{ID: 7, PeerURLs: a.PeerURLs}}, ErrPeerURLExists},
		{"no peer urls", Change{ChangeAddVoter, Member{ID: 7}}, ErrNoPeerURLs},
		{"bad peer url", Change{ChangeAddVoter, Member{ID: 7, PeerURLs: url("h:1")}}, ErrBadURL},
		{"name used", Change{ChangeAddVoter, Member{ID: 7, Name: "a", PeerURLs: url("http://n:1")}}, ErrNameExists},
		{"too many learners", Change{ChangeAddLearner, Member{ID: 7, PeerURLs: url("http://n:1")}}, ErrTooManyLearners},
		{"promote voter", Change{ChangePromoteLearner, Member{ID: a.ID}}, ErrMemberNotLearner},
		{"promote unknown", Change{ChangePromoteLearner, Member{ID: 7}}, ErrIDNotFound},
		{"promote removed", Change{ChangePromoteLearner, Member{ID: gone}}, ErrIDRemoved},
		{"remove unknown", Change{ChangeRemove, Member{ID: 7}}, ErrIDNotFound},
		{"remove removed", Change{ChangeRemove, Member{ID: gone}}, ErrIDRemoved},
		{"update unknown", Change{ChangeUpdatePeerURLs, Member{ID: 7, PeerURLs: url("http://n:1")}}, ErrIDNotFound},
		{"update to used url", Change{ChangeUpdatePeerURLs, Member{ID: learner, PeerURLs: a.PeerURLs}}, ErrPeerURLExists},
		{"update to none", Change{ChangeUpdatePeerURLs, Member{ID: learner}}, ErrNoPeerURLs},
		{"publish used name", Change{ChangePublish, Member{ID: learner, Name: "b"}}, ErrNameExists},
		{"publish bad client url", Change{ChangePublish, Member{ID: learner, ClientURLs: url("x")}}, ErrBadURL},
		{"publish removed", Change{ChangePublish, Member{ID: gone, Name: "z"}}, ErrIDRemoved},
		{"unknown type", Change{99, Member{ID: a.ID}}, ErrBadChange},
	}
	before := c.Encode()
	for _, tc := range cases {
		if err := c.Validate(tc.ch); !errors.Is(err, tc.want) {
			t.Errorf("%s: Validate = %v, want %v", tc.name, err, tc.want)
		}
		if err := c.Apply(tc.ch); !errors.Is(err, tc.want) {
			t.Errorf("%s: Apply = %v, want %v", tc.name, err, tc.want)
		}
	}
	if string(c.Encode()) != string(before) {
		t.Fatal("a refused change modified the cluster")
	}
	// Updating a member to its own URLs is fine.
	if err := c.Validate(Change{ChangeUpdatePeerURLs, Member{ID: a.ID, PeerURLs: a.PeerURLs}}); err != nil {
		t.Fatalf("update to own URLs: %v", err)
	}
}

func TestCannotRemoveLastVoter(t *testing.T) {
	c, err := NewInitial("tok", []NamedURLs{{Name: "a", URLs: []string{"http://h:1"}}})
	if err != nil {
		t.Fatal(err)
	}
	id := c.Members()[0].ID
	applyOK(t, c, Change{ChangeAddLearner, Member{ID: 5, PeerURLs: []string{"http://l:1"}}})
	if err := c.Apply(Change{ChangeRemove, Member{ID: id}}); !errors.Is(err, ErrLastVoter) {
		t.Fatalf("remove last voter: %v", err)
	}
	applyOK(t, c, Change{ChangeRemove, Member{ID: 5}}) // removing a learner is fine
}

func TestConfChangeConversionRoundTrip(t *testing.T) {
	changes := []Change{
		{ChangeAddVoter, Member{ID: 9, Name: "n", PeerURLs: []string{"http://n:1"}}},
		{ChangeAddLearner, Member{ID: 9, PeerURLs: []string{"http://n:1"}, IsLearner: true}},
		{ChangePromoteLearner, Member{ID: 9}},
		{ChangeRemove, Member{ID: 9}},
		{ChangeUpdatePeerURLs, Member{ID: 9, PeerURLs: []string{"http://n:2"}}},
	}
	for _, ch := range changes {
		cc, err := ch.ConfChange(77)
		if err != nil {
			t.Fatalf("%s: %v", ch.Type, err)
		}
		if cc.GetNodeId() != 9 || cc.GetId() != 77 {
			t.Fatalf("%s: node %d id %d", ch.Type, cc.GetNodeId(), cc.GetId())
		}
		back, err := ChangeFromConfChange(cc)
		if err != nil {
			t.Fatalf("%s: back: %v", ch.Type, err)
		}
		if back.Type != ch.Type || back.Member.ID != ch.Member.ID || !reflect.DeepEqual(back.Member.PeerURLs, ch.Member.PeerURLs) {
			t.Fatalf("%s: round trip gave %+v", ch.Type, back)
		}
	}
	if _, err := (Change{ChangePublish, Member{ID: 9}}).ConfChange(1); !errors.Is(err, ErrBadChange) {
		t.Fatalf("publish as conf change: %v", err)
	}
}

func TestChangeFromConfChangeErrors(t *testing.T) {
	ctx, _ := (&ConfChangeContext{Member: Member{ID: 8, PeerURLs: []string{"http://x:1"}}}).Marshal()
	promote, _ := (&ConfChangeContext{Member: Member{ID: 9}, Promote: true}).Marshal()
	add := raftpb.ConfChangeType_ConfChangeAddNode
	cases := map[string]*raftpb.ConfChange{
		"node 0":          {Type: add.Enum(), NodeId: proto.Uint64(0), Context: ctx},
		"no context":      {Type: add.Enum(), NodeId: proto.Uint64(8)},
		"id mismatch":     {Type: add.Enum(), NodeId: proto.Uint64(9), Context: ctx},
		"garbage context": {Type: add.Enum(), NodeId: proto.Uint64(8), Context: []byte("{x")},
		"promote learner": {Type: raftpb.ConfChangeType_ConfChangeAddLearnerNode.Enum(), NodeId: proto.Uint64(9), Context: promote},
		"unknown type":    {Type: raftpb.ConfChangeType(42).Enum(), NodeId: proto.Uint64(8), Context: ctx},
	}
	for name, cc := range cases {
		if _, err := ChangeFromConfChange(cc); !errors.Is(err, ErrBadChange) {
			t.Errorf("%s: %v, want ErrBadChange", name, err)
		}
	}
	c := newTestCluster(t)
	a, _ := c.MemberByName("a")
	dup, _ := (&ConfChangeContext{Member: Member{ID: a.ID, PeerURLs: []string{"http://q:1"}}}).Marshal()
	err := c.ValidateConfChange(&raftpb.ConfChange{Type: add.Enum(), NodeId: proto.Uint64(a.ID), Context: dup})
	if !errors.Is(err, ErrIDExists) {
		t.Fatalf("ValidateConfChange duplicate: %v", err)
	}
}

func TestConcurrentReadersAndWriter(t *testing.T) {
	c := newTestCluster(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = c.Members()
				_ = c.IsRemoved(1)
				_ = c.Encode()
			}
		})
	}
	for i := uint64(1); i <= 200; i++ {
		applyOK(t, c, Change{ChangeAddVoter, Member{ID: 1000 + i, PeerURLs: []string{"http://x:1"}}})
		applyOK(t, c, Change{ChangeRemove, Member{ID: 1000 + i}})
	}
	close(stop)
	wg.Wait()
	if len(c.RemovedIDs()) != 200 {
		t.Fatalf("removed %d, want 200", len(c.RemovedIDs()))
	}
}
