package mvcc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Key prefixes owned by mvcc in the shared backend (see package backend).
const (
	prefixKV   = 'k'
	prefixRev  = 'r'
	prefixMeta = 'c'
)

// revSuffixLen is the length of the inverted revision after the escaped user
// key in a 'k' key.
const revSuffixLen = 16

// ErrBadEncoding marks a stored key or value that does not decode.
var ErrBadEncoding = errors.New("mvcc: bad encoding")

// revision is a point in the store's history: main is bumped by every write
// request, sub numbers the changes inside one request.
type revision struct {
	main, sub int64
}

// appendEscaped appends the order-preserving, prefix-free encoding of key:
// 0x00 becomes 0x00 0xff and the key ends with 0x00 0x01.
func appendEscaped(dst, key []byte) []byte {
	for _, c := range key {
		if c == 0 {
			dst = append(dst, 0, 0xff)
		} else {
			dst = append(dst, c)
		}
	}
	return append(dst, 0, 1)
}

// decodeEscaped decodes an escaped key at the start of b and returns the key
// and the rest of b.
func decodeEscaped(b []byte) (key, rest []byte, err error) {
	key = make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != 0 {
			key = append(key, b[i])
			continue
		}
		if i+1 >= len(b) {
			return nil, nil, fmt.Errorf("%w: truncated escape", ErrBadEncoding)
		}
		switch b[i+1] {
		case 0xff:
			key = append(key, 0)
			i++
		case 1:
			return key, b[i+2:], nil
		default:
			return nil, nil, fmt.Errorf("%w: escape 0x00 0x%02x", ErrBadEncoding, b[i+1])
		}
	}
	return nil, nil, fmt.Errorf("%w: unterminated key", ErrBadEncoding)
}

// keyPrefix is 'k' + escaped key: every version of key starts with it.
func keyPrefix(key []byte) []byte {
	return appendEscaped(append(make([]byte, 0, len(key)+3+revSuffixLen), prefixKV), key)
}

func appendInvRev(dst []byte, rev revision) []byte {
	dst = binary.BigEndian.AppendUint64(dst, ^uint64(rev.main))
	return binary.BigEndian.AppendUint64(dst, ^uint64(rev.sub))
}

// kvKey is the backend key of key's version at rev. Newer versions sort
// first.
func kvKey(key []byte, rev revision) []byte { return appendInvRev(keyPrefix(key), rev) }

// seekKey is where the newest version of the key with prefix p at or below
// main revision rev starts.
func seekKey(p []byte, rev int64) []byte {
	return appendInvRev(append([]byte(nil), p...), revision{rev, math.MaxInt64})
}

// nextPrefixKey sorts after every version of the key with prefix p and
// before the next user key (revision (0,0) never exists).
func nextPrefixKey(p []byte) []byte {
	out := append(make([]byte, 0, len(p)+revSuffixLen), p...)
	for i := 0; i < revSuffixLen; i++ {
		out = append(out, 0xff)
	}
	return out
}

// splitKVKey returns the prefix and revision of a 'k' key without copying.
func splitKVKey(k []byte) (prefix []byte, rev revision, ok bool) {
	if len(k) < 3+revSuffixLen || k[0] != prefixKV {
		return nil, revision{}, false
	}
	n := len(k) - revSuffixLen
	rev.main = int64(^binary.BigEndian.Uint64(k[n:]))
	rev.sub = int64(^binary.BigEndian.Uint64(k[n+8:]))
	return k[:n], rev, true
}

// decodeKVKey decodes a 'k' key fully.
func decodeKVKey(k []byte) ([]byte, revision, error) {
	if len(k) < 1 || k[0] != prefixKV {
		return nil, revision{}, fmt.Errorf("%w: not a kv key", ErrBadEncoding)
	}
	key, rest, err := decodeEscaped(k[1:])
	if err != nil {
		return nil, revision{}, err
	}
	if len(rest) != revSuffixLen {
		return nil, revision{}, fmt.Errorf("%w: revision suffix of %d bytes", ErrBadEncoding, len(rest))
	}
	_, rev, _ := splitKVKey(k)
	return key, rev, nil
}

// revKey is the event-log key of rev: 'r' + main + sub, big endian.
func revKey(rev revision) []byte {
	b := make([]byte, 0, 17)
	b = append(b, prefixRev)
	b = binary.BigEndian.AppendUint64(b, uint64(rev.main))
	return binary.BigEndian.AppendUint64(b, uint64(rev.sub))
}

func decodeRevKey(k []byte) (revision, error) {
	if len(k) != 17 || k[0] != prefixRev {
		return revision{}, fmt.Errorf("%w: rev key of %d bytes", ErrBadEncoding, len(k))
	}
	return revision{int64(binary.BigEndian.Uint64(k[1:])), int64(binary.BigEndian.Uint64(k[9:]))}, nil
}

// Value kinds: the first byte of a 'k' value.
const (
	kindPut       = 'p'
	kindTombstone = 't'
)

// encodePut encodes a put version: kind, uvarint create revision, uvarint
// version, varint lease, then the value bytes. Key and mod revision live in
// the backend key.
func encodePut(kv *mvccpb.KeyValue) []byte {
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(kv.Value))
	b = append(b, kindPut)
	b = binary.AppendUvarint(b, uint64(kv.CreateRevision))
	b = binary.AppendUvarint(b, uint64(kv.Version))
	b = binary.AppendVarint(b, kv.Lease)
	return append(b, kv.Value...)
}

var tombstoneValue = []byte{kindTombstone}

// decodeValue decodes a 'k' value into a KeyValue for key at rev. It returns
// nil for a tombstone. The value bytes are copied.
func decodeValue(key []byte, rev revision, v []byte) (*mvccpb.KeyValue, error) {
	if len(v) == 1 && v[0] == kindTombstone {
		return nil, nil
	}
	if len(v) < 1 || v[0] != kindPut {
		return nil, fmt.Errorf("%w: value kind", ErrBadEncoding)
	}
	kv := &mvccpb.KeyValue{Key: key, ModRevision: rev.main}
	p := v[1:]
	var vals [2]uint64
	for i := range vals {
		x, n := binary.Uvarint(p)
		if n <= 0 {
			return nil, fmt.Errorf("%w: value header", ErrBadEncoding)
		}
		vals[i], p = x, p[n:]
	}
	lease, n := binary.Varint(p)
	if n <= 0 {
		return nil, fmt.Errorf("%w: value lease", ErrBadEncoding)
	}
	kv.CreateRevision, kv.Version, kv.Lease = int64(vals[0]), int64(vals[1]), lease
	kv.Value = append([]byte(nil), p[n:]...)
	return kv, nil
}

func isTombstone(v []byte) bool { return len(v) == 1 && v[0] == kindTombstone }

func putInt64(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

func getInt64(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: int64 of %d bytes", ErrBadEncoding, len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}
