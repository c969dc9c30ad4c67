package membership

import (
	"errors"
	"testing"
)

func TestRestoreReplacesMembersKeepsIdentity(t *testing.T) {
	a, err := NewFromMembers(7, []Member{{ID: 1, Name: "a", PeerURLs: []string{"http://127.0.0.1:1"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewFromMembers(7, []Member{{ID: 2, Name: "b", PeerURLs: []string{"http://127.0.0.1:2"}}}, []uint64{1})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Restore(b); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Member(1); ok {
		t.Fatal("member 1 survived Restore")
	}
	if m, ok := a.Member(2); !ok || m.Name != "b" {
		t.Fatalf("member 2 = %+v, %v", m, ok)
	}
	if !a.IsRemoved(1) {
		t.Fatal("removed set not restored")
	}
	other, err := NewFromMembers(8, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Restore(other); !errors.Is(err, ErrCorruptClusterData) {
		t.Fatalf("Restore across clusters: %v", err)
	}
}
