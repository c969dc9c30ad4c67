package framework

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// NewJoiningMember prepares a member on ip that will join the running
// cluster. It becomes part of c.Members at once (so --initial-cluster lists
// it, every member's Args include it, and Stop stops it) but is not started:
// add it through the Cluster API (MemberAdd or MemberAddAsLearner with
// m.PeerURL) first, then c.StartMember(m, "existing").
func (c *Cluster) NewJoiningMember(name, ip string) *Member {
	c.t.Helper()
	m := NewMember(c.t, name, ip)
	c.Members = append(c.Members, m)
	return m
}

// WaitExit waits until m's process has exited by itself (for example after
// its removal from the cluster), failing the test after d.
func (c *Cluster) WaitExit(m *Member, d time.Duration) {
	c.t.Helper()
	if m.cmd == nil {
		return
	}
	select {
	case <-m.exited:
	case <-time.After(d):
		c.t.Fatalf("%s still running after %v", m.Name, d)
	}
}

// HTTPGet fetches url with a short timeout and returns the status code and
// body.
func HTTPGet(t testing.TB, url string) (int, string) {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// RemoveStopped drops a stopped member (for example one removed from the
// cluster) from c.Members, so later members' --initial-cluster no longer
// lists it. Its logs stay readable through m.
func (c *Cluster) RemoveStopped(m *Member) {
	c.t.Helper()
	if m.Running() {
		c.t.Fatalf("RemoveStopped: %s is running", m.Name)
	}
	for i, x := range c.Members {
		if x == m {
			c.Members = append(c.Members[:i], c.Members[i+1:]...)
			return
		}
	}
}
