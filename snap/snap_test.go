package snap

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalTrees(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestArchiveRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	files := map[string]string{
		"000001.sst":  string(bytes.Repeat([]byte("x"), 100000)),
		"MANIFEST":    "manifest",
		"sub/OPTIONS": "opts",
		"empty":       "",
	}
	writeTree(t, src, files)
	var buf bytes.Buffer
	if err := WriteArchive(context.Background(), &buf, src); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	if err := ReadArchive(context.Background(), &buf, dst, 1<<20); err != nil {
		t.Fatal(err)
	}
	if got := readTree(t, dst); !equalTrees(got, files) {
		t.Fatalf("extracted tree differs: got %d files", len(got))
	}
}

func tarOf(t *testing.T, hdrs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(bytes.Repeat([]byte("a"), int(h.Size))); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadArchiveRejectsUnsafeEntries(t *testing.T) {
	cases := map[string]*tar.Header{
		"parent":   {Name: "../escape", Typeflag: tar.TypeReg, Size: 1, Mode: 0o600},
		"absolute": {Name: "/etc/evil", Typeflag: tar.TypeReg, Size: 1, Mode: 0o600},
		"unclean":  {Name: "a/../../b", Typeflag: tar.TypeReg, Size: 1, Mode: 0o600},
		"symlink":  {Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd", Mode: 0o600},
		"dir":      {Name: "d/", Typeflag: tar.TypeDir, Mode: 0o700},
	}
	for name, hdr := range cases {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dst := filepath.Join(parent, "dst")
			err := ReadArchive(context.Background(), bytes.NewReader(tarOf(t, hdr)), dst, 1<<20)
			if !errors.Is(err, ErrBadArchive) {
				t.Fatalf("err = %v, want ErrBadArchive", err)
			}
			if _, err := os.Stat(dst); !os.IsNotExist(err) {
				t.Fatalf("rejected archive left %s behind", dst)
			}
			if _, err := os.Stat(filepath.Join(parent, "escape")); !os.IsNotExist(err) {
				t.Fatal("archive wrote outside its directory")
			}
		})
	}
}

