package membership

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	c := newTestCluster(t)
	applyOK(t, c, Change{ChangeAddLearner, Member{ID: 0x77, PeerURLs: []string{"http://l:1"}}})
	applyOK(t, c, Change{ChangePublish, Member{ID: 0x77, Name: "l", ClientURLs: []string{"http://l:2"}}})
	applyOK(t, c, Change{ChangeAddVoter, Member{ID: 0x99, PeerURLs: []string{"http://r:1"}}})
	applyOK(t, c, Change{ChangeRemove, Member{ID: 0x99}})
	b := c.Encode()
	d, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode: %v\n%s", err, b)
	}
	if d.ID() != c.ID() || !reflect.DeepEqual(d.Members(), c.Members()) || !reflect.DeepEqual(d.RemovedIDs(), c.RemovedIDs()) {
		t.Fatalf("round trip differs:\n%+v\n%+v", d.Members(), c.Members())
	}
	if !bytes.Equal(d.Encode(), b) {
		t.Fatal("re-encoding differs")
	}
	if !d.IsRemoved(0x99) {
		t.Fatal("removed set lost")
	}
}

func TestEncodeDeterministic(t *testing.T) {
	a, b := newTestCluster(t), newTestCluster(t)
	for _, c := range []*Cluster{a, b} {
		applyOK(t, c, Change{ChangeAddVoter, Member{ID: 5, PeerURLs: []string{"http://x:1"}}})
		applyOK(t, c, Change{ChangeRemove, Member{ID: 5}})
	}
	if !bytes.Equal(a.Encode(), b.Encode()) {
		t.Fatal("equal clusters encode differently")
	}
}

func TestDecodeRejects(t *testing.T) {
	good := `{"version":1,"clusterID":5,"members":[{"id":1,"peerURLs":["http://a:1"]}],"removed":[]}`
	if _, err := Decode([]byte(good)); err != nil {
		t.Fatalf("good document: %v", err)
	}
	// The empty list is the state before the bootstrap changes apply.
	if c, err := Decode([]byte(`{"version":1,"clusterID":5,"members":[],"removed":[]}`)); err != nil || len(c.Members()) != 0 {
		t.Fatalf("empty pre-bootstrap list: %v", err)
	}
	bad := map[string]string{
		"garbage":        `{`,
		"version":        `{"version":2,"clusterID":5,"members":[{"id":1,"peerURLs":["http://a:1"]}],"removed":[]}`,
		"zero cluster":   `{"version":1,"clusterID":0,"members":[{"id":1,"peerURLs":["http://a:1"]}],"removed":[]}`,
		"no members":     `{"version":1,"clusterID":5,"members":[],"removed":[3]}`,
		"zero member":    `{"version":1,"clusterID":5,"members":[{"id":0,"peerURLs":["http://a:1"]}],"removed":[]}`,
		"dup member":     `{"version":1,"clusterID":5,"members":[{"id":1,"peerURLs":["http://a:1"]},{"id":1,"peerURLs":["http://b:1"]}],"removed":[]}`,
		"dup url":        `{"version":1,"clusterID":5,"members":[{"id":1,"peerURLs":["http://a:1"]},{"id":2,"peerURLs":["http://a:1"]}],"removed":[]}`,
		"removed member": `{"version":1,"clusterID":5,"members":[{"id":1,"peerURLs":["http://a:1"]}],"removed":[1]}`,
		"only learners":  `{"version":1,"clusterID":5,"members":[{"id":1,"peerURLs":["http://a:1"],"isLearner":true}],"removed":[]}`,
		"unknown field":  `{"version":1,"clusterID":5,"members":[{"id":1,"peerURLs":["http://a:1"]}],"removed":[],"x":1}`,
		"trailing":       good + `{}`,
		"bad url":        `{"version":1,"clusterID":5,"members":[{"id":1,"peerURLs":["a:1"]}],"removed":[]}`,
		"dup removed":    `{"version":1,"clusterID":5,"members":[{"id":1,"peerURLs":["http://a:1"]}],"removed":[3,3]}`,
	}
	for name, s := range bad {
		if _, err := Decode([]byte(s)); !errors.Is(err, ErrCorruptClusterData) {
			t.Errorf("%s: Decode = %v, want ErrCorruptClusterData", name, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"version":1,"clusterID":5,"members":[{"id":1,"peerURLs":["http://a:1"]}],"removed":[2]}`))
	f.Add([]byte(`{"version":1,"clusterID":5,"members":[{"id":1,"name":"a","peerURLs":["http://a:1"],"clientURLs":["http://a:2"]},{"id":3,"peerURLs":["https://b:1"],"isLearner":true}],"removed":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrCorruptClusterData) {
				t.Fatalf("error not marked corrupt: %v", err)
			}
			return
		}
		enc := c.Encode()
		d, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-decode of our own encoding failed: %v\n%s", err, enc)
		}
		if !bytes.Equal(d.Encode(), enc) {
			t.Fatal("encoding not stable")
		}
	})
}

func FuzzConfChangeContext(f *testing.F) {
	f.Add([]byte(`{"member":{"id":1,"peerURLs":["http://a:1"]},"promote":true}`))
	f.Add([]byte(`{"member":{"id":2,"name":"x","peerURLs":["http://a:1"],"isLearner":true}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var c ConfChangeContext
		if err := c.Unmarshal(b); err != nil {
			if !errors.Is(err, ErrBadChange) {
				t.Fatalf("error not ErrBadChange: %v", err)
			}
			return
		}
		out, err := c.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		var d ConfChangeContext
		if err := d.Unmarshal(out); err != nil {
			t.Fatalf("re-unmarshal: %v", err)
		}
		if !reflect.DeepEqual(normalize(c), normalize(d)) {
			t.Fatalf("round trip differs: %+v vs %+v", c, d)
		}
	})
}

// normalize maps empty slices to nil so that JSON's omitempty round trip
// compares equal.
func normalize(c ConfChangeContext) ConfChangeContext {
	if len(c.Member.PeerURLs) == 0 {
		c.Member.PeerURLs = nil
	}
	if len(c.Member.ClientURLs) == 0 {
		c.Member.ClientURLs = nil
	}
	return c
}
