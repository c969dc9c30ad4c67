package vfs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestFileRoundTripPreallocateSync(t *testing.T) {
	fs := Default()
	dir := t.TempDir()
	name := filepath.Join(dir, "f")
	f, err := fs.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Preallocate(8192); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("hello"), 100); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 8192 {
		t.Fatalf("size after preallocate = %d, want 8192", st.Size())
	}
	buf := make([]byte, 110)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if buf[i] != 0 {
			t.Fatalf("byte %d = %d, want 0", i, buf[i])
		}
	}
	if string(buf[100:105]) != "hello" {
		t.Fatalf("read back %q", buf[100:105])
	}
	if f.Name() != name {
		t.Fatalf("Name() = %q", f.Name())
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fs.Rename(name, name+"2"); err != nil {
		t.Fatal(err)
	}
	if err := fs.SyncDir(dir); err != nil {
		t.Fatal(err)
	}
	ents, err := fs.ReadDir(dir)
	if err != nil || len(ents) != 1 || ents[0].Name() != "f2" {
		t.Fatalf("ReadDir = %v, %v", ents, err)
	}
	if _, err := fs.Stat(name); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Stat of renamed file: %v", err)
	}
}

func TestLockIsExclusiveAndReleased(t *testing.T) {
	fs := Default()
	name := filepath.Join(t.TempDir(), "LOCK")
	l1, err := fs.Lock(name)
	if err != nil {
		t.Fatal(err)
	}
	// A second open file description conflicts even within one process.
	if l2, err := fs.Lock(name); !errors.Is(err, ErrLocked) {
		if l2 != nil {
			l2.Close()
		}
		t.Fatalf("second Lock: err = %v, want ErrLocked", err)
	}
	if err := l1.Close(); err != nil {
		t.Fatal(err)
	}
	l3, err := fs.Lock(name)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	var _ io.Closer = l3
	l3.Close()
}
