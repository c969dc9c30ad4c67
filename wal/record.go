package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Record types.
const (
	recCRC       byte = 1 // payload: 4-byte little-endian chain value
	recMetadata  byte = 2 // payload: cluster ID, member ID (8 bytes LE each)
	recEntry     byte = 3 // payload: see encodeEntry
	recHardState byte = 4 // payload: see encodeHardState
	recSnapshot  byte = 5 // payload: see encodeSnapshot
	maxRecType        = recSnapshot
)

const (
	headerSize = 9 // length uint32 LE | crc uint32 LE | type byte
	// MaxRecordSize caps a record's payload. Save refuses larger entries
	// and the reader treats a larger length as damage, so a damaged length
	// field never drives an allocation.
	MaxRecordSize = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordCRC chains the checksum of one record from seed: it covers the
// length and type fields and the payload.
func recordCRC(seed uint32, hdr []byte, payload []byte) uint32 {
	c := crc32.Update(seed, castagnoli, hdr[0:4])
	c = crc32.Update(c, castagnoli, hdr[8:9])
	return crc32.Update(c, castagnoli, payload)
}

// appendRecord appends one record to buf and returns the new chain value.
// A recCRC record is checksummed from the value it carries; every other
// record from prev.
func appendRecord(buf []byte, prev uint32, typ byte, payload []byte) ([]byte, uint32) {
	start := len(buf)
	buf = append(buf, make([]byte, headerSize)...)
	buf = append(buf, payload...)
	hdr := buf[start : start+headerSize]
	binary.LittleEndian.PutUint32(hdr[0:4], uint32(len(payload)))
	hdr[8] = typ
	seed := prev
	if typ == recCRC {
		seed = binary.LittleEndian.Uint32(payload)
	}
	c := recordCRC(seed, hdr, payload)
	binary.LittleEndian.PutUint32(hdr[4:8], c)
	return buf, c
}

// decodeErr is why decodeRecord failed; torn says the failure can be the
// end of the written data (an incomplete or zero record) rather than
// damage, pending the checks in tornTail.
type decodeErr struct {
	err  error
	torn bool
}

var (
	errZeroHeader = &decodeErr{fmt.Errorf("%w: zero record header", ErrCorrupt), true}
	errShort      = &decodeErr{fmt.Errorf("%w: record runs past the end of the file", ErrCorrupt), true}
)

// record is one decoded record; payload aliases the input.
type record struct {
	typ     byte
	crc     uint32
	payload []byte
	size    int // header + payload
}

// decodeRecord decodes the record at the start of b, whose checksum chains
// from prev. It never allocates and never reads outside b.
func decodeRecord(b []byte, prev uint32) (record, *decodeErr) {
	if len(b) < headerSize {
		if allZero(b) {
			return record{}, errZeroHeader
		}
		return record{}, errShort
	}
	hdr := b[:headerSize]
	if allZero(hdr) {
		return record{}, errZeroHeader
	}
	n := binary.LittleEndian.Uint32(hdr[0:4])
	if n > MaxRecordSize {
		return record{}, &decodeErr{fmt.Errorf("%w: record length %d exceeds limit", ErrCorrupt, n), false}
	}
	if uint64(len(b)-headerSize) < uint64(n) {
		return record{}, errShort
	}
	payload := b[headerSize : headerSize+int(n)]
	typ := hdr[8]
	seed := prev
	if typ == recCRC && n == 4 {
		seed = binary.LittleEndian.Uint32(payload)
	}
	want := binary.LittleEndian.Uint32(hdr[4:8])
	if got := recordCRC(seed, hdr, payload); got != want {
		return record{}, &decodeErr{fmt.Errorf("%w: stored %08x, computed %08x", ErrCRCMismatch, want, got), false}
	}
	if typ == 0 || typ > maxRecType {
		return record{}, &decodeErr{fmt.Errorf("%w: unknown record type %d", ErrCorrupt, typ), false}
	}
	if typ == recCRC && n != 4 {
		return record{}, &decodeErr{fmt.Errorf("%w: crc record of length %d", ErrCorrupt, n), false}
	}
	return record{typ: typ, crc: want, payload: payload, size: headerSize + int(n)}, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Presence flags of the compact entry and hard-state encodings, so that a
// decoded message equals (proto.Equal) the one saved.
const (
	flagTerm   = 1 << 0
	flagIndex  = 1 << 1
	flagType   = 1 << 2 // entry: Type; hard state: Vote
	flagData   = 1 << 3 // entry: Data; hard state: Commit
	flagsValid = 1<<4 - 1
)

// encodeEntry appends the compact encoding of e: uvarint flags, then the
// present fields among term, index, type (uvarints), then the data bytes to
// the end of the payload.
func encodeEntry(buf []byte, e *raftpb.Entry) []byte {
	var flags uint64
	if e.Term != nil {
		flags |= flagTerm
	}
	if e.Index != nil {
		flags |= flagIndex
	}
	if e.Type != nil {
		flags |= flagType
	}
	if e.Data != nil {
		flags |= flagData
	}
	buf = binary.AppendUvarint(buf, flags)
	if e.Term != nil {
		buf = binary.AppendUvarint(buf, *e.Term)
	}
	if e.Index != nil {
		buf = binary.AppendUvarint(buf, *e.Index)
	}
	if e.Type != nil {
		buf = binary.AppendUvarint(buf, uint64(uint32(*e.Type)))
	}
	return append(buf, e.Data...)
}

// varintReader reads uvarints from a payload, remembering the first error.
type varintReader struct {
	b   []byte
	err error
}

func (r *varintReader) next() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: bad varint", ErrCorrupt)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// decodeEntry decodes a recEntry payload. Data is copied, so the result
// does not alias p.
func decodeEntry(p []byte) (*raftpb.Entry, error) {
	r := varintReader{b: p}
	flags := r.next()
	if r.err == nil && flags&^flagsValid != 0 {
		return nil, fmt.Errorf("%w: entry flags %#x", ErrCorrupt, flags)
	}
	e := &raftpb.Entry{}
	if flags&flagTerm != 0 {
		e.Term = proto.Uint64(r.next())
	}
	if flags&flagIndex != 0 {
		e.Index = proto.Uint64(r.next())
	}
	if flags&flagType != 0 {
		t := r.next()
		if t > math.MaxUint32 {
			return nil, fmt.Errorf("%w: entry type %d", ErrCorrupt, t)
		}
		e.Type = raftpb.EntryType(int32(uint32(t))).Enum()
	}
	if r.err != nil {
		return nil, r.err
	}
	if flags&flagData != 0 {
		e.Data = append([]byte{}, r.b...)
	} else if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes after entry", ErrCorrupt)
	}
	return e, nil
}

// encodeHardState appends uvarint flags, then the present fields among
// term, vote, commit.
func encodeHardState(buf []byte, hs *raftpb.HardState) []byte {
	var flags uint64
	fields := [3]*uint64{hs.Term, hs.Vote, hs.Commit}
	for i, f := range fields {
		if f != nil {
			flags |= 1 << i
		}
	}
	buf = binary.AppendUvarint(buf, flags)
	for _, f := range fields {
		if f != nil {
			buf = binary.AppendUvarint(buf, *f)
		}
	}
	return buf
}

func decodeHardState(p []byte) (*raftpb.HardState, error) {
	r := varintReader{b: p}
	flags := r.next()
	if r.err == nil && flags&^0b111 != 0 {
		return nil, fmt.Errorf("%w: hard state flags %#x", ErrCorrupt, flags)
	}
	var fields [3]*uint64
	for i := range fields {
		if flags&(1<<i) != 0 {
			fields[i] = proto.Uint64(r.next())
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: trailing bytes after hard state", ErrCorrupt)
	}
	if r.err != nil {
		return nil, r.err
	}
	return &raftpb.HardState{Term: fields[0], Vote: fields[1], Commit: fields[2]}, nil
}

// encodeSnapshot appends uvarint index, uvarint term, then, if present,
// the ConfState in protobuf encoding to the end of the payload.
func encodeSnapshot(buf []byte, s Snapshot) ([]byte, error) {
	buf = binary.AppendUvarint(buf, s.Index)
	buf = binary.AppendUvarint(buf, s.Term)
	if s.ConfState == nil {
		return append(buf, 0), nil
	}
	cs, err := proto.Marshal(s.ConfState)
	if err != nil {
		return nil, fmt.Errorf("wal: encode conf state: %w", err)
	}
	buf = append(buf, 1)
	return append(buf, cs...), nil
}

func decodeSnapshot(p []byte) (Snapshot, error) {
	r := varintReader{b: p}
	s := Snapshot{Index: r.next(), Term: r.next()}
	if r.err != nil {
		return Snapshot{}, r.err
	}
	if len(r.b) == 0 || r.b[0] > 1 || (r.b[0] == 0 && len(r.b) != 1) {
		return Snapshot{}, fmt.Errorf("%w: snapshot marker tail", ErrCorrupt)
	}
	if r.b[0] == 1 {
		s.ConfState = &raftpb.ConfState{}
		if err := proto.Unmarshal(r.b[1:], s.ConfState); err != nil {
			return Snapshot{}, fmt.Errorf("%w: snapshot conf state: %v", ErrCorrupt, err)
		}
	}
	return s, nil
}

func encodeMetadata(md Metadata) []byte {
	b := binary.LittleEndian.AppendUint64(nil, md.ClusterID)
	return binary.LittleEndian.AppendUint64(b, md.MemberID)
}

func decodeMetadata(p []byte) (Metadata, error) {
	if len(p) != 16 {
		return Metadata{}, fmt.Errorf("%w: metadata of length %d", ErrCorrupt, len(p))
	}
	return Metadata{
		ClusterID: binary.LittleEndian.Uint64(p[0:8]),
		MemberID:  binary.LittleEndian.Uint64(p[8:16]),
	}, nil
}
