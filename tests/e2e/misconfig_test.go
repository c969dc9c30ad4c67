package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
)

// A member pointed at the data dir of another cluster (a different
// --initial-cluster-token) refuses to start, says what to fix, and never
// serves its client port.
func TestBinaryRefusesDataDirOfAnotherCluster(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 1})
	m := c.Members[0]
	if _, err := c.Client().Put(framework.Context(t, 10*time.Second), "k", "v"); err != nil {
		t.Fatal(err)
	}
	c.Terminate(m)
	args := c.Args(m, "new")
	for i, a := range args {
		if strings.HasPrefix(a, "--initial-cluster-token=") {
			args[i] = "--initial-cluster-token=some-other-cluster"
		}
	}
	cmd := exec.Command(framework.Binary(t), args...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		out, err = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("member with another cluster's data dir kept running:\n%s", out)
	}
	if err == nil {
		t.Fatalf("member started on another cluster's data dir:\n%s", out)
	}
	for _, want := range []string{"belongs to cluster", "--initial-cluster-token", m.DataDir} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("refusal does not mention %q:\n%s", want, out)
		}
	}
	if framework.Healthy(m.ClientURL) {
		t.Fatal("the refused member answers on its client port")
	}
}
