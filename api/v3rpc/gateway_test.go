package v3rpc

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// post sends body to the gateway and decodes the JSON answer.
func post(ctx context.Context, t *testing.T, base, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, strings.NewReader(body))
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
		t.Fatalf("%s: %v in %q", path, err, raw)
	}
	return resp.StatusCode, out
}

// field walks a decoded JSON value along a path of keys and indexes.
func field(t *testing.T, v any, path ...any) any {
	t.Helper()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("no %q in %v", k, v)
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				t.Fatalf("no [%d] in %v", k, v)
			}
			v = a[k]
		}
	}
	return v
}

func TestGatewayKV(t *testing.T) {
	ta := startTestAPI(t)
	ctx := testContext(t)
	base := ta.http.URL

	code, put := post(ctx, t, base, "/v3/kv/put", `{"key":"Zm9v","value":"YmFy","unknown_field":1}`)
	if code != http.StatusOK {
		t.Fatalf("put: %d %v", code, put)
	}
	rev, ok := field(t, put, "header", "revision").(string) // int64 as a string
	if !ok || rev == "" || rev == "0" {
		t.Fatalf("put header = %v", put["header"])
	}
	if h := field(t, put, "header").(map[string]any); h["cluster_id"] != "7" || h["member_id"] != "9" || h["raft_term"] != "2" {
		t.Fatalf("header fields = %v", h)
	}

	_, rng := post(ctx, t, base, "/v3/kv/range", `{"key":"Zm9v"}`)
	kv := field(t, rng, "kvs", 0).(map[string]any)
	want := map[string]any{"key": "Zm9v", "value": "YmFy", "create_revision": rev, "mod_revision": rev, "version": "1"}
	if !reflect.DeepEqual(kv, want) {
		t.Fatalf("range kv = %v, want %v", kv, want)
	}
	if rng["count"] != "1" {
		t.Fatalf("count = %v", rng["count"])
	}

	// Old /v3beta/ paths still work; a missing key has no kvs and no count.
	_, miss := post(ctx, t, base, "/v3beta/kv/range", `{"key":"bm9uZQ=="}`)
	if _, ok := miss["kvs"]; ok || miss["count"] != nil || miss["header"] == nil {
		t.Fatalf("range of a missing key = %v", miss)
	}

	// txn: value("foo") == "bar" then put foo=baz.
	code, txn := post(ctx, t, base, "/v3/kv/txn", `{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy"}],
		"success":[{"request_put":{"key":"Zm9v","value":"YmF6"}}]}`)
	if code != http.StatusOK || txn["succeeded"] != true || field(t, txn, "responses", 0, "response_put", "header") == nil {
		t.Fatalf("txn: %d %v", code, txn)
	}
	_, rng = post(ctx, t, base, "/v3/kv/range", `{"key":"Zm9v"}`)
	if v := field(t, rng, "kvs", 0, "value"); v != "YmF6" {
		t.Fatalf("value after txn = %v", v)
	}

	_, del := post(ctx, t, base, "/v3/kv/deleterange", `{"key":"Zm9v"}`)
	if del["deleted"] != "1" {
		t.Fatalf("deleterange = %v", del)
	}
}

func TestGatewayErrors(t *testing.T) {
	ta := startTestAPI(t)
	ctx := testContext(t)
	code, body := post(ctx, t, ta.http.URL, "/v3/kv/put", `{"value":"YmFy"}`)
	want := map[string]any{"code": float64(3), "message": "etcdserver: key is not provided"}
	if code != http.StatusBadRequest || !reflect.DeepEqual(body, want) {
		t.Fatalf("empty key: %d %v, want 400 %v", code, body, want)
	}
	code, body = post(ctx, t, ta.http.URL, "/v3/kv/put", `{"key": 5`)
	if code != http.StatusBadRequest || body["code"] != float64(3) {
		t.Fatalf("bad JSON: %d %v", code, body)
	}
	code, body = post(ctx, t, ta.http.URL, "/v3/election/leader", `{"name":"bm9uZQ=="}`)
	if code != http.StatusInternalServerError || body["message"] != "election: no leader" || body["code"] != float64(2) {
		t.Fatalf("no leader: %d %v", code, body)
	}
}

func TestGatewayNotListening(t *testing.T) {
	api := New(Config{}, newFakeMember(t)) // no client address yet
	hs := httptest.NewServer(api.HTTP())
	defer hs.Close()
	code, body := post(testContext(t), t, hs.URL, "/v3/kv/range", `{"key":"Zm9v"}`)
	if code != http.StatusServiceUnavailable || body["code"] != float64(14) {
		t.Fatalf("before listening: %d %v", code, body)
	}
}

func TestGatewayLockAndObserve(t *testing.T) {
	ta := startTestAPI(t)
	ctx := testContext(t)
	base := ta.http.URL
	_, lock := post(ctx, t, base, "/v3/lock/lock", `{"name":"bG9jaw==","lease":"26"}`)
	if lock["key"] != "bG9jay8xYQ==" { // "lock/1a"
		t.Fatalf("lock = %v", lock)
	}
	_, camp := post(ctx, t, base, "/v3/election/campaign", `{"name":"ZWw=","lease":"11","value":"djE="}`)
	if field(t, camp, "leader", "key") != "ZWwvYg==" || field(t, camp, "leader", "lease") != "11" { // "el/b"
		t.Fatalf("campaign = %v", camp)
	}

	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(octx, http.MethodPost, base+"/v3/election/observe", strings.NewReader(`{"name":"ZWw="}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	next := func() map[string]any {
		if !lines.Scan() {
			t.Fatalf("observe stream ended: %v", lines.Err())
		}
		var m map[string]any
		if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
			t.Fatalf("%v in %q", err, lines.Bytes())
		}
		return m
	}
	if v := field(t, next(), "result", "kv", "value"); v != "djE=" {
		t.Fatalf("observed %v", v)
	}
	post(ctx, t, base, "/v3/election/proclaim", `{"leader":`+mustJSON(t, camp["leader"])+`,"value":"djI="}`)
	if v := field(t, next(), "result", "kv", "value"); v != "djI=" {
		t.Fatalf("observed %v after proclaim", v)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
