// Package snap owns the state-transfer files of a member: the consistent copy
// of the store that a leader streams to a follower too far behind to catch up
// from the log, and the staging and atomic installation of such a copy on the
// follower.
//
// # Wire format
//
// A state transfer is a POSIX tar stream (archive/tar) of one directory: a
// Pebble checkpoint. Only regular files with relative, clean paths inside the
// directory are allowed; anything else (absolute paths, "..", links, devices)
// is rejected with [ErrBadArchive]. The transport wraps the stream with its
// own checksum; this package checks shape and size.
//
// # On disk
//
// Under the member's snap directory (member/snap/):
//
//	<index hex>.db.tmp/   being received; removed on restart
//	<index hex>.db/       received completely and fsynced: ready to install
//
// # Installation
//
// [Install] replaces the live store directory with a staged one by renames:
// live → live.old, staged → live, then removes live.old. [Recover], called
// before the store is opened, finishes an installation that a crash
// interrupted, so the store is always either the old state or the new one,
// never a mix.
package snap

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cairn-kv/cairn/internal/failpoint"
)

var (
	// ErrBadArchive marks a state transfer that is not a well-formed archive
	// of a store directory.
	ErrBadArchive = errors.New("snap: malformed state archive")
	// ErrTooLarge marks a state transfer over the configured limit.
	ErrTooLarge = errors.New("snap: state archive too large")
	// ErrNoStaged means no received state is staged at or above an index.
	ErrNoStaged = errors.New("snap: no staged state")
)

const (
	stagedSuffix = ".db"
	tmpSuffix    = ".db.tmp"
	oldSuffix    = ".old"
	// maxFiles bounds the entries of one archive.
	maxFiles = 100000
	// maxTrailing bounds the padding accepted after the end of an archive.
	maxTrailing = 64 << 10
)

// WriteArchive writes every regular file below dir to w as a tar stream.
func WriteArchive(ctx context.Context, w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		return writeFile(tw, p, filepath.ToSlash(rel))
	})
	if err != nil {
		return fmt.Errorf("snap: archive %s: %w", dir, err)
	}
	return tw.Close()
}

func writeFile(tw *tar.Writer, p, name string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: name, Mode: 0o600, Size: st.Size(), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err != nil {
		return err
	}
	if n != st.Size() {
		return fmt.Errorf("%s changed size while archived", p)
	}
	return nil
}

// ReadArchive extracts a tar stream made by [WriteArchive] into dir, which
// must not exist yet, fsyncing every file and directory. At most maxBytes of
// file content are accepted. On error, dir is removed.
func ReadArchive(ctx context.Context, r io.Reader, dir string, maxBytes int64) error {
	return readArchive(ctx, r, dir, maxBytes, true)
}

// readArchive is ReadArchive with fsyncs optional (off only in fuzzing).
func readArchive(ctx context.Context, r io.Reader, dir string, maxBytes int64, durable bool) (err error) {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("snap: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	tr := tar.NewReader(r)
	var total int64
	dirs := map[string]bool{dir: true}
	for files := 0; ; files++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadArchive, err)
		}
		if files >= maxFiles {
			return fmt.Errorf("%w: more than %d files", ErrBadArchive, maxFiles)
		}
		name, err := checkEntry(hdr)
		if err != nil {
			return err
		}
		total += hdr.Size
		if total > maxBytes {
			return fmt.Errorf("%w: over %d bytes", ErrTooLarge, maxBytes)
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
			return fmt.Errorf("snap: %w", err)
		}
		dirs[filepath.Dir(target)] = true
		if err := extractFile(tr, target, hdr.Size, durable); err != nil {
			return err
		}
	}
	if !durable {
		return nil
	}
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// checkEntry validates one archive header and returns its clean name.
func checkEntry(hdr *tar.Header) (string, error) {
	if hdr.Typeflag != tar.TypeReg {
		return "", fmt.Errorf("%w: entry %q is not a regular file", ErrBadArchive, hdr.Name)
	}
	name := hdr.Name
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") ||
		path.Clean(name) != name || name == "." || name == ".." || strings.HasPrefix(name, "../") {
		return "", fmt.Errorf("%w: unsafe entry name %q", ErrBadArchive, hdr.Name)
	}
	if hdr.Size < 0 {
		return "", fmt.Errorf("%w: entry %q has negative size", ErrBadArchive, hdr.Name)
	}
	return name, nil
}

func extractFile(r io.Reader, target string, size int64, durable bool) error {
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadArchive, err)
	}
	n, err := io.Copy(f, io.LimitReader(r, size))
	if err == nil && n != size {
		err = fmt.Errorf("%w: %s truncated", ErrBadArchive, target)
	}
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("snap: extract %s: %w", target, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("snap: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("snap: fsync %s: %w", dir, err)
	}
	return nil
}

