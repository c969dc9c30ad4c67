package snap

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
)

func withTrailer(b []byte) []byte {
	sum := sha256.Sum256(b)
	return append(bytes.Clone(b), sum[:]...)
}

func TestVerifyChecksumAcceptsIntactSnapshots(t *testing.T) {
	for _, size := range []int{0, 1, 31, 32, 33, 64<<10 - 1, 64 << 10, 200_000} {
		body := bytes.Repeat([]byte{0, 1, 2, 3, 5, 7, 11}, size/7+1)[:size]
		data := withTrailer(body)
		// One byte per read exercises the held-back tail across reads.
		for _, r := range []io.Reader{bytes.NewReader(data), iotest.OneByteReader(bytes.NewReader(data))} {
			n, err := VerifyChecksum(r)
			if err != nil || n != int64(size) {
				t.Fatalf("size %d: VerifyChecksum = %d, %v", size, n, err)
			}
		}
	}
}

func TestVerifyChecksumRejectsDamage(t *testing.T) {
	body := bytes.Repeat([]byte("cairn"), 10_000)
	good := withTrailer(body)
	cases := map[string][]byte{
		"flipped body byte":    append(append([]byte{}, good[:100]...), append([]byte{good[100] ^ 1}, good[101:]...)...),
		"flipped trailer byte": append(append([]byte{}, good[:len(good)-1]...), good[len(good)-1]^0x80),
		"truncated":            good[:len(good)-10],
		"no trailer":           body,
		"too short":            good[:20],
		"empty":                nil,
		"extra byte":           append(append([]byte{}, good...), 0),
	}
	for name, data := range cases {
		if _, err := VerifyChecksum(bytes.NewReader(data)); !errors.Is(err, ErrChecksum) {
			t.Errorf("%s: err = %v, want ErrChecksum", name, err)
		}
	}
}

func TestVerifyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "snapshot.db")
	if err := os.WriteFile(p, withTrailer([]byte("archive")), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := VerifyFile(p); err != nil || n != 7 {
		t.Fatalf("VerifyFile = %d, %v", n, err)
	}
	if err := os.WriteFile(p, []byte("archive without a trailer, long enough to hold one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyFile(p); !errors.Is(err, ErrChecksum) {
		t.Fatalf("damaged file: err = %v", err)
	}
	if _, err := VerifyFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("missing file verified")
	}
}
