package backend

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
)

// ErrDataCorruption is wrapped by every *CorruptionError.
var ErrDataCorruption = errors.New("backend: on-disk corruption")

// CorruptionError reports damage Pebble found in one of the store's files
// (a block whose checksum fails, an unreadable MANIFEST record): the file,
// and Pebble's details, which include the offset where Pebble knows it.
type CorruptionError struct {
	File   string
	Detail error
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("%v in %s: %v", ErrDataCorruption, e.File, e.Detail)
}

// Unwrap makes errors.Is find ErrDataCorruption and Pebble's details.
func (e *CorruptionError) Unwrap() []error { return []error{ErrDataCorruption, e.Detail} }

// IsCorruption reports whether err is damage found on disk, by the backend
// or by Pebble.
func IsCorruption(err error) bool {
	return errors.Is(err, ErrDataCorruption) || pebble.IsCorruptionError(err)
}

// corruptionListener routes Pebble's corruption events (raised in the read
// path that met the damage) to the logger and to notify.
func corruptionListener(log *slog.Logger, notify func(error)) *pebble.EventListener {
	return &pebble.EventListener{
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			err := &CorruptionError{File: info.Path, Detail: info.Details}
			log.Error("on-disk corruption found in the store", "file", info.Path, "err", err)
			if notify != nil {
				notify(err)
			}
		},
	}
}
