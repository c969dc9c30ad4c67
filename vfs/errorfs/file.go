package errorfs

import (
	"fmt"
	"io"
	"os"

	"github.com/cairn-kv/cairn/vfs"
)

// file forwards to an inner vfs.File, consulting the FS's rules first.
type file struct {
	vfs.File
	fs   *FS
	name string
}

func (f *file) Name() string { return f.name }

func (f *file) Read(p []byte) (int, error) {
	if err := f.fs.fail(OpRead, f.name); err != nil {
		return 0, err
	}
	return f.File.Read(p)
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if err := f.fs.fail(OpRead, f.name); err != nil {
		return 0, err
	}
	return f.File.ReadAt(p, off)
}

func (f *file) Seek(offset int64, whence int) (int64, error) {
	if err := f.fs.fail(OpRead, f.name); err != nil {
		return 0, err
	}
	return f.File.Seek(offset, whence)
}

func (f *file) Write(p []byte) (int, error) {
	return f.write(p, func(b []byte) (int, error) { return f.File.Write(b) })
}

func (f *file) WriteAt(p []byte, off int64) (int, error) {
	return f.write(p, func(b []byte) (int, error) { return f.File.WriteAt(b, off) })
}

// write fails the write if a rule says so; a ShortWrite rule first writes
// half of p through do.
func (f *file) write(p []byte, do func([]byte) (int, error)) (int, error) {
	inj := f.fs.check(OpWrite, f.name)
	if inj == nil {
		return do(p)
	}
	err := injErr(inj, OpWrite, f.name)
	if !inj.r.ShortWrite {
		return 0, err
	}
	n, werr := do(p[:len(p)/2])
	if werr != nil {
		return n, werr
	}
	return n, fmt.Errorf("%w: %w", io.ErrShortWrite, err)
}

func (f *file) Sync() error {
	if err := f.fs.fail(OpSync, f.name); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *file) Truncate(size int64) error {
	if err := f.fs.fail(OpTruncate, f.name); err != nil {
		return err
	}
	return f.File.Truncate(size)
}

func (f *file) Preallocate(size int64) error {
	if err := f.fs.fail(OpPreallocate, f.name); err != nil {
		return err
	}
	return f.File.Preallocate(size)
}

func (f *file) Stat() (os.FileInfo, error) {
	if err := f.fs.fail(OpStat, f.name); err != nil {
		return nil, err
	}
	return f.File.Stat()
}

// Close always closes the inner file, so a test leaks no descriptor, but
// reports an injected error if a rule says so.
func (f *file) Close() error {
	injected := f.fs.fail(OpClose, f.name)
	err := f.File.Close()
	if injected != nil {
		return injected
	}
	return err
}
