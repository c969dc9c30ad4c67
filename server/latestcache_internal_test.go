package server

import "testing"

// --latest-cache-bytes=0 turns the cache off; mvcc reads 0 as its default
// and a negative budget as off.
func TestLatestCacheBytesMapping(t *testing.T) {
	for _, tc := range []struct {
		flag int64
		want int
	}{{0, -1}, {1, 1}, {16 << 20, 16 << 20}} {
		if got := latestCacheBytes(tc.flag); got != tc.want {
			t.Errorf("latestCacheBytes(%d) = %d, want %d", tc.flag, got, tc.want)
		}
	}
}
