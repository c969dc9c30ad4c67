package v3rpc

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/cairn-kv/cairn/membership"
)

func probe(t *testing.T, checks []probeCheck, method, target string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	serveProbe(rec, httptest.NewRequest(method, target, nil), "readyz", checks)
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestProbeOutput(t *testing.T) {
	var leaderErr error
	checks := []probeCheck{
		{"a", func(context.Context) error { return nil }},
		{"b", func(context.Context) error { return leaderErr }},
	}
	if code, body := probe(t, checks, http.MethodGet, "/readyz"); code != 200 || body != "ok" {
		t.Fatalf("healthy: %d %q", code, body)
	}
	if code, body := probe(t, checks, http.MethodGet, "/readyz?verbose"); code != 200 || body != "[+]a ok\n[+]b ok\nreadyz check passed\n" {
		t.Fatalf("healthy verbose: %d %q", code, body)
	}
	leaderErr = errors.New("no leader")
	if code, body := probe(t, checks, http.MethodGet, "/readyz"); code != 503 || body != "[+]a ok\n[-]b failed: no leader\nreadyz check failed\n" {
		t.Fatalf("failing: %d %q", code, body)
	}
	if code, body := probe(t, checks, http.MethodGet, "/readyz?exclude=b&verbose"); code != 200 || !strings.Contains(body, "[+]b excluded: ok\n") {
		t.Fatalf("excluded: %d %q", code, body)
	}
	if code, _ := probe(t, checks, http.MethodPost, "/readyz"); code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", code)
	}
}

func TestCheckPeerURLs(t *testing.T) {
	good := [][]string{{"http://127.0.0.1:2380"}, {"https://a.example:1", "http://[::1]:2/"}, {"unix://sock"}}
	for _, u := range good {
		if err := checkPeerURLs(u); err != nil {
			t.Errorf("%q refused: %v", u, err)
		}
	}
	bad := [][]string{nil, {}, {"127.0.0.1:2380"}, {"http://127.0.0.1"}, {"ftp://h:1"}, {"http://h:1/p"}, {"http://h:1", "%"}}
	for _, u := range bad {
		if err := checkPeerURLs(u); err != rpctypes.ErrGRPCMemberBadURLs {
			t.Errorf("%q: %v, want ErrGRPCMemberBadURLs", u, err)
		}
	}
}

func TestIsVoter(t *testing.T) {
	ms := toMembersForTest()
	if !isVoter(ms, 1) || isVoter(ms, 2) || isVoter(ms, 3) {
		t.Fatal("isVoter wrong")
	}
}

func toMembersForTest() []membership.Member {
	return []membership.Member{{ID: 1}, {ID: 2, IsLearner: true}}
}
