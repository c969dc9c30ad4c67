package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/tests/framework"
)

// etcdctl returns a function that runs etcd's own CLI against endpoints.
// `make test` builds it and sets CAIRNTEST_ETCDCTL; a plain `go test` without it
// skips these tests.
func etcdctl(t *testing.T, endpoints []string) func(args ...string) (string, error) {
	t.Helper()
	bin := os.Getenv("CAIRNTEST_ETCDCTL")
	if bin == "" {
		t.Skip("CAIRNTEST_ETCDCTL not set: run `make test` (it builds etcdctl)")
	}
	return func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"--endpoints=" + strings.Join(endpoints, ","), "--command-timeout=10s"}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
}

func TestEtcdctlKV(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 3})
	run := etcdctl(t, c.Endpoints())
	must := func(want string, args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("etcdctl %v: %v\n%s", args, err, out)
		}
		return out
	}
	must("OK", "put", "foo", "bar")
	must("foo\nbar", "get", "foo")
	out := must(`"kvs"`, "get", "foo", "-w", "json")
	var resp struct {
		Header struct {
			ClusterID uint64 `json:"cluster_id"`
			Revision  int64  `json:"revision"`
		} `json:"header"`
		Kvs []struct {
			Key     []byte `json:"key"`
			Value   []byte `json:"value"`
			Version int64  `json:"version"`
		} `json:"kvs"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("json output: %v\n%s", err, out)
	}
	if resp.Header.ClusterID == 0 || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "bar" {
		t.Fatalf("json get: %+v", resp)
	}
	must("OK", "put", "dir/a", "1")
	must("OK", "put", "dir/b", "2")
	if out := must("dir/b", "get", "dir/", "--prefix", "--keys-only"); !strings.Contains(out, "dir/a") || strings.Contains(out, "\n1") {
		t.Fatalf("keys-only listing: %q", out)
	}
	cmd := exec.Command(os.Getenv("CAIRNTEST_ETCDCTL"), "--endpoints="+strings.Join(c.Endpoints(), ","), "txn")
	cmd.Stdin = strings.NewReader("value(\"foo\") = \"bar\"\n\nput foo baz\n\nput foo nope\n\n")
	if b, err := cmd.CombinedOutput(); err != nil || !strings.HasPrefix(string(b), "SUCCESS") {
		t.Fatalf("etcdctl txn: %v\n%s", err, b)
	}
	must("baz", "get", "foo", "--print-value-only")
	must("2", "del", "dir/", "--prefix")
	if out, err := run("put", "", "v"); err == nil {
		t.Fatalf("etcdctl put with an empty key succeeded:\n%s", out)
	}
}
