package wal

import (
	"errors"
	"fmt"
)

var (
	// ErrExist is returned by Create when the directory already exists.
	ErrExist = errors.New("wal: directory already exists")
	// ErrNotFound is returned by Open when the directory holds no segment.
	ErrNotFound = errors.New("wal: no segment files found")
	// ErrSnapshotNotFound is returned by ReadAll when no snapshot marker
	// matches the one Open was given.
	ErrSnapshotNotFound = errors.New("wal: snapshot marker not found")
	// ErrCRCMismatch is wrapped by a *CorruptionError whose record failed
	// its checksum.
	ErrCRCMismatch = errors.New("wal: crc mismatch")
	// ErrCorrupt is wrapped by a *CorruptionError for structural damage:
	// an impossible length or type, an undecodable payload, a missing
	// segment head, a gap in segment sequence numbers.
	ErrCorrupt = errors.New("wal: corrupt")
	// ErrMetadataMismatch is returned when segments disagree on the
	// cluster or member ID.
	ErrMetadataMismatch = errors.New("wal: metadata mismatch between segments")
	// ErrIndexGap is returned by ReadAll when an entry leaves a gap after
	// the previous one (or after the snapshot marker).
	ErrIndexGap = errors.New("wal: gap in entry indexes")
	// ErrBroken is wrapped by every error after a write, fsync or segment
	// switch failed: the WAL must be closed and the process restarted.
	ErrBroken = errors.New("wal: broken by an earlier write failure")
	// ErrClosed is returned by calls on a closed WAL.
	ErrClosed = errors.New("wal: closed")
	// ErrNotReady is returned by Save before ReadAll on an opened WAL.
	ErrNotReady = errors.New("wal: ReadAll must be called before appending")
	// ErrRecordTooLarge is returned by Save for an entry whose record would
	// exceed MaxRecordSize.
	ErrRecordTooLarge = errors.New("wal: record too large")
)

// CorruptionError reports damage found while reading: the file, the offset
// of the record that failed, and the cause (wrapping ErrCRCMismatch or
// ErrCorrupt).
type CorruptionError struct {
	File   string
	Offset int64
	Err    error
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("wal: damaged record in %s at offset %d: %v", e.File, e.Offset, e.Err)
}

func (e *CorruptionError) Unwrap() error { return e.Err }
