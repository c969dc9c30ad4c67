package server

import (
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestLeaseIDsRoundTrip(t *testing.T) {
	ids := []int64{1, 0x7fffffffffffffff, 300, -5}
	got, err := decodeLeaseIDs(encodeLeaseIDs(ids))
	if err != nil || !slices.Equal(got, ids) {
		t.Fatalf("decodeLeaseIDs(encodeLeaseIDs(%v)) = %v, %v", ids, got, err)
	}
}

func TestDecodeLeaseIDsRefusesBadBodies(t *testing.T) {
	tooMany := encodeLeaseIDs(make([]int64, maxRenewBatch+1))
	cases := map[string]struct {
		body []byte
		want string
	}{
		"empty":           {nil, "empty"},
		"truncated":       {[]byte{0x96}, "lease 0"},
		"truncated later": {append(encodeLeaseIDs([]int64{7}), 0x80), "lease 1"},
		"too many":        {tooMany, "more than 4096"},
	}
	for name, tc := range cases {
		if ids, err := decodeLeaseIDs(tc.body); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: decodeLeaseIDs = %v, %v; want an error with %q", name, ids, err, tc.want)
		}
	}
	if ids, err := decodeLeaseIDs(encodeLeaseIDs(make([]int64, maxRenewBatch))); err != nil || len(ids) != maxRenewBatch {
		t.Errorf("a batch of exactly %d: %d IDs, %v", maxRenewBatch, len(ids), err)
	}
}

func ttlBody(ttls ...int64) []byte {
	var b []byte
	for _, t := range ttls {
		b = protowire.AppendVarint(b, uint64(t))
	}
	return b
}

func TestDecodeRenewTTLs(t *testing.T) {
	got, err := decodeRenewTTLs(ttlBody(60, renewNotFound, 0), 3)
	if err != nil || !slices.Equal(got, []int64{60, renewNotFound, 0}) {
		t.Fatalf("decodeRenewTTLs = %v, %v", got, err)
	}
	cases := map[string]struct {
		body []byte
		n    int
	}{
		"short":     {ttlBody(60), 2},
		"long":      {ttlBody(60, 61), 1},
		"truncated": {[]byte{0x96}, 1},
		"below -1":  {ttlBody(-2), 1},
		"empty":     {nil, 1},
	}
	for name, tc := range cases {
		if ttls, err := decodeRenewTTLs(tc.body, tc.n); err == nil {
			t.Errorf("%s: decodeRenewTTLs(%x, %d) = %v, want an error", name, tc.body, tc.n, ttls)
		}
	}
}

// FuzzDecodeLeaseIDs: the leader decodes a batch from the peer port. It
// never panics, and what it accepts encodes back to IDs it decodes the same.
func FuzzDecodeLeaseIDs(f *testing.F) {
	f.Add(encodeLeaseIDs([]int64{1, 2, -1}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := decodeLeaseIDs(b)
		if err != nil {
			return
		}
		if len(ids) == 0 || len(ids) > maxRenewBatch {
			t.Fatalf("accepted %d IDs", len(ids))
		}
		again, err := decodeLeaseIDs(encodeLeaseIDs(ids))
		if err != nil || !slices.Equal(again, ids) {
			t.Fatalf("re-encoded %v decodes to %v, %v", ids, again, err)
		}
	})
}

// FuzzDecodeRenewTTLs: a follower decodes the leader's answer. It never
// panics and accepts only n TTLs of at least renewNotFound (nothing for no
// leases).
func FuzzDecodeRenewTTLs(f *testing.F) {
	f.Add(ttlBody(60, renewNotFound), 2)
	f.Add([]byte{0x01, 0x80}, 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 || n > maxRenewBatch {
			return
		}
		ttls, err := decodeRenewTTLs(b, n)
		if err != nil {
			return
		}
		if len(ttls) != n {
			t.Fatalf("%d TTLs for %d leases", len(ttls), n)
		}
		for _, ttl := range ttls {
			if ttl < renewNotFound {
				t.Fatalf("accepted TTL %d", ttl)
			}
		}
		if n == 0 && len(b) != 0 {
			t.Fatalf("%x accepted as the answer for no leases", b)
		}
	})
}
