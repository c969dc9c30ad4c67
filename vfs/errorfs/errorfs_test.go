package errorfs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/vfs"
)

func TestAfterAndCount(t *testing.T) {
	efs := Wrap(vfs.Default())
	f, err := efs.Create(filepath.Join(t.TempDir(), "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inj := efs.Inject(Rule{Ops: OpSync, After: 2, Count: 1})
	var errs []error
	for range 4 {
		errs = append(errs, f.Sync())
	}
	if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], ErrInjected) || errs[3] != nil {
		t.Fatalf("sync results = %v, want nil nil injected nil", errs)
	}
	if inj.Fired() != 1 {
		t.Fatalf("Fired = %d", inj.Fired())
	}
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatalf("write should not be affected: %v", err)
	}
}

func TestPathPredicateAndCustomError(t *testing.T) {
	efs := Wrap(vfs.Default())
	dir := t.TempDir()
	boom := errors.New("boom")
	efs.Inject(Rule{Ops: OpCreate | OpRename, Path: func(p string) bool { return strings.HasSuffix(p, ".wal") }, Err: boom})
	if _, err := efs.Create(filepath.Join(dir, "x.wal")); !errors.Is(err, boom) {
		t.Fatalf("create x.wal: %v", err)
	}
	f, err := efs.Create(filepath.Join(dir, "x.tmp"))
	if err != nil {
		t.Fatalf("create x.tmp: %v", err)
	}
	f.Close()
	if err := efs.Rename(filepath.Join(dir, "x.tmp"), filepath.Join(dir, "y")); err != nil {
		t.Fatalf("rename of a non-matching path: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x.wal")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed create must not create the file: %v", err)
	}
}

func TestShortWrite(t *testing.T) {
	efs := Wrap(vfs.Default())
	name := filepath.Join(t.TempDir(), "s")
	f, err := efs.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	inj := efs.Inject(Rule{Ops: OpWrite, ShortWrite: true, Count: 1})
	n, err := f.WriteAt([]byte("0123456789"), 0)
	if n != 5 || !errors.Is(err, ErrInjected) || !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	got, _ := os.ReadFile(name)
	if string(got) != "01234" {
		t.Fatalf("file holds %q, want the first half", got)
	}
	inj.Disable()
	if _, err := f.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
}

func TestResetAndSyncDir(t *testing.T) {
	efs := Wrap(vfs.Default())
	dir := t.TempDir()
	efs.Inject(Rule{Ops: OpSyncDir})
	if err := efs.SyncDir(dir); !errors.Is(err, ErrInjected) || !strings.Contains(err.Error(), "syncdir") {
		t.Fatalf("SyncDir: %v", err)
	}
	efs.Reset()
	if err := efs.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	if OpAll.String() == "" || (OpWrite|OpSync).String() != "write|sync" {
		t.Fatalf("Op.String: %q", (OpWrite | OpSync).String())
	}
}
