// Package framework runs clusters of real cairn processes for end-to-end
// tests: it builds the binary once per test binary, starts members on
// 127.0.0.1, 127.0.0.2, ... with free ports, and stops, kills or restarts
// them by PID. Every process it starts is stopped by the test's cleanup, and
// a failing test gets the tail of every member's log.
package framework

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary returns the path of a cairn binary built from this checkout.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cairn-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "cairn")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/cairn")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Member is one cairn process.
type Member struct {
	Name, IP           string
	PeerURL, ClientURL string
	DataDir            string
	Env                []string // extra environment of the member's process
	// ListenPeerURL is where the member listens for peers when it differs
	// from the advertised PeerURL (a Proxy sits in between); empty: PeerURL.
	ListenPeerURL string
	// Proxy forwards PeerURL to ListenPeerURL when Options.PeerProxy is set.
	Proxy  *Proxy
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Logs returns everything the member's processes logged so far.
func (m *Member) Logs() string { return m.logs.String() }

// Running reports whether the member's process is running.
func (m *Member) Running() bool {
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// Cluster is a set of member processes.
type Cluster struct {
	t       testing.TB
	Token   string
	Members []*Member
	Extra   []string // extra flags for every member
	Tags    string   // build tags of the binary (BinaryWithTags)
}

// Options of a new cluster.
type Options struct {
	Size  int
	Extra []string
	Tags  string // build tags of the binary, e.g. "failpoints"
	// PeerProxy puts a Proxy in front of every member's peer port: members
	// advertise the proxy's URL and listen on their own (see proxy.go).
	PeerProxy bool
}

// Member ports come from below Linux's ephemeral range (32768-60999 by
// default): a port taken from that range by listening on port 0 and closing
// it could be given to an outgoing connection's local end before the member
// binds it ("address already in use"). Each test process starts at its own
// random place in the range, so parallel test packages rarely meet.
const (
	portBase  = 20000
	portRange = 12000
)

var nextPort atomic.Int64

func init() { nextPort.Store(rand.Int64N(portRange)) }

// freePort returns a port on ip that nothing listens on now.
func freePort(t testing.TB, ip string) string {
	t.Helper()
	for range portRange {
		p := strconv.FormatInt(portBase+nextPort.Add(1)%portRange, 10)
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, p))
		if err != nil {
			continue
		}
		ln.Close()
		return p
	}
	t.Fatalf("no free port on %s in %d-%d", ip, portBase, portBase+portRange-1)
	return ""
}

// NewMember prepares (does not start) a member on ip.
func NewMember(t testing.TB, name, ip string) *Member {
	return &Member{
		Name: name, IP: ip,
		PeerURL:   "http://" + ip + ":" + freePort(t, ip),
		ClientURL: "http://" + ip + ":" + freePort(t, ip),
		DataDir:   filepath.Join(t.TempDir(), name),
		logs:      &lockedBuffer{},
	}
}

// Start starts a new cluster and waits until it is healthy.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Size == 0 {
		o.Size = 3
	}
	c := &Cluster{t: t, Token: fmt.Sprintf("e2e-%d", time.Now().UnixNano()), Extra: o.Extra, Tags: o.Tags}
	for i := 0; i < o.Size; i++ {
		c.Members = append(c.Members, NewMember(t, fmt.Sprintf("m%d", i+1), fmt.Sprintf("127.0.0.%d", i+1)))
	}
	t.Cleanup(c.Stop)
	if o.PeerProxy {
		for _, m := range c.Members {
			AddPeerProxy(t, m)
		}
	}
	for _, m := range c.Members {
		c.StartMember(m, "new")
	}
	c.WaitHealthy()
	return c
}

// InitialCluster is the --initial-cluster value for ms.
func InitialCluster(ms []*Member) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, m.Name+"="+m.PeerURL)
	}
	return strings.Join(parts, ",")
}

