package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf []byte
	var err error
	big := msg(1, 2, 7)
	big.Entries[0].Data = bytes.Repeat([]byte{0xab}, 300<<10) // several read chunks
	in := []*raftpb.Message{msg(1, 2, 0), big, {}, msg(3, 4, 5)}
	for _, m := range in {
		if buf, err = appendFrame(buf, m, DefaultMaxFrameSize); err != nil {
			t.Fatal(err)
		}
	}
	d := newFrameDecoder(bytes.NewReader(buf), DefaultMaxFrameSize)
	for i, want := range in {
		got, err := d.decode()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("frame %d differs", i)
		}
	}
	if _, err := d.decode(); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
}

func TestFrameTooLargeRefusedBeforeReading(t *testing.T) {
	var hdr [frameHeaderSize]byte
	binary.BigEndian.PutUint32(hdr[:], 1<<31)
	// Only the header is there: a decoder that tried to read the payload
	// would report truncation instead.
	_, err := newFrameDecoder(bytes.NewReader(hdr[:]), 64<<20).decode()
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
	if _, err := appendFrame(nil, msg(1, 2, 3), 10); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("encoder: got %v, want ErrFrameTooLarge", err)
	}
}

func TestFrameCorruption(t *testing.T) {
	good, err := appendFrame(nil, msg(1, 2, 3), DefaultMaxFrameSize)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)-3] ^= 0x10
	cases := map[string][]byte{
		"flipped payload":  flipped,
		"truncated header": good[:5],
		"truncated body":   good[:len(good)-1],
	}
	for name, b := range cases {
		if _, err := newFrameDecoder(bytes.NewReader(b), DefaultMaxFrameSize).decode(); !errors.Is(err, ErrFrameCorrupt) {
			t.Errorf("%s: got %v, want ErrFrameCorrupt", name, err)
		}
	}
}

func FuzzFrameDecoder(f *testing.F) {
	good, _ := appendFrame(nil, msg(1, 2, 3), DefaultMaxFrameSize)
	two, _ := appendFrame(bytes.Clone(good), msg(2, 1, 4), DefaultMaxFrameSize)
	f.Add(good)
	f.Add(two)
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := newFrameDecoder(bytes.NewReader(b), 1<<20)
		for {
			m, err := d.decode()
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrFrameCorrupt) && !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			// A decoded message re-encodes to a frame that decodes equal.
			out, err := appendFrame(nil, m, 1<<21)
			if err != nil {
				t.Fatal(err)
			}
			back, err := newFrameDecoder(bytes.NewReader(out), 1<<21).decode()
			if err != nil || !proto.Equal(back, m) {
				t.Fatalf("re-encode round trip: %v", err)
			}
		}
	})
}
