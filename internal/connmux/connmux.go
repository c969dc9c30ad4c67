// Package connmux splits one listener into two by the first bytes of each
// connection: connections that open with the HTTP/2 client preface (what a
// gRPC client sends on a plaintext connection) go to one listener, all others
// (HTTP/1.x: curl, browsers, the JSON gateway) to the other. This lets
// grpc.Server.Serve keep its fast path on the shared client port instead of
// going through net/http's ServeHTTP.
//
// A connection is classified by reading at most len(preface) bytes, with a
// deadline; the bytes read are replayed to whichever server gets it.
package connmux

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"time"
)

// preface is the HTTP/2 client connection preface (RFC 9113, 3.4).
var preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// ErrClosed is returned by the split listeners after Close.
var ErrClosed = errors.New("connmux: listener closed")

// Mux owns the root listener and feeds the two split listeners.
type Mux struct {
	root        net.Listener
	h2, other   *subListener
	readTimeout time.Duration
	closeOnce   sync.Once
	done        chan struct{}
}

// New wraps root. Call Serve to start accepting.
func New(root net.Listener) *Mux {
	m := &Mux{root: root, readTimeout: 10 * time.Second, done: make(chan struct{})}
	m.h2 = &subListener{m: m, conns: make(chan net.Conn)}
	m.other = &subListener{m: m, conns: make(chan net.Conn)}
	return m
}

// HTTP2 returns the listener of connections that opened with the HTTP/2
// preface.
func (m *Mux) HTTP2() net.Listener { return m.h2 }

// Other returns the listener of all other connections.
func (m *Mux) Other() net.Listener { return m.other }

// Serve accepts connections until the root listener fails or Close is
// called.
func (m *Mux) Serve() error {
	for {
		c, err := m.root.Accept()
		if err != nil {
			m.Close()
			return err
		}
		go m.classify(c)
	}
}

func (m *Mux) classify(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(m.readTimeout))
	// Read until the bytes either differ from the preface (decided early
	// for a short HTTP/1 request) or complete it.
	buf := make([]byte, len(preface))
	n := 0
	for n < len(buf) && bytes.Equal(buf[:n], preface[:n]) {
		k, err := c.Read(buf[n:])
		n += k
		if err != nil {
			break
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	buf = buf[:n]
	if n == 0 {
		c.Close()
		return
	}
	pc := &prefixConn{Conn: c, prefix: buf}
	dst := m.other
	if bytes.Equal(buf, preface) {
		dst = m.h2
	}
	select {
	case dst.conns <- pc:
	case <-m.done:
		c.Close()
	}
}

// Close closes the root listener and both split listeners.
func (m *Mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.done)
		err = m.root.Close()
	})
	return err
}

type subListener struct {
	m     *Mux
	conns chan net.Conn
}

func (l *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.m.done:
		return nil, ErrClosed
	}
}

func (l *subListener) Close() error   { return l.m.Close() }
func (l *subListener) Addr() net.Addr { return l.m.root.Addr() }

// prefixConn replays the classified bytes before reading from the wire.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
