package connmux

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestSplitsByPreface(t *testing.T) {
	root, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := New(root)
	go m.Serve()
	defer m.Close()

	got := make(chan string, 2)
	serve := func(l net.Listener, name string) {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, len(preface))
		if _, err := io.ReadFull(c, b); err != nil {
			got <- name + ": " + err.Error()
			return
		}
		got <- name + ":" + string(b)
	}
	go serve(m.HTTP2(), "h2")
	go serve(m.Other(), "other")

	c1, _ := net.Dial("tcp", root.Addr().String())
	defer c1.Close()
	c1.Write(preface)
	http1 := "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
	c2, _ := net.Dial("tcp", root.Addr().String())
	defer c2.Close()
	c2.Write([]byte(http1))

	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		select {
		case s := <-got:
			seen[s] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("connections not classified; seen %v", seen)
		}
	}
	if !seen["h2:"+string(preface)] {
		t.Errorf("HTTP/2 connection misrouted or bytes lost: %v", seen)
	}
	if !seen["other:"+http1[:len(preface)]] {
		t.Errorf("HTTP/1 connection misrouted or bytes lost: %v", seen)
	}
}

func TestShortHTTP1RequestStillServed(t *testing.T) {
	root, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := New(root)
	m.readTimeout = time.Hour // must not be what classifies it
	go m.Serve()
	defer m.Close()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(m.Other())
	defer srv.Close()
	// A request shorter than the preface: classified by its first bytes.
	c, err := net.Dial("tcp", root.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(line, "200") {
		t.Fatalf("response %q, %v", line, err)
	}
}

func TestCloseUnblocksAccept(t *testing.T) {
	root, _ := net.Listen("tcp", "127.0.0.1:0")
	m := New(root)
	go m.Serve()
	errc := make(chan error, 1)
	go func() { _, err := m.HTTP2().Accept(); errc <- err }()
	m.Close()
	select {
	case err := <-errc:
		if err != ErrClosed {
			t.Fatalf("Accept after Close = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still blocked after Close")
	}
}