// Dir is a member's snap directory.
type Dir struct {
	path string
}

// OpenDir creates the directory if needed and removes partial receptions.
func OpenDir(dir string) (*Dir, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("snap: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("snap: %w", err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), tmpSuffix) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("snap: %w", err)
			}
		}
	}
	return &Dir{path: dir}, nil
}

// Path returns the directory's path.
func (d *Dir) Path() string { return d.path }

func (d *Dir) stagedPath(index uint64) string {
	return filepath.Join(d.path, fmt.Sprintf("%016x%s", index, stagedSuffix))
}

// Receive extracts a state archive for the given raft index into the
// staging area; once it returns nil the state is durable and complete.
func (d *Dir) Receive(ctx context.Context, index uint64, r io.Reader, maxBytes int64) error {
	final := d.stagedPath(index)
	tmp := final + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("snap: %w", err)
	}
	if err := ReadArchive(ctx, r, tmp, maxBytes); err != nil {
		return err
	}
	// The stream must end right after the archive (tar's end-of-archive
	// padding aside): reading to its end is also what lets a wrapping reader
	// verify its checksum before the state counts as received.
	if n, err := io.Copy(io.Discard, io.LimitReader(r, maxTrailing+1)); err != nil || n > maxTrailing {
		os.RemoveAll(tmp)
		if err == nil {
			err = fmt.Errorf("%w: %d bytes after the end of the archive", ErrBadArchive, n)
		}
		return fmt.Errorf("snap: receive state at %d: %w", index, err)
	}
	if err := os.RemoveAll(final); err != nil {
		return fmt.Errorf("snap: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("snap: %w", err)
	}
	return syncDir(d.path)
}

// Staged returns the indexes of completely received states, ascending.
func (d *Dir) Staged() ([]uint64, error) {
	ents, err := os.ReadDir(d.path)
	if err != nil {
		return nil, fmt.Errorf("snap: %w", err)
	}
	var out []uint64
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), stagedSuffix)
		if !ok || !e.IsDir() {
			continue
		}
		idx, err := strconv.ParseUint(name, 16, 64)
		if err != nil {
			continue
		}
		out = append(out, idx)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// StagedAtLeast returns the path and index of the newest staged state whose
// index is at least min.
func (d *Dir) StagedAtLeast(min uint64) (string, uint64, error) {
	idxs, err := d.Staged()
	if err != nil {
		return "", 0, err
	}
	if len(idxs) == 0 || idxs[len(idxs)-1] < min {
		return "", 0, fmt.Errorf("%w at index >= %d", ErrNoStaged, min)
	}
	last := idxs[len(idxs)-1]
	return d.stagedPath(last), last, nil
}

// RemoveStagedThrough deletes staged states with index <= index.
func (d *Dir) RemoveStagedThrough(index uint64) error {
	idxs, err := d.Staged()
	if err != nil {
		return err
	}
	for _, i := range idxs {
		if i <= index {
			if err := os.RemoveAll(d.stagedPath(i)); err != nil {
				return fmt.Errorf("snap: %w", err)
			}
		}
	}
	return nil
}

// Install atomically replaces the directory live with staged (see the
// package doc). The caller must have closed the store at live.
func Install(staged, live string) error {
	old := live + oldSuffix
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("snap: %w", err)
	}
	if _, err := os.Stat(live); err == nil {
		if err := os.Rename(live, old); err != nil {
			return fmt.Errorf("snap: %w", err)
		}
	}
	failpoint.Hit(failpoint.SnapshotInstall)
	if err := os.Rename(staged, live); err != nil {
		return fmt.Errorf("snap: install %s: %w", staged, err)
	}
	if err := syncDir(filepath.Dir(live)); err != nil {
		return err
	}
	if filepath.Dir(staged) != filepath.Dir(live) {
		if err := syncDir(filepath.Dir(staged)); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("snap: %w", err)
	}
	return nil
}

// Recover completes or undoes an [Install] that a crash interrupted. With
// live present, a leftover live.old is removed. With live missing and
// live.old present, the old state is put back: the caller then finds the
// staged state still in place and installs it again if it needs it.
func Recover(live string) error {
	old := live + oldSuffix
	_, liveErr := os.Stat(live)
	_, oldErr := os.Stat(old)
	switch {
	case liveErr == nil && oldErr == nil:
		if err := os.RemoveAll(old); err != nil {
			return fmt.Errorf("snap: %w", err)
		}
	case errors.Is(liveErr, fs.ErrNotExist) && oldErr == nil:
		if err := os.Rename(old, live); err != nil {
			return fmt.Errorf("snap: %w", err)
		}
		return syncDir(filepath.Dir(live))
	}
	return nil
}
