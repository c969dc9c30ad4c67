// Package errorfs wraps a vfs.FS and makes chosen operations fail, so tests
// can check how storage code behaves when a write, an fsync, a create or a
// rename goes wrong.
//
// # Use
//
//	efs := errorfs.Wrap(vfs.Default())
//	inj := efs.Inject(errorfs.Rule{Ops: errorfs.OpSync, After: 3})
//	... // the fourth and every later Sync returns an error wrapping ErrInjected
//	inj.Fired() // how many calls failed because of this rule
//
// A [Rule] selects calls by operation (a bit set of [Op]) and by path (a
// predicate on the file or directory name; nil matches every path). The
// first After matching calls go through; after that, Count calls fail (0:
// every later call fails). A rule with ShortWrite makes a failing write
// write the first half of its bytes (rounded down) to the underlying file
// before returning an error, as a crash in the middle of a write would.
//
// Rules are checked in the order they were added; every matching rule counts
// the call, and the first rule that decides to fail it wins. Errors returned
// wrap the rule's Err (default [ErrInjected]) and name the operation and
// path.
//
// # Concurrency
//
// An FS and its files are safe for concurrent use; mu guards the rules and
// their counters.
package errorfs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/cairn-kv/cairn/vfs"
)

// ErrInjected is the default error a rule injects.
var ErrInjected = errors.New("errorfs: injected error")

// Op is a set of filesystem operations.
type Op uint32

// Operations a Rule can select. File methods count against the file's name.
const (
	OpCreate      Op = 1 << iota // FS.Create
	OpOpen                       // FS.Open, FS.OpenFile
	OpRead                       // File.Read, File.ReadAt, File.Seek
	OpWrite                      // File.Write, File.WriteAt
	OpSync                       // File.Sync
	OpTruncate                   // File.Truncate
	OpPreallocate                // File.Preallocate
	OpClose                      // File.Close
	OpRemove                     // FS.Remove, FS.RemoveAll
	OpRename                     // FS.Rename (path is the old name)
	OpMkdir                      // FS.MkdirAll
	OpReadDir                    // FS.ReadDir
	OpStat                       // FS.Stat, File.Stat
	OpSyncDir                    // FS.SyncDir
	OpLock                       // FS.Lock

	// OpAll selects every operation.
	OpAll Op = 1<<iota - 1
)

var opNames = [...]string{"create", "open", "read", "write", "sync", "truncate",
	"preallocate", "close", "remove", "rename", "mkdir", "readdir", "stat", "syncdir", "lock"}

func (o Op) String() string {
	var names []string
	for i, n := range opNames {
		if o&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "|")
}

// Rule describes which calls fail. See the package documentation.
type Rule struct {
	Ops        Op                // operations selected
	Path       func(string) bool // nil: every path
	After      int               // matching calls that succeed first
	Count      int               // calls that then fail; 0: all later calls
	Err        error             // nil: ErrInjected
	ShortWrite bool              // a failing write writes half its bytes first
}

// Injection is a rule installed in an FS.
type Injection struct {
	r Rule
	// guarded by FS.mu
	seen, fired int
	disabled    bool
	fs          *FS
}

// Fired reports how many calls this rule has failed.
func (i *Injection) Fired() int {
	i.fs.mu.Lock()
	defer i.fs.mu.Unlock()
	return i.fired
}

// Disable stops the rule from failing or counting further calls.
func (i *Injection) Disable() {
	i.fs.mu.Lock()
	defer i.fs.mu.Unlock()
	i.disabled = true
}

// FS is a vfs.FS that injects errors into an inner FS.
type FS struct {
	inner vfs.FS
	mu    sync.Mutex
	rules []*Injection // guarded by mu
}

var _ vfs.FS = (*FS)(nil)

// Wrap returns an FS that forwards to inner until a rule says otherwise.
func Wrap(inner vfs.FS) *FS { return &FS{inner: inner} }

// Inject adds a rule and returns its handle.
func (fs *FS) Inject(r Rule) *Injection {
	if r.Err == nil {
		r.Err = ErrInjected
	}
	inj := &Injection{r: r, fs: fs}
	fs.mu.Lock()
	fs.rules = append(fs.rules, inj)
	fs.mu.Unlock()
	return inj
}

// Reset removes every rule.
func (fs *FS) Reset() {
	fs.mu.Lock()
	fs.rules = nil
	fs.mu.Unlock()
}

// check counts a call and returns the rule that fails it, or nil.
func (fs *FS) check(op Op, path string) *Injection {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var hit *Injection
	for _, inj := range fs.rules {
		if inj.disabled || inj.r.Ops&op == 0 || (inj.r.Path != nil && !inj.r.Path(path)) {
			continue
		}
		inj.seen++
		if hit != nil || inj.seen <= inj.r.After {
			continue
		}
		if inj.r.Count > 0 && inj.fired >= inj.r.Count {
			continue
		}
		inj.fired++
		hit = inj
	}
	return hit
}

func (fs *FS) fail(op Op, path string) error {
	if inj := fs.check(op, path); inj != nil {
		return injErr(inj, op, path)
	}
	return nil
}

func injErr(inj *Injection, op Op, path string) error {
	return fmt.Errorf("%w (%s %s)", inj.r.Err, op, path)
}

func (fs *FS) Create(name string) (vfs.File, error) {
	if err := fs.fail(OpCreate, name); err != nil {
		return nil, err
	}
	f, err := fs.inner.Create(name)
	if err != nil {
		return nil, err
	}
	return &file{File: f, fs: fs, name: name}, nil
}

func (fs *FS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	if err := fs.fail(OpOpen, name); err != nil {
		return nil, err
	}
	f, err := fs.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &file{File: f, fs: fs, name: name}, nil
}

func (fs *FS) Open(name string) (vfs.File, error) {
	if err := fs.fail(OpOpen, name); err != nil {
		return nil, err
	}
	f, err := fs.inner.Open(name)
	if err != nil {
		return nil, err
	}
	return &file{File: f, fs: fs, name: name}, nil
}

func (fs *FS) Remove(name string) error {
	if err := fs.fail(OpRemove, name); err != nil {
		return err
	}
	return fs.inner.Remove(name)
}

func (fs *FS) RemoveAll(name string) error {
	if err := fs.fail(OpRemove, name); err != nil {
		return err
	}
	return fs.inner.RemoveAll(name)
}

func (fs *FS) Rename(oldname, newname string) error {
	if err := fs.fail(OpRename, oldname); err != nil {
		return err
	}
	return fs.inner.Rename(oldname, newname)
}

func (fs *FS) MkdirAll(dir string, perm os.FileMode) error {
	if err := fs.fail(OpMkdir, dir); err != nil {
		return err
	}
	return fs.inner.MkdirAll(dir, perm)
}

func (fs *FS) ReadDir(dir string) ([]os.DirEntry, error) {
	if err := fs.fail(OpReadDir, dir); err != nil {
		return nil, err
	}
	return fs.inner.ReadDir(dir)
}

func (fs *FS) Stat(name string) (os.FileInfo, error) {
	if err := fs.fail(OpStat, name); err != nil {
		return nil, err
	}
	return fs.inner.Stat(name)
}

func (fs *FS) SyncDir(dir string) error {
	if err := fs.fail(OpSyncDir, dir); err != nil {
		return err
	}
	return fs.inner.SyncDir(dir)
}

func (fs *FS) Lock(name string) (io.Closer, error) {
	if err := fs.fail(OpLock, name); err != nil {
		return nil, err
	}
	return fs.inner.Lock(name)
}
