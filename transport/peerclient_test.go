package transport

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Requests through PeerClient (the server's forwarded lease requests) share
// one connection to a peer, however many run at once: over HTTP/1.1 each
// concurrent request beyond the idle pool opened and closed a TCP
// connection of its own.
func TestPeerClientSharesOneConnection(t *testing.T) {
	var mu sync.Mutex
	remotes := map[string]bool{}
	protos := map[int]bool{}
	release := make(chan struct{})
	var arrived sync.WaitGroup
	const n = 32
	arrived.Add(n)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		remotes[r.RemoteAddr] = true
		protos[r.ProtoMajor] = true
		mu.Unlock()
		arrived.Done()
		<-release // all n requests are in flight at once
		w.WriteHeader(http.StatusOK)
	}))
	ConfigureServer(srv.Config) // as the peer listener
	srv.Start()
	defer srv.Close()

	client := PeerClient()
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make(chan error, n)
	for range n {
		go func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/leases/keepalive", bytes.NewReader([]byte("x")))
			if err != nil {
				errs <- err
				return
			}
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	arrived.Wait()
	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if len(remotes) != 1 || !protos[2] || len(protos) != 1 {
		t.Fatalf("%d concurrent requests came over %d connections with HTTP major versions %v, want one HTTP/2 connection", n, len(remotes), protos)
	}
}
