package backend

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// A damaged table block is reported to OnCorruption as a *CorruptionError
// naming the file, and the read that met it fails (it used to make
// Pebble's logger panic inside the read).
func TestDamagedTableIsReportedWithTheFile(t *testing.T) {
	dir := t.TempDir()
	b := mustOpen(t, dir, nil)
	bt := b.NewBatch()
	for i := 0; i < 2000; i++ {
		if err := bt.Set(fmt.Appendf(nil, "k%05d", i), []byte(strings.Repeat("v", 64))); err != nil {
			t.Fatal(err)
		}
	}
	if err := bt.Commit(1); err != nil {
		t.Fatal(err)
	}
	if err := b.Compact(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no table file after compaction")
	}
	for _, f := range ssts {
		damage(t, f)
	}
	var mu sync.Mutex
	var reported []error
	b, err := Open(dir, Options{OnCorruption: func(err error) {
		mu.Lock()
		reported = append(reported, err)
		mu.Unlock()
	}})
	if err == nil {
		defer b.Close()
		it, ierr := b.NewIter([]byte("k"), []byte("l"))
		if ierr != nil {
			t.Fatal(ierr)
		}
		for it.First(); it.Valid(); it.Next() {
		}
		err = it.Close()
	}
	if err == nil || !IsCorruption(err) {
		t.Fatalf("reading a damaged table: %v, want a corruption error", err)
	}
	mu.Lock()
	defer mu.Unlock()
	var ce *CorruptionError
	if len(reported) == 0 || !errors.As(reported[0], &ce) || !strings.HasSuffix(ce.File, ".sst") || !IsCorruption(reported[0]) {
		t.Fatalf("reported %v, want a *CorruptionError naming the .sst", reported)
	}
}

// damage flips a byte a third into the file (a data block).
func damage(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0x5a
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
