package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/tests/framework"
)

// gwPost posts body to the member's JSON gateway and decodes the answer.
func gwPost(ctx context.Context, t *testing.T, url, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("POST %s: %v in %q", path, err, raw)
	}
	return resp.StatusCode, out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestGatewayKVOverHTTP(t *testing.T) {
	c := framework.Start(t, framework.Options{Size: 1})
	ctx := framework.Context(t, 30*time.Second)
	url := c.Members[0].ClientURL

	code, put := gwPost(ctx, t, url, "/v3/kv/put", `{"key":"`+b64("gw/a")+`","value":"`+b64("1")+`"}`)
	if code != http.StatusOK {
		t.Fatalf("put: %d %v", code, put)
	}
	hdr, _ := put["header"].(map[string]any)
	rev, isString := hdr["revision"].(string)
	if !isString || rev == "" || rev == "0" {
		t.Fatalf("put header = %v (revision must be a non-zero int64 string)", hdr)
	}
	for _, f := range []string{"cluster_id", "member_id", "raft_term"} {
		if s, ok := hdr[f].(string); !ok || s == "" || s == "0" {
			t.Fatalf("header %s = %#v, want a non-zero uint64 string", f, hdr[f])
		}
	}

	_, rng := gwPost(ctx, t, url, "/v3/kv/range", `{"key":"`+b64("gw/")+`","range_end":"`+b64("gw0")+`"}`)
	kvs, _ := rng["kvs"].([]any)
	want := map[string]any{"key": b64("gw/a"), "value": b64("1"), "create_revision": rev, "mod_revision": rev, "version": "1"}
	if len(kvs) != 1 || !reflect.DeepEqual(kvs[0], want) || rng["count"] != "1" {
		t.Fatalf("range = %v, want one kv %v", rng, want)
	}

	code, txn := gwPost(ctx, t, url, "/v3/kv/txn", `{"compare":[{"key":"`+b64("gw/a")+`","target":"MOD","result":"EQUAL","mod_revision":"`+rev+`"}],
		"success":[{"request_put":{"key":"`+b64("gw/a")+`","value":"`+b64("2")+`"}}],
		"failure":[{"request_range":{"key":"`+b64("gw/a")+`"}}]}`)
	if code != http.StatusOK || txn["succeeded"] != true {
		t.Fatalf("txn: %d %v", code, txn)
	}
	_, txn = gwPost(ctx, t, url, "/v3/kv/txn", `{"compare":[{"key":"`+b64("gw/a")+`","target":"MOD","result":"EQUAL","mod_revision":"`+rev+`"}],
		"failure":[{"request_range":{"key":"`+b64("gw/a")+`"}}]}`)
	if _, ok := txn["succeeded"]; ok { // false is omitted, as by etcd
		t.Fatalf("stale txn = %v", txn)
	}
	resps, _ := txn["responses"].([]any)
	if len(resps) != 1 || !strings.Contains(mustMarshal(t, resps[0]), `"value":"`+b64("2")+`"`) {
		t.Fatalf("stale txn responses = %v", resps)
	}

	_, del := gwPost(ctx, t, url, "/v3/kv/deleterange", `{"key":"`+b64("gw/a")+`"}`)
	if del["deleted"] != "1" {
		t.Fatalf("deleterange = %v", del)
	}

	code, body := gwPost(ctx, t, url, "/v3/kv/put", `{"value":"`+b64("x")+`"}`)
	wantErr := map[string]any{"code": float64(3), "message": "etcdserver: key is not provided"}
	if code != http.StatusBadRequest || !reflect.DeepEqual(body, wantErr) {
		t.Fatalf("put without key: %d %v, want 400 %v", code, body, wantErr)
	}
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestGatewayCurl runs the command from etcd's gateway documentation.
func TestGatewayCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	c := framework.Start(t, framework.Options{Size: 1})
	ctx := framework.Context(t, 30*time.Second)
	url := c.Members[0].ClientURL
	run := func(path, body string) map[string]any {
		t.Helper()
		out, err := exec.CommandContext(ctx, curl, "-sS", "-L", url+path, "-X", "POST", "-d", body).Output()
		if err != nil {
			t.Fatalf("curl %s: %v", path, err)
		}
		var m map[string]any
		if err := json.NewDecoder(bytes.NewReader(out)).Decode(&m); err != nil {
			t.Fatalf("curl %s: %v in %q", path, err, out)
		}
		return m
	}
	if put := run("/v3/kv/put", `{"key": "Zm9v", "value": "YmFy"}`); put["header"] == nil {
		t.Fatalf("put = %v", put)
	}
	rng := run("/v3/kv/range", `{"key": "Zm9v"}`)
	kvs, _ := rng["kvs"].([]any)
	if len(kvs) != 1 || kvs[0].(map[string]any)["value"] != "YmFy" {
		t.Fatalf("range = %v", rng)
	}
}
