package transport

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// silentPeer accepts stream upgrades and then reads whatever comes without
// ever answering a keep-alive: a peer whose process hangs after the
// handshake, or a path that stops carrying its answers.
func silentPeer(t *testing.T) (url string, upgraded chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	upgraded = make(chan struct{}, 16)
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", req.Header.Get("Upgrade"))
				upgraded <- struct{}{}
				io.Copy(io.Discard, br)
			}()
		}
	}()
	return "http://" + ln.Addr().String(), upgraded
}

// A receiver that answers no keep-alive is taken for gone: the stream is
// torn down after two keep-alive intervals and the peer reported
// unreachable, though the connection stays open and takes our bytes.
func TestStreamToAPeerThatAnswersNoKeepAliveIsTornDown(t *testing.T) {
	url, upgraded := silentPeer(t)
	a := startNode(t, 1, testCluster, "127.0.0.1:0", func(c *Config) { c.DialTimeout = 100 * time.Millisecond })
	a.tr.AddPeer(2, []string{url})
	select {
	case <-upgraded:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream was never opened")
	}
	waitFor(t, 5*time.Second, "the stream to a peer that answers no keep-alive to be torn down", func() bool {
		st, _ := a.tr.PeerStatus(2)
		return !st.Active && st.LastError != nil && contains(st.LastError.Error(), "keep-alive")
	})
	if a.raft.unreachableCount(2) == 0 {
		t.Error("the peer was not reported unreachable")
	}
}

// A sender that goes silent (no frame, not even a keep-alive) for three of
// its keep-alive intervals is gone: the receiver ends the stream and closes
// the connection.
func TestSilentSenderStreamIsClosedByTheReceiver(t *testing.T) {
	b := startNode(t, 2, testCluster, "127.0.0.2:0")
	c, err := net.Dial("tcp", strings.TrimPrefix(b.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: %s\r\n%s: 1\r\n%s: 2\r\n%s: %x\r\n%s: 100ms\r\n\r\n",
		pathStream, streamUpgrade, hdrFrom, hdrTo, hdrClusterID, testCluster, hdrKeepalive)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %v, %v", resp, err)
	}
	// A keep-alive is answered with one byte.
	c.Write(keepaliveFrame)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := br.ReadByte(); err != nil || b != 0 {
		t.Fatalf("keep-alive answer: %v, %v", b, err)
	}
	start := time.Now()
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the receiver wrote more than keep-alive answers")
	} else if errTimeout, ok := err.(net.Error); ok && errTimeout.Timeout() {
		t.Fatal("the receiver kept the stream of a silent sender open")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the receiver closed a silent stream after %v", d)
	}
}

// A stream request that does not upgrade (an HTTP/2 POST body, as streams
// were before) is refused as a bad request.
func TestStreamRequestWithoutUpgradeIsRefused(t *testing.T) {
	b := startNode(t, 2, testCluster, "127.0.0.2:0")
	a := startNode(t, 1, testCluster, "127.0.0.1:0")
	req, _ := http.NewRequest(http.MethodPost, b.url+pathStream, strings.NewReader(""))
	a.tr.setHeaders(req.Header, 2)
	resp, err := a.tr.streamClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get(hdrReject) != rejectBad {
		t.Errorf("a stream request without upgrade: %s, %s=%q", resp.Status, hdrReject, resp.Header.Get(hdrReject))
	}
}
