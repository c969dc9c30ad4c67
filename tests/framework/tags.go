package framework

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// taggedBuild is one cairn binary built with a set of build tags.
type taggedBuild struct {
	once sync.Once
	path string
	err  error
}

// taggedBuilds holds one build per tag list for the test binary's life.
var taggedBuilds sync.Map // tags → *taggedBuild

// BinaryWithTags returns the path of a cairn binary built from this checkout
// with `go build -tags tags` (Binary when tags is empty), built once per test
// binary. Use "failpoints" for a binary whose crash points work (package
// internal/failpoint).
func BinaryWithTags(t testing.TB, tags string) string {
	t.Helper()
	if tags == "" {
		return Binary(t)
	}
	v, _ := taggedBuilds.LoadOrStore(tags, &taggedBuild{})
	b := v.(*taggedBuild)
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "cairn-e2e-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, "cairn")
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-tags", tags, "-o", b.path, "./cmd/cairn")
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("go build -tags %s: %v\n%s", tags, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// Exited reports whether m's process has exited and, if so, its exit code
// (-1 when it was killed by a signal).
func (m *Member) Exited() (bool, int) {
	if m.cmd == nil || m.Running() {
		return false, 0
	}
	return true, m.cmd.ProcessState.ExitCode()
}

// WaitExit waits up to d for m's process to exit by itself.
func (m *Member) WaitExit(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case <-m.exited:
		return m.cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("%s still running after %v\n%s", m.Name, d, tail(m.Logs(), 40))
		return 0
	}
}

// NewClient returns an official client for endpoints that does not wait
// for them at creation (the member may be down), closed at cleanup.
func NewClient(t testing.TB, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
