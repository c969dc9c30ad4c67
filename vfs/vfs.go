// Package vfs is the small filesystem interface that cairn's durable storage
// (the WAL, snapshot files, the data-dir lock) is written against, so that a
// test can substitute a filesystem whose writes, fsyncs, renames or creates
// fail (see package vfs/errorfs).
//
// # What it owns
//
// Two interfaces, [File] and [FS], and [Default], the implementation on the
// operating system. Everything else (buffering, checksums, layout) belongs to
// the callers.
//
// # Semantics worth knowing
//
//   - [File.Sync] is fdatasync(2): file data and the metadata needed to read
//     it back (its size) reach the disk; timestamps may not.
//   - [File.Preallocate] reserves disk space with fallocate(2) and extends the
//     file size to at least size; the new bytes read as zeros. On a
//     filesystem that does not support fallocate it does nothing and returns
//     nil: preallocation is an optimisation, never needed for correctness.
//   - [FS.SyncDir] fsyncs a directory, which makes the creation, removal or
//     renaming of entries in it durable. A caller that creates or renames a
//     file it relies on after a crash must call it.
//   - [FS.Lock] takes an exclusive flock(2) on a file (creating it if
//     needed). It never waits: if another process or another open file
//     description holds the lock it fails at once with an error wrapping
//     [ErrLocked]. Closing the returned io.Closer releases it.
//
// Changes from the sketch in the issue: none in the method set; Lock returns
// an error wrapping ErrLocked so callers can branch on "held by someone
// else" versus an I/O error.
//
// # Concurrency
//
// The OS implementation is safe for concurrent use to the degree the
// operating system is: concurrent ReadAt/WriteAt on one File are fine,
// concurrent Read/Write/Seek share the file offset.
package vfs

import (
	"errors"
	"io"
	"os"
)

// ErrLocked is wrapped by the error FS.Lock returns when the lock is held.
var ErrLocked = errors.New("vfs: lock held by another process")

// File is an open file. See the package documentation for the meaning of
// Sync and Preallocate.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Seeker
	// Sync flushes the file's data to stable storage (fdatasync).
	Sync() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
	Close() error
	// Name is the name the file was opened with.
	Name() string
	// Preallocate reserves space for size bytes and extends the file to at
	// least that size with zeros; a no-op where the filesystem cannot.
	Preallocate(size int64) error
}

// FS is a filesystem. Names are paths as understood by package os.
type FS interface {
	// Create creates or truncates the named file for reading and writing.
	Create(name string) (File, error)
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Open opens the named file read-only.
	Open(name string) (File, error)
	Remove(name string) error
	RemoveAll(name string) error
	Rename(oldname, newname string) error
	MkdirAll(dir string, perm os.FileMode) error
	ReadDir(dir string) ([]os.DirEntry, error)
	Stat(name string) (os.FileInfo, error)
	// SyncDir makes the entries of dir durable (fsync on the directory).
	SyncDir(dir string) error
	// Lock takes an exclusive, non-blocking lock on the named file.
	Lock(name string) (io.Closer, error)
}
