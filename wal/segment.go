package wal

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cairn-kv/cairn/vfs"
)

const (
	segExt  = ".wal"
	tmpName = "next.tmp" // the segment being prepared ahead of a rollover
	// sectorSize is the unit a torn write loses: a whole block of zeros
	// inside a damaged record marks a write that did not reach the disk.
	sectorSize = 512
	// maxSegmentRead caps how much of one segment file is read, so a
	// damaged or foreign file cannot drive a huge allocation.
	maxSegmentRead = 1 << 30
	// intactScanBudget caps the bytes checksummed while looking for intact
	// records after damage; past it the damage is reported, not repaired.
	intactScanBudget = 256 << 20
)

// segment names one segment file: <seq>-<first>.wal in 16 hex digits each,
// first being the index of the first entry that may be written into it.
type segment struct {
	seq, first uint64
}

func (s segment) name() string { return fmt.Sprintf("%016x-%016x%s", s.seq, s.first, segExt) }

func parseSegmentName(name string) (segment, bool) {
	if len(name) != 33+len(segExt) || !strings.HasSuffix(name, segExt) {
		return segment{}, false
	}
	var s segment
	if _, err := fmt.Sscanf(name, "%016x-%016x.wal", &s.seq, &s.first); err != nil {
		return segment{}, false
	}
	return s, s.name() == name
}

// listSegments returns the segments in dir by sequence number, checking
// that the sequence has no hole.
func listSegments(fs vfs.FS, dir string) ([]segment, error) {
	ents, err := fs.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	var segs []segment
	for _, e := range ents {
		if s, ok := parseSegmentName(e.Name()); ok && e.Type().IsRegular() {
			segs = append(segs, s)
		}
	}
	slices.SortFunc(segs, func(a, b segment) int { return cmp.Compare(a.seq, b.seq) })
	for i := 1; i < len(segs); i++ {
		if segs[i].seq != segs[i-1].seq+1 {
			return nil, &CorruptionError{File: filepath.Join(dir, segs[i].name()),
				Err: fmt.Errorf("%w: segment %d follows segment %d", ErrCorrupt, segs[i].seq, segs[i-1].seq)}
		}
	}
	return segs, nil
}

// openSegment opens a segment for reading and returns its size, refusing
// one larger than maxSegmentRead.
func openSegment(fs vfs.FS, path string) (vfs.File, int64, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("wal: open %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("wal: stat %s: %w", path, err)
	}
	if st.Size() > maxSegmentRead {
		f.Close()
		return nil, 0, &CorruptionError{File: path, Err: fmt.Errorf("%w: segment of %d bytes", ErrCorrupt, st.Size())}
	}
	return f, st.Size(), nil
}

// readPrefix reads the first n bytes of f.
func readPrefix(f vfs.File, path string, n int64) ([]byte, error) {
	buf := make([]byte, n)
	if _, err := f.ReadAt(buf, 0); err != nil && len(buf) > 0 {
		return nil, fmt.Errorf("wal: read %s: %w", path, err)
	}
	return buf, nil
}

