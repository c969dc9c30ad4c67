package framework

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

// h2cClient sends X-Cairn-From: from on every request over h2c, like
// cairn's transport.
func h2cGet(ctx context.Context, cl *http.Client, url, from string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Cairn-From", from)
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

func TestProxyDropsBySender(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	px, err := NewProxy("127.0.0.1:0", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	url := "http://" + px.Addr() + "/"
	newClient := func() *http.Client {
		return &http.Client{Timeout: time.Second, Transport: &http.Transport{Protocols: &p}}
	}
	a, b := newClient(), newClient()
	ctx := context.Background()
	for _, c := range []struct {
		cl   *http.Client
		from string
	}{{a, "a1"}, {b, "b2"}} {
		if err := h2cGet(ctx, c.cl, url, c.from); err != nil {
			t.Fatalf("%s before any rule: %v", c.from, err)
		}
	}
	px.Set(ProxyRules{DropFrom: map[string]bool{"a1": true}})
	if err := h2cGet(ctx, a, url, "a1"); err == nil {
		t.Fatal("a1 got through a proxy that drops it")
	}
	if err := h2cGet(ctx, b, url, "b2"); err != nil {
		t.Fatalf("b2 dropped by a rule for a1: %v", err)
	}
	px.Set(ProxyRules{BlackholeIn: true})
	if err := h2cGet(ctx, b, url, "b2"); err == nil {
		t.Fatal("b2 got an answer through a blackhole")
	}
	px.Heal()
	for _, c := range []struct {
		cl   *http.Client
		from string
	}{{a, "a1"}, {b, "b2"}} {
		if err := h2cGet(ctx, c.cl, url, c.from); err != nil {
			t.Fatalf("%s after heal: %v", c.from, err)
		}
	}
}
