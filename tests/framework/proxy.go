package framework

import (
	"bytes"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"
)

// Proxy is a TCP proxy in front of one member's peer port, used to inject
// network faults between members on loopback. Members advertise the proxy's
// URL, so every peer connection *to* the member passes through it. cairn's
// transport opens one HTTP/2 (h2c) connection per sender, so the proxy reads
// the first request's X-Cairn-From header to learn which member is on the
// other end; that lets a Rules value cut the traffic of one sender only, and
// a partition is "the isolated member's proxy drops everything, every other
// proxy drops connections from the isolated member".
//
// Lifecycle: NewProxy listens at once; Close stops it and every connection.
// Concurrency: all methods are safe for concurrent use; mu guards rules and
// conns.
type Proxy struct {
	ln     net.Listener
	target string // host:port of the member's real peer listener

	mu    sync.Mutex
	rules ProxyRules            // guarded by mu
	conns map[*proxyConn]string // open connections and their sender ID; guarded by mu
	done  bool                  // guarded by mu
	wg    sync.WaitGroup
}

// ProxyRules say what a Proxy does to the traffic it carries. The zero value
// forwards everything.
type ProxyRules struct {
	DropAll      bool            // close every connection and refuse new ones
	DropFrom     map[string]bool // sender member IDs (hex, as in X-Cairn-From) whose connections are closed
	BlackholeIn  bool            // keep connections open, discard bytes toward the member
	BlackholeOut bool            // keep connections open, discard bytes from the member
	Delay        time.Duration   // hold every chunk toward the member this long
}

func (r ProxyRules) drops(from string) bool { return r.DropAll || r.DropFrom[from] }

type proxyConn struct{ in, out net.Conn }

func (pc *proxyConn) close() {
	_ = pc.in.Close()
	if pc.out != nil {
		_ = pc.out.Close()
	}
}

// AddPeerProxy puts a new Proxy in front of m (not yet started): m keeps
// listening on its own peer URL and advertises the proxy's. The proxy is
// closed by the test's cleanup.
func AddPeerProxy(t testing.TB, m *Member) *Proxy {
	t.Helper()
	u, err := url.Parse(m.PeerURL)
	if err != nil {
		t.Fatalf("peer URL %q: %v", m.PeerURL, err)
	}
	p, err := NewProxy(m.IP+":0", u.Host)
	if err != nil {
		t.Fatalf("proxy for %s: %v", m.Name, err)
	}
	t.Cleanup(p.Close)
	m.ListenPeerURL = m.PeerURL
	m.PeerURL = "http://" + p.Addr()
	m.Proxy = p
	return p
}

// NewProxy listens on addr and forwards to target.
func NewProxy(addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[*proxyConn]string{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listening address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Rules returns the current rules.
func (p *Proxy) Rules() ProxyRules {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rules
}

// Set replaces the rules. Connections the new rules drop are closed; when a
// blackhole or delay ends, every connection is closed too, so streams whose
// bytes were discarded restart cleanly instead of resuming mid-frame.
func (p *Proxy) Set(r ProxyRules) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.rules
	p.rules = r
	reset := (old.BlackholeIn && !r.BlackholeIn) || (old.BlackholeOut && !r.BlackholeOut)
	for pc, from := range p.conns {
		if reset || r.drops(from) {
			pc.close()
		}
	}
}

// Heal forwards everything again.
func (p *Proxy) Heal() { p.Set(ProxyRules{}) }

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return
	}
	p.done = true
	_ = p.ln.Close()
	for pc := range p.conns {
		pc.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) track(pc *proxyConn, from string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done || p.rules.drops(from) {
		return false
	}
	p.conns[pc] = from
	return true
}

func (p *Proxy) untrack(pc *proxyConn) {
	p.mu.Lock()
	delete(p.conns, pc)
	p.mu.Unlock()
	pc.close()
}

func (p *Proxy) serve(in net.Conn) {
	defer p.wg.Done()
	pc := &proxyConn{in: in}
	_ = in.SetReadDeadline(time.Now().Add(5 * time.Second))
	head, from := sniffSender(in)
	_ = in.SetReadDeadline(time.Time{})
	if !p.track(pc, from) {
		pc.close()
		return
	}
	defer p.untrack(pc)
	out, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		return
	}
	p.mu.Lock()
	pc.out = out
	closed := p.done || p.rules.drops(from)
	p.mu.Unlock()
	if closed {
		return
	}
	if _, err := out.Write(head); err != nil {
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.pump(out, in, func(r ProxyRules) bool { return r.BlackholeOut }, func(ProxyRules) time.Duration { return 0 })
		pc.close()
	}()
	p.pump(in, out, func(r ProxyRules) bool { return r.BlackholeIn }, func(r ProxyRules) time.Duration { return r.Delay })
	pc.close()
	wg.Wait()
}

type chunk struct {
	b  []byte
	at time.Time
}

// pump copies src to dst, discarding chunks while blackhole(rules) and
// holding each chunk delay(rules) after it was read.
func (p *Proxy) pump(src, dst net.Conn, blackhole func(ProxyRules) bool, delay func(ProxyRules) time.Duration) {
	ch := make(chan chunk, 1024)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{buf[:n], time.Now()}
			}
			if err != nil {
				return
			}
		}
	}()
	failed := false
	for c := range ch {
		if failed {
			continue // drain so the reader can finish
		}
		r := p.Rules()
		if blackhole(r) {
			continue
		}
		if d := time.Until(c.at.Add(delay(r))); d > 0 {
			time.Sleep(d) // the injected latency itself
		}
		if _, err := dst.Write(c.b); err != nil {
			failed = true
			_ = src.Close()
		}
	}
}

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// sniffSender reads the start of an h2c connection up to its first HEADERS
// frame and returns every byte read and the X-Cairn-From header ("" if the
// connection is not h2c or the header is missing).
func sniffSender(r io.Reader) ([]byte, string) {
	var buf bytes.Buffer
	pre := make([]byte, len(h2Preface))
	n, err := io.ReadFull(r, pre)
	buf.Write(pre[:n])
	if err != nil || string(pre) != h2Preface {
		return buf.Bytes(), ""
	}
	for buf.Len() < 1<<16 {
		hdr := make([]byte, 9)
		n, err := io.ReadFull(r, hdr)
		buf.Write(hdr[:n])
		if err != nil {
			return buf.Bytes(), ""
		}
		length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
		payload := make([]byte, length)
		n, err = io.ReadFull(r, payload)
		buf.Write(payload[:n])
		if err != nil {
			return buf.Bytes(), ""
		}
		if hdr[3] == 0x1 { // HEADERS
			return buf.Bytes(), headerValue(hdr[4], payload, "x-cairn-from")
		}
	}
	return buf.Bytes(), ""
}

func headerValue(flags byte, p []byte, name string) string {
	if flags&0x8 != 0 && len(p) > 0 { // PADDED
		pad := int(p[0])
		if 1+pad > len(p) {
			return ""
		}
		p = p[1 : len(p)-pad]
	}
	if flags&0x20 != 0 { // PRIORITY
		if len(p) < 5 {
			return ""
		}
		p = p[5:]
	}
	var val string
	dec := hpack.NewDecoder(4096, nil)
	dec.SetEmitFunc(func(f hpack.HeaderField) {
		if strings.EqualFold(f.Name, name) {
			val = f.Value
		}
	})
	_, _ = dec.Write(p) // a decoding error leaves what was found so far
	return val
}
