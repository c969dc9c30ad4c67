package mvcc

import (
	"bytes"
	"testing"
)

func TestEscapedKeysKeepOrder(t *testing.T) {
	keys := [][]byte{{}, {0}, {0, 0}, {0, 1}, {0, 0xff}, {1}, []byte("a"), []byte("a\x00"), []byte("a\x00\x01"), []byte("a\x01"), []byte("ab"), {0xff}, {0xff, 0}, {0xff, 0xff}}
	for i := range keys {
		for j := range keys {
			want := bytes.Compare(keys[i], keys[j])
			got := bytes.Compare(kvKey(keys[i], revision{5, 0}), kvKey(keys[j], revision{1, 0}))
			if want != 0 && got != want {
				t.Errorf("order of %q vs %q: encoded %d, user %d", keys[i], keys[j], got, want)
			}
		}
	}
	// Newer revisions sort first within a key.
	if bytes.Compare(kvKey([]byte("a"), revision{3, 1}), kvKey([]byte("a"), revision{3, 0})) >= 0 {
		t.Error("revision (3,1) does not sort before (3,0)")
	}
	if bytes.Compare(kvKey([]byte("a"), revision{4, 0}), kvKey([]byte("a"), revision{3, 9})) >= 0 {
		t.Error("revision 4 does not sort before 3")
	}
}

// FuzzDecodeKVKey checks that decoding arbitrary bytes never panics, that a
// decoded key re-encodes to the same bytes, and that encode/decode round
// trips.
func FuzzDecodeKVKey(f *testing.F) {
	f.Add([]byte("a\x00b"), int64(1), int64(0), []byte{})
	f.Add([]byte{0xff, 0, 0}, int64(1<<40), int64(3), kvKey([]byte("x"), revision{2, 1}))
	f.Add([]byte{}, int64(7), int64(0), []byte("k\x00\x01"))
	f.Fuzz(func(t *testing.T, key []byte, main, sub int64, raw []byte) {
		enc := kvKey(key, revision{main, sub})
		k, r, err := decodeKVKey(enc)
		if err != nil || !bytes.Equal(k, key) || r != (revision{main, sub}) {
			t.Fatalf("round trip of %q %d/%d: %q %v %v", key, main, sub, k, r, err)
		}
		if p, r2, ok := splitKVKey(enc); !ok || r2 != r || !bytes.Equal(p, keyPrefix(key)) {
			t.Fatalf("split of %q: %q %v %v", enc, p, r2, ok)
		}
		if k, r, err := decodeKVKey(raw); err == nil {
			if again := kvKey(k, r); !bytes.Equal(again, raw) {
				t.Fatalf("decode(%q) = %q %v re-encodes to %q", raw, k, r, again)
			}
		}
		_, _ = decodeRevKey(raw)
		_, _ = decodeValue(key, revision{main, sub}, raw)
	})
}
