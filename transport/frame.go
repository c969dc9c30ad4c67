package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// frameHeaderSize is the size of a frame header: payload length and CRC-32C
// of the payload, both big-endian uint32.
const frameHeaderSize = 8

// DefaultMaxFrameSize bounds one marshalled raft message on the wire.
const DefaultMaxFrameSize = 64 << 20

// readChunk is how much of a large frame is read (and allocated) at a time,
// so that a header announcing a huge frame costs memory only as its bytes
// actually arrive.
const readChunk = 64 << 10

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendFrame appends the frame of m to dst. It fails with ErrFrameTooLarge
// if the marshalled message exceeds max.
func appendFrame(dst []byte, m *raftpb.Message, max int) ([]byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, frameHeaderSize)...)
	out, err := proto.MarshalOptions{}.MarshalAppend(dst, m)
	if err != nil {
		return dst[:start], fmt.Errorf("transport: marshal message: %w", err)
	}
	n := len(out) - start - frameHeaderSize
	if n > max {
		return out[:start], fmt.Errorf("%w: %d bytes (max %d)", ErrFrameTooLarge, n, max)
	}
	payload := out[start+frameHeaderSize:]
	binary.BigEndian.PutUint32(out[start:], uint32(n))
	binary.BigEndian.PutUint32(out[start+4:], crc32.Checksum(payload, castagnoli))
	return out, nil
}

// frameDecoder reads frames from a stream. Not safe for concurrent use.
type frameDecoder struct {
	r    io.Reader
	max  int
	buf  []byte // reused payload buffer
	size int    // payload size of the last frame decoded (0: a keep-alive on a stream)
}

func newFrameDecoder(r io.Reader, max int) *frameDecoder {
	return &frameDecoder{r: r, max: max}
}

// decode reads the next frame. It returns io.EOF at a clean end of stream
// (between frames), an error wrapping ErrFrameTooLarge for a frame larger
// than the cap (before reading or allocating its payload), and an error
// wrapping ErrFrameCorrupt for a truncated frame, a checksum mismatch or a
// payload that does not unmarshal.
func (d *frameDecoder) decode() (*raftpb.Message, error) {
	var hdr [frameHeaderSize]byte
	if _, err := io.ReadFull(d.r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: truncated header", ErrFrameCorrupt)
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	if uint64(n) > uint64(d.max) {
		return nil, fmt.Errorf("%w: %d bytes (max %d)", ErrFrameTooLarge, n, d.max)
	}
	payload, err := d.readPayload(int(n))
	if err != nil {
		return nil, err
	}
	d.size = int(n)
	if crc32.Checksum(payload, castagnoli) != binary.BigEndian.Uint32(hdr[4:]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrFrameCorrupt)
	}
	m := &raftpb.Message{}
	if err := proto.Unmarshal(payload, m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFrameCorrupt, err)
	}
	if cap(d.buf) > 4*readChunk {
		d.buf = nil // do not keep a rare huge buffer
	}
	return m, nil
}

// readPayload reads n bytes, growing the buffer as data arrives.
func (d *frameDecoder) readPayload(n int) ([]byte, error) {
	buf := d.buf[:0]
	for len(buf) < n {
		step := min(n-len(buf), max(len(buf), readChunk))
		if cap(buf)-len(buf) < step {
			nb := make([]byte, len(buf), len(buf)+step)
			copy(nb, buf)
			buf = nb
		}
		if _, err := io.ReadFull(d.r, buf[len(buf):len(buf)+step]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("%w: truncated payload", ErrFrameCorrupt)
			}
			return nil, err
		}
		buf = buf[:len(buf)+step]
	}
	d.buf = buf
	return buf, nil
}
