package membership

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseInitialClusterKeepsOrderAndGroupsNames(t *testing.T) {
	got, err := ParseInitialCluster("b=http://h2:2380, a=http://h1:2380,b=https://h3:2381")
	if err != nil {
		t.Fatal(err)
	}
	want := []NamedURLs{
		{Name: "b", URLs: []string{"http://h2:2380", "https://h3:2381"}},
		{Name: "a", URLs: []string{"http://h1:2380"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestParseInitialClusterErrors(t *testing.T) {
	cases := map[string]string{
		"empty":         "",
		"no equals":     "a",
		"empty name":    "=http://h:1",
		"bad scheme":    "a=ftp://h:1",
		"no port":       "a=http://h",
		"zero port":     "a=http://h:0",
		"path":          "a=http://h:1/x",
		"query":         "a=http://h:1?x=1",
		"user":          "a=http://u@h:1",
		"empty url":     "a=",
		"dup url":       "a=http://h:1,b=http://h:1",
		"dup url same":  "a=http://h:1,a=http://h:1",
		"trailing sep":  "a=http://h:1,",
		"not a url":     "a=%zz",
		"no host":       "a=http://:1",
		"port too high": "a=http://h:70000",
	}
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseInitialCluster(s)
			if !errors.Is(err, ErrBadInitialCluster) {
				t.Fatalf("ParseInitialCluster(%q) = %v, want ErrBadInitialCluster", s, err)
			}
		})
	}
	_, err := ParseInitialCluster("a=http://h:1,b=http://h:1")
	if !errors.Is(err, ErrPeerURLExists) {
		t.Fatalf("duplicate URL: %v, want ErrPeerURLExists too", err)
	}
}

func TestMemberIDStableAndOrderIndependent(t *testing.T) {
	a := MemberID("tok", []string{"http://a:1", "http://b:2"})
	b := MemberID("tok", []string{"http://b:2", "http://a:1"})
	if a != b || a == 0 {
		t.Fatalf("IDs %x and %x: want equal and non-zero", a, b)
	}
	if MemberID("tok", []string{"http://a:1", "http://b:2"}) != a {
		t.Fatal("MemberID not stable across calls")
	}
}

func TestMemberIDsDistinct(t *testing.T) {
	base := MemberID("tok", []string{"http://a:1"})
	others := map[string]uint64{
		"other token":   MemberID("tok2", []string{"http://a:1"}),
		"other url":     MemberID("tok", []string{"http://a:2"}),
		"extra url":     MemberID("tok", []string{"http://a:1", "http://a:2"}),
		"runtime":       RuntimeMemberID("tok", []string{"http://a:1"}, 1),
		"shifted field": MemberID("tokhttp://a:1", nil),
	}
	seen := map[uint64]string{base: "base"}
	for name, id := range others {
		if id == 0 {
			t.Errorf("%s: zero ID", name)
		}
		if prev, dup := seen[id]; dup {
			t.Errorf("%s: ID %x equals that of %s", name, id, prev)
		}
		seen[id] = name
	}
	r1 := RuntimeMemberID("tok", []string{"http://a:1"}, 1)
	r2 := RuntimeMemberID("tok", []string{"http://a:1"}, 2)
	if r1 == r2 {
		t.Fatal("runtime IDs with different unique values are equal")
	}
	if RuntimeMemberID("tok", []string{"http://a:1"}, 1) != r1 {
		t.Fatal("RuntimeMemberID not deterministic")
	}
}

func TestClusterIDDependsOnTokenAndMembers(t *testing.T) {
	ids := []uint64{3, 1, 2}
	c := ClusterID("tok", ids)
	if c == 0 {
		t.Fatal("zero cluster ID")
	}
	if ClusterID("tok", []uint64{1, 2, 3}) != c {
		t.Fatal("cluster ID depends on member order")
	}
	if ClusterID("tok2", ids) == c {
		t.Fatal("cluster ID does not depend on the token")
	}
	if ClusterID("tok", []uint64{1, 2}) == c || ClusterID("tok", []uint64{1, 2, 4}) == c {
		t.Fatal("cluster ID does not depend on the member set")
	}
}

func TestNonZeroRehashesZero(t *testing.T) {
	zero := make([]byte, 32)
	if nonZero(zero) == 0 {
		t.Fatal("nonZero returned 0")
	}
}