// readSegmentFile reads a whole segment into memory.
func readSegmentFile(fs vfs.FS, path string) ([]byte, error) {
	f, size, err := openSegment(fs, path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readPrefix(f, path, size)
}

// trimChunk is the unit in which readSegmentTrimmed looks for the end of a
// segment's data, from the back.
const trimChunk = 1 << 20

// readSegmentTrimmed reads a segment up to its last non-zero byte. The
// newest segment is preallocated and mostly zeros; reading all of it would
// cost a restart tens of milliseconds and tens of megabytes of memory for
// nothing. trimmed reports whether zeros were left out: the caller must
// then fall back to readSegmentFile unless the trimmed contents decode
// cleanly to their very end (see scanSegmentFile).
func readSegmentTrimmed(fs vfs.FS, path string) (buf []byte, trimmed bool, err error) {
	f, size, err := openSegment(fs, path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	chunk := make([]byte, min(size, trimChunk))
	zeros := make([]byte, len(chunk))
	end := int64(0)
	for pos := size; pos > 0 && end == 0; {
		n := min(int64(len(chunk)), pos)
		pos -= n
		if _, err := f.ReadAt(chunk[:n], pos); err != nil {
			return nil, false, fmt.Errorf("wal: read %s: %w", path, err)
		}
		if bytes.Equal(chunk[:n], zeros[:n]) {
			continue
		}
		for i := n - 1; i >= 0; i-- {
			if chunk[i] != 0 {
				end = pos + i + 1
				break
			}
		}
	}
	buf, err = readPrefix(f, path, end)
	return buf, end < size, err
}

// scanSegmentFile reads and scans the segment at path (see scanSegment).
// It first reads only up to the last non-zero byte; if that part does not
// decode cleanly to its end (a record that ends in zero bytes, a torn
// tail, damage), it reads the whole file and scans that instead, so the
// outcome, torn-tail judgement included, is that of scanning everything.
// visit runs only in the scan whose outcome counts. It returns the
// contents scanned.
func scanSegmentFile(fs vfs.FS, path string, prev uint32, continued, last bool, visit func(rec record, off int) error) ([]byte, scanResult, error) {
	buf, trimmed, err := readSegmentTrimmed(fs, path)
	if err != nil {
		return nil, scanResult{}, err
	}
	if trimmed {
		res, err := scanSegment(path, buf, prev, continued, last, func(record, int) error { return nil })
		if err != nil || res.torn || res.end != len(buf) {
			if buf, err = readSegmentFile(fs, path); err != nil {
				return nil, scanResult{}, err
			}
		}
	}
	res, err := scanSegment(path, buf, prev, continued, last, visit)
	return buf, res, err
}

// scanResult is where the decoding of one segment stopped.
type scanResult struct {
	end  int    // offset after the last whole record
	crc  uint32 // chain value after that record
	torn bool   // bytes after end were dropped as a torn tail
}

// scanSegment decodes the records of one segment held in buf and calls
// visit for each, except the crc record that opens the segment. If
// continued, that crc record must carry prev, the chain value the previous
// segment ended with. If last, damage at the tail that looks like an
// unfinished write is reported as torn instead of as corruption (see
// tornTail). Every error names the file and offset.
func scanSegment(file string, buf []byte, prev uint32, continued, last bool, visit func(rec record, off int) error) (scanResult, error) {
	off, crc := 0, prev
	for off < len(buf) {
		rec, derr := decodeRecord(buf[off:], crc)
		if derr != nil {
			if last && off > 0 && tornTail(buf, off, derr) {
				return scanResult{end: off, crc: crc, torn: true}, nil
			}
			return scanResult{}, &CorruptionError{File: file, Offset: int64(off), Err: derr.err}
		}
		var err error
		switch {
		case off == 0 && rec.typ != recCRC:
			err = fmt.Errorf("%w: segment does not start with a crc record", ErrCorrupt)
		case off == 0 && continued && binary.LittleEndian.Uint32(rec.payload) != prev:
			err = fmt.Errorf("%w: segment does not continue the previous segment's chain", ErrCRCMismatch)
		case off != 0 && rec.typ == recCRC:
			err = fmt.Errorf("%w: crc record inside a segment", ErrCorrupt)
		case off != 0:
			err = visit(rec, off)
		}
		if err != nil {
			return scanResult{}, &CorruptionError{File: file, Offset: int64(off), Err: err}
		}
		crc = rec.crc
		off += rec.size
	}
	if off == 0 {
		return scanResult{}, &CorruptionError{File: file, Err: fmt.Errorf("%w: empty segment", ErrCorrupt)}
	}
	return scanResult{end: off, crc: crc}, nil
}

// tornTail decides whether the record that failed to decode at off in the
// newest segment is the unfinished end of the log. It is if its header is
// zero, if its byte range covers a whole zero sector before the file's
// trailing zeros (a block the crash kept from the disk), or if no intact
// record follows it. Otherwise the failure is damage to acknowledged data.
func tornTail(buf []byte, off int, derr *decodeErr) bool {
	if derr == errZeroHeader {
		return true
	}
	end := len(buf)
	if len(buf)-off >= headerSize {
		n := int64(binary.LittleEndian.Uint32(buf[off:]))
		end = int(min(int64(off)+headerSize+n, int64(len(buf))))
	}
	return zeroSectorIn(buf, off, end) || !intactAfter(buf, off)
}

// zeroSectorIn reports whether an aligned sector overlapping [off, end)
// that lies wholly before the trailing zeros of buf is all zero.
func zeroSectorIn(buf []byte, off, end int) bool {
	nz := len(buf)
	for nz > 0 && buf[nz-1] == 0 {
		nz--
	}
	for s := off / sectorSize * sectorSize; s < end && s+sectorSize <= nz; s += sectorSize {
		if allZero(buf[s : s+sectorSize]) {
			return true
		}
	}
	return false
}

// intactAfter reports whether, at or after off, there are two consecutive
// plausible records the second of which verifies against the first's
// stored checksum: evidence of whole, acknowledged data after the damage.
func intactAfter(buf []byte, off int) bool {
	budget := intactScanBudget
	plausible := func(p int) (int, bool) {
		if p+headerSize > len(buf) {
			return 0, false
		}
		t := buf[p+8]
		n := binary.LittleEndian.Uint32(buf[p:])
		if t <= recCRC || t > maxRecType || n > MaxRecordSize || int64(len(buf)-p-headerSize) < int64(n) {
			return 0, false
		}
		return headerSize + int(n), true
	}
	for p := off; p+2*headerSize <= len(buf); p++ {
		size1, ok := plausible(p)
		if !ok {
			continue
		}
		q := p + size1
		size2, ok := plausible(q)
		if !ok {
			continue
		}
		if budget -= size2; budget < 0 {
			return true // too much to check: refuse to discard it
		}
		seed := binary.LittleEndian.Uint32(buf[p+4:])
		if recordCRC(seed, buf[q:q+headerSize], buf[q+headerSize:q+size2]) == binary.LittleEndian.Uint32(buf[q+4:]) {
			return true
		}
	}
	return false
}