func TestReadArchiveSizeLimit(t *testing.T) {
	data := tarOf(t, &tar.Header{Name: "big", Typeflag: tar.TypeReg, Size: 5000, Mode: 0o600})
	dst := filepath.Join(t.TempDir(), "dst")
	if err := ReadArchive(context.Background(), bytes.NewReader(data), dst, 4096); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestReadArchiveTruncated(t *testing.T) {
	data := tarOf(t, &tar.Header{Name: "f", Typeflag: tar.TypeReg, Size: 5000, Mode: 0o600})
	dst := filepath.Join(t.TempDir(), "dst")
	if err := ReadArchive(context.Background(), bytes.NewReader(data[:2000]), dst, 1<<20); err == nil {
		t.Fatal("truncated archive accepted")
	}
}

func TestReceiveStageInstall(t *testing.T) {
	root := t.TempDir()
	live := filepath.Join(root, "db")
	writeTree(t, live, map[string]string{"old": "old state"})
	d, err := OpenDir(filepath.Join(root, "snap"))
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(root, "checkpoint")
	newState := map[string]string{"new": "new state", "MANIFEST": "m"}
	writeTree(t, src, newState)
	var buf bytes.Buffer
	if err := WriteArchive(context.Background(), &buf, src); err != nil {
		t.Fatal(err)
	}
	if err := d.Receive(context.Background(), 42, &buf, 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.StagedAtLeast(43); !errors.Is(err, ErrNoStaged) {
		t.Fatalf("StagedAtLeast(43) err = %v, want ErrNoStaged", err)
	}
	staged, idx, err := d.StagedAtLeast(10)
	if err != nil || idx != 42 {
		t.Fatalf("StagedAtLeast(10) = %q %d %v", staged, idx, err)
	}
	if err := Install(staged, live); err != nil {
		t.Fatal(err)
	}
	if got := readTree(t, live); !equalTrees(got, newState) {
		t.Fatalf("live after install = %v", got)
	}
	if idxs, _ := d.Staged(); len(idxs) != 0 {
		t.Fatalf("staged after install = %v, want none", idxs)
	}
}

// TestRecoverAfterCrashMidInstall simulates a crash after each step of
// Install and checks that Recover leaves exactly one complete state.
func TestRecoverAfterCrashMidInstall(t *testing.T) {
	oldState := map[string]string{"old": "1"}
	newState := map[string]string{"new": "2"}
	setup := func(t *testing.T) (live, staged string) {
		root := t.TempDir()
		live = filepath.Join(root, "db")
		staged = filepath.Join(root, "0000000000000007.db")
		writeTree(t, live, oldState)
		writeTree(t, staged, newState)
		return live, staged
	}
	t.Run("after moving live aside", func(t *testing.T) {
		live, staged := setup(t)
		if err := os.Rename(live, live+oldSuffix); err != nil {
			t.Fatal(err)
		}
		if err := Recover(live); err != nil {
			t.Fatal(err)
		}
		if got := readTree(t, live); !equalTrees(got, oldState) {
			t.Fatalf("live = %v, want the old state back", got)
		}
		if got := readTree(t, staged); !equalTrees(got, newState) {
			t.Fatal("staged state lost")
		}
	})
	t.Run("after renaming staged into place", func(t *testing.T) {
		live, staged := setup(t)
		if err := os.Rename(live, live+oldSuffix); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(staged, live); err != nil {
			t.Fatal(err)
		}
		if err := Recover(live); err != nil {
			t.Fatal(err)
		}
		if got := readTree(t, live); !equalTrees(got, newState) {
			t.Fatalf("live = %v, want the new state", got)
		}
		if _, err := os.Stat(live + oldSuffix); !os.IsNotExist(err) {
			t.Fatal("old state left behind")
		}
	})
}

// failingTail yields data, then fails the way a checksum-verifying reader
// does at the end of a damaged stream.
type failingTail struct {
	data []byte
	err  error
}

func (f *failingTail) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestReceiveReadsToTheEndBeforeStaging(t *testing.T) {
	root := t.TempDir()
	src := filepath.Join(root, "src")
	writeTree(t, src, map[string]string{"f": "data"})
	var buf bytes.Buffer
	if err := WriteArchive(context.Background(), &buf, src); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDir(filepath.Join(root, "snap"))
	if err != nil {
		t.Fatal(err)
	}
	bad := errors.New("checksum mismatch")
	err = d.Receive(context.Background(), 9, &failingTail{data: buf.Bytes(), err: bad}, 1<<20)
	if !errors.Is(err, bad) {
		t.Fatalf("Receive = %v, want the stream's end error", err)
	}
	if idxs, _ := d.Staged(); len(idxs) != 0 {
		t.Fatalf("a stream that failed at its end was staged: %v", idxs)
	}
	trailing := append(append([]byte{}, buf.Bytes()...), bytes.Repeat([]byte{1}, maxTrailing+10)...)
	if err := d.Receive(context.Background(), 9, bytes.NewReader(trailing), 1<<20); !errors.Is(err, ErrBadArchive) {
		t.Fatalf("Receive with garbage after the archive = %v", err)
	}
}

func TestOpenDirRemovesPartialReceptions(t *testing.T) {
	root := t.TempDir()
	partial := filepath.Join(root, "0000000000000005.db.tmp")
	writeTree(t, partial, map[string]string{"x": "y"})
	d, err := OpenDir(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Fatal("partial reception survived OpenDir")
	}
	if idxs, _ := d.Staged(); len(idxs) != 0 {
		t.Fatalf("Staged = %v", idxs)
	}
}

func FuzzReadArchive(f *testing.F) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	_ = tw.WriteHeader(&tar.Header{Name: "a/b", Typeflag: tar.TypeReg, Size: 3, Mode: 0o600})
	_, _ = tw.Write([]byte("abc"))
	_ = tw.Close()
	f.Add(buf.Bytes())
	f.Add([]byte{})
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		dst := filepath.Join(parent, "dst")
		err := readArchive(context.Background(), bytes.NewReader(data), dst, 1<<16, false)
		if err != nil {
			if _, statErr := os.Stat(dst); !os.IsNotExist(statErr) {
				t.Fatalf("failed extraction left %s", dst)
			}
		}
		ents, _ := os.ReadDir(parent)
		for _, e := range ents {
			if e.Name() != "dst" {
				t.Fatalf("extraction wrote %q outside its directory", e.Name())
			}
		}
	})
}
