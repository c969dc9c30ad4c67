//go:build failpoints

package failpoint

import "testing"

func TestLookup(t *testing.T) {
	cases := []struct {
		env, name string
		want      Spec
		ok        bool
	}{
		{"wal-before-fsync", "wal-before-fsync", Spec{"kill", 1}, true},
		{"a,wal-after-fsync=panic@3", "wal-after-fsync", Spec{"panic", 3}, true},
		{"apply-mid-batch@0", "apply-mid-batch", Spec{}, false},
		{"apply-mid-batch=explode", "apply-mid-batch", Spec{}, false},
		{"other", "apply-mid-batch", Spec{}, false},
		{"", "apply-mid-batch", Spec{}, false},
	}
	for _, c := range cases {
		got, ok := Lookup(c.env, c.name)
		if ok != c.ok || got != c.want {
			t.Errorf("Lookup(%q, %q) = %v, %v; want %v, %v", c.env, c.name, got, ok, c.want, c.ok)
		}
	}
}

func TestHitPanicsOnNthHit(t *testing.T) {
	t.Setenv(Env, "test-point=panic@2")
	Hit("test-point") // first hit: nothing
	defer func() {
		if recover() == nil {
			t.Fatal("second hit did not panic")
		}
	}()
	Hit("test-point")
}
