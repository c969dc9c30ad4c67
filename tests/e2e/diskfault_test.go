package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairn-kv/cairn/tests/framework"
)

// putKeys writes n keys w/<i> through cli and returns them.
func putKeys(t *testing.T, cli *clientv3.Client, n int) map[string]string {
	t.Helper()
	ctx := framework.Context(t, 60*time.Second)
	acked := map[string]string{}
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("w/%04d", i)
		if _, err := cli.Put(ctx, k, strings.Repeat("v", 100)); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		acked[k] = strings.Repeat("v", 100)
	}
	return acked
}

// lastWALSegment returns the newest WAL segment of m and the length of its
// written part (the segment is preallocated with zeros).
func lastWALSegment(t *testing.T, m *framework.Member) (string, int) {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(m.DataDir, "member", "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no WAL segment in %s: %v", m.DataDir, err)
	}
	sort.Strings(segs)
	b, err := os.ReadFile(segs[len(segs)-1])
	if err != nil {
		t.Fatal(err)
	}
	end := len(bytes.TrimRight(b, "\x00"))
	if end < 1024 {
		t.Fatalf("WAL segment %s holds only %d bytes", segs[len(segs)-1], end)
	}
	return segs[len(segs)-1], end
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// refusesToServe checks that m exits non-zero without ever answering a
// Range, and that its log names file.
func refusesToServe(t *testing.T, m *framework.Member, file string) {
	t.Helper()
	cli := framework.NewClient(t, m.ClientURL)
	deadline := time.Now().Add(30 * time.Second)
	for m.Running() && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := cli.Get(ctx, "w/", clientv3.WithPrefix(), clientv3.WithSerializable())
		cancel()
		if err == nil {
			t.Fatalf("the damaged member answered a Range\n%s", m.Logs())
		}
	}
	if code := m.WaitExit(t, 10*time.Second); code == 0 {
		t.Fatalf("the damaged member exited with 0\n%s", m.Logs())
	}
	for _, line := range strings.Split(m.Logs(), "\n") {
		if strings.Contains(line, filepath.Base(file)) && strings.Contains(line, "level=ERROR") {
			t.Logf("refused with: %s", line)
			return
		}
	}
	t.Fatalf("no error in the log names %s:\n%s", filepath.Base(file), m.Logs())
}

func TestDiskFaultTornWALTailIsRepaired(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 1})
	m := c.Members[0]
	acked := putKeys(t, c.Client(), 200)
	c.Terminate(m)
	seg, end := lastWALSegment(t, m)
	// Cut the segment inside its last record, as a crash during a write
	// would. That record was never acknowledged in a real crash; here it
	// may be the last put's, so that key is not checked.
	if err := os.Truncate(seg, int64(end-3)); err != nil {
		t.Fatal(err)
	}
	delete(acked, "w/0199")
	c.StartMember(m, "new")
	c.WaitHealthy()
	checkAllAcked(t, c, m.ClientURL, acked, false)
	if _, err := c.Client().Put(framework.Context(t, 10*time.Second), "after", "repair"); err != nil {
		t.Fatalf("put after repair: %v", err)
	}
}

func TestDiskFaultDamagedWALRecordStopsTheMember(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 1})
	m := c.Members[0]
	putKeys(t, c.Client(), 200)
	c.Terminate(m)
	seg, end := lastWALSegment(t, m)
	flipByte(t, seg, int64(end/2))
	c.StartMember(m, "new")
	refusesToServe(t, m, seg)
	if !strings.Contains(m.Logs(), "offset") {
		t.Fatalf("the log does not give the offset:\n%s", m.Logs())
	}
}

func TestDiskFaultDamagedPebbleFileStopsTheMember(t *testing.T) {
	// Where to damage: a third into the table (a data block); inside the
	// MANIFEST's first record (Pebble takes damage in a MANIFEST's last
	// record for a torn write and drops that record, like our WAL does).
	at := map[string]func(size int64) int64{
		"sst":      func(size int64) int64 { return size / 3 },
		"MANIFEST": func(int64) int64 { return 10 },
	}
	for _, target := range []string{"sst", "MANIFEST"} {
		t.Run(target, func(t *testing.T) {
			c := framework.Start(t, framework.Options{Size: 1})
			m := c.Members[0]
			cli := c.Client()
			putKeys(t, cli, 300)
			// Flush everything into table files.
			if _, err := cli.Defragment(framework.Context(t, 30*time.Second), m.ClientURL); err != nil {
				t.Fatal(err)
			}
			c.Terminate(m)
			file := largestFile(t, filepath.Join(m.DataDir, "member", "db"), target)
			st, err := os.Stat(file)
			if err != nil {
				t.Fatal(err)
			}
			flipByte(t, file, at[target](st.Size()))
			c.StartMember(m, "new")
			refusesToServe(t, m, file)
		})
	}
}

// largestFile returns the largest file in dir whose name contains part.
func largestFile(t *testing.T, dir, part string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	best, size := "", int64(-1)
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || !strings.Contains(e.Name(), part) || info.Size() <= size {
			continue
		}
		best, size = filepath.Join(dir, e.Name()), info.Size()
	}
	if best == "" {
		t.Fatalf("no %s file in %s", part, dir)
	}
	return best
}
