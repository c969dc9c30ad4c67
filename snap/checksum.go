package snap

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
)

// Client snapshots
//
// The snapshot a client downloads through the Maintenance service (etcdctl
// snapshot save) is a state archive as written by [WriteArchive] followed
// by a trailer of [ChecksumSize] bytes: the SHA-256 of every byte before
// it. etcd appends the same trailer to its bbolt snapshots, so tools that
// check it (the restore tool) can tell a complete download from a truncated
// or damaged one. [VerifyChecksum] and [VerifyFile] check it.

// ChecksumSize is the length of a client snapshot's trailer.
const ChecksumSize = sha256.Size

// ErrChecksum marks a client snapshot whose trailer does not match its
// content, or that is too short to have one.
var ErrChecksum = errors.New("snap: snapshot integrity check failed")

// VerifyChecksum reads a client snapshot from r to its end and checks its
// trailer. It returns the size of the archive (without the trailer).
func VerifyChecksum(r io.Reader) (int64, error) {
	h := sha256.New()
	buf := make([]byte, 64<<10)
	var held []byte // the last bytes read, at most ChecksumSize after each step
	var n int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			held = append(held, buf[:k]...)
			if cut := len(held) - ChecksumSize; cut > 0 {
				h.Write(held[:cut])
				n += int64(cut)
				held = append(held[:0], held[cut:]...)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("snap: read snapshot: %w", err)
		}
	}
	if len(held) < ChecksumSize {
		return 0, fmt.Errorf("%w: %d bytes is too short for a checksum", ErrChecksum, n+int64(len(held)))
	}
	if !bytes.Equal(h.Sum(nil), held) {
		return 0, fmt.Errorf("%w: sha256 of the first %d bytes does not match the trailer", ErrChecksum, n)
	}
	return n, nil
}

// VerifyFile checks the trailer of the client snapshot in file path.
func VerifyFile(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("snap: %w", err)
	}
	defer f.Close()
	n, err := VerifyChecksum(f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}
