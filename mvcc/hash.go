package mvcc

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/cockroachdb/pebble/v2"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// HashKV hashes the logical history at or below rev (0: current): every
// version above the compaction revision plus the newest live version at or
// below it of each key. It does not depend on how far background compaction
// has got, so members with the same history agree. It returns the hash, the
// compaction revision and the revision hashed.
func (s *Store) HashKV(rev int64) (hash uint32, compactRev, hashRev int64, err error) {
	it, cur, compactRev, release, err := s.readView()
	if err != nil {
		return 0, 0, 0, err
	}
	defer release()
	if rev <= 0 {
		rev = cur
	}
	if rev > cur {
		return 0, 0, 0, fmt.Errorf("%w: %d > %d", ErrFutureRev, rev, cur)
	}
	if rev < compactRev {
		return 0, 0, 0, fmt.Errorf("%w: %d < %d", ErrCompacted, rev, compactRev)
	}
	h, err := hashVersions(context.Background(), it, rev, compactRev)
	return h, compactRev, rev, err
}

// Hash hashes the whole logical state and returns it with the revision hashed: HashKV at the current revision plus
// the current and compaction revisions.
func (s *Store) Hash() (uint32, int64, error) {
	h, compactRev, rev, err := s.HashKV(0)
	if err != nil {
		return 0, 0, err
	}
	var b [20]byte
	binary.BigEndian.PutUint32(b[:], h)
	binary.BigEndian.PutUint64(b[4:], uint64(rev))
	binary.BigEndian.PutUint64(b[12:], uint64(compactRev))
	return crc32.Checksum(b[:], castagnoli), rev, nil
}

func hashVersions(ctx context.Context, it *pebble.Iterator, rev, compactRev int64) (uint32, error) {
	h := crc32.New(castagnoli)
	var prefix []byte
	seenOld := false // a version at or below compactRev of prefix was seen
	n := 0
	for it.First(); it.Valid(); it.Next() {
		if n++; n%4096 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		k := it.Key()
		p, r, ok := splitKVKey(k)
		if !ok {
			return 0, fmt.Errorf("%w: kv key %q", ErrBadEncoding, k)
		}
		if string(p) != string(prefix) {
			prefix, seenOld = append(prefix[:0], p...), false
		}
		if r.main > rev {
			continue
		}
		if r.main <= compactRev {
			if seenOld {
				continue
			}
			seenOld = true
			if isTombstone(it.Value()) {
				continue
			}
		}
		h.Write(k)
		h.Write(it.Value())
	}
	return h.Sum32(), it.Error()
}