// Args returns the flags that start m in this cluster.
func (c *Cluster) Args(m *Member, state string) []string {
	listen := m.PeerURL
	if m.ListenPeerURL != "" {
		listen = m.ListenPeerURL
	}
	args := []string{
		"--name=" + m.Name, "--data-dir=" + m.DataDir,
		"--listen-peer-urls=" + listen, "--initial-advertise-peer-urls=" + m.PeerURL,
		"--listen-client-urls=" + m.ClientURL, "--advertise-client-urls=" + m.ClientURL,
		"--initial-cluster=" + InitialCluster(c.Members), "--initial-cluster-state=" + state,
		"--initial-cluster-token=" + c.Token,
		"--heartbeat-interval=50", "--election-timeout=500", "--log-level=info",
	}
	if v := os.Getenv("CAIRNTEST_GRPC_SERVER"); v != "" {
		// The suites again with another gRPC server transport (make
		// test runs them with grpc-go's).
		args = append(args, "--grpc-server="+v)
	}
	return append(args, c.Extra...)
}

// StartMember starts m's process with --initial-cluster-state state.
func (c *Cluster) StartMember(m *Member, state string) {
	c.t.Helper()
	cmd := exec.Command(BinaryWithTags(c.t, c.Tags), c.Args(m, state)...)
	cmd.Env = append(memberEnv(), m.Env...)
	cmd.Stdout = m.logs
	cmd.Stderr = m.logs
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", m.Name, err)
	}
	m.cmd = cmd
	m.exited = make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(m.exited)
}

// memberEnv is the test's environment without CAIRN_* variables, so the
// flags alone configure a member.
func memberEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAIRN_") {
			env = append(env, kv)
		}
	}
	return env
}

// Kill sends SIGKILL to m and waits for it to exit.
func (c *Cluster) Kill(m *Member) { c.signal(m, syscall.SIGKILL) }

// Terminate sends SIGTERM to m and waits for it to exit.
func (c *Cluster) Terminate(m *Member) { c.signal(m, syscall.SIGTERM) }

func (c *Cluster) signal(m *Member, sig syscall.Signal) {
	c.t.Helper()
	if !m.Running() {
		return
	}
	_ = m.cmd.Process.Signal(sig)
	select {
	case <-m.exited:
	case <-time.After(20 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
		c.t.Errorf("%s did not exit within 20s of %v", m.Name, sig)
	}
}

// Stop terminates every member; it is the test's cleanup.
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		if m.Running() {
			_ = m.cmd.Process.Signal(syscall.SIGCONT) // a paused member cannot act on SIGTERM
			_ = m.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, m := range c.Members {
		if m.cmd == nil {
			continue
		}
		select {
		case <-m.exited:
		case <-time.After(20 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.exited
		}
	}
	if c.t.Failed() {
		for _, m := range c.Members {
			c.t.Logf("---- %s log tail ----\n%s", m.Name, tail(m.Logs(), 40))
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Endpoints returns the client URLs of the running members.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		if m.Running() {
			out = append(out, m.ClientURL)
		}
	}
	return out
}

// WaitHealthy waits until every running member answers /health with true.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		for !Healthy(m.ClientURL) {
			if time.Now().After(deadline) || !m.Running() {
				c.t.Fatalf("%s not healthy within 30s\n%s", m.Name, tail(m.Logs(), 40))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// Healthy reports whether GET url/health answers {"health":"true"}.
func Healthy(url string) bool {
	cl := &http.Client{Timeout: 3 * time.Second}
	resp, err := cl.Get(url + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode == 200 && strings.Contains(b.String(), `"health":"true"`)
}

// Client returns an official etcd client for the given endpoints (all
// running members if none), closed by the test's cleanup.
func (c *Cluster) Client(endpoints ...string) *clientv3.Client {
	c.t.Helper()
	if len(endpoints) == 0 {
		endpoints = c.Endpoints()
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		c.t.Fatalf("client: %v", err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// Context returns a context bounded by d and canceled at cleanup.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
