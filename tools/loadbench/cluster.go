package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// member is one server process (cairn or etcd).
type member struct {
	name, ip, peerURL, clientURL, dataDir string
	cmd                                   *exec.Cmd
	exited                                chan struct{}
	logFile                               *os.File
}

// cluster is the members of one server binary, started together.
type cluster struct {
	name    string // "cairn" or "etcd": prefixes data dirs, logs and token
	bin     string // full path of the server binary
	token   string
	members []*member
}

// handedOut holds every ip:port freePort has returned, so that two clusters
// allocated before either has bound its ports never get the same one.
var handedOut = map[string]bool{}

// freePort returns a port of ip that is free now and was not returned before.
func freePort(ip string) (string, error) {
	for range 100 {
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			return "", err
		}
		addr := ln.Addr().String()
		ln.Close()
		if handedOut[addr] {
			continue
		}
		handedOut[addr] = true
		_, p, _ := net.SplitHostPort(addr)
		return p, nil
	}
	return "", fmt.Errorf("loadbench: no fresh port on %s", ip)
}

// newCluster allocates size members of the server binary bin on 127.0.0.1
// up to 127.0.0.<size>, with data dirs under work named after name.
func newCluster(name, bin, work string, size int) (*cluster, error) {
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	c := &cluster{name: name, bin: bin, token: fmt.Sprintf("loadbench-%s-%d-%d", name, size, time.Now().UnixNano())}
	for i := range size {
		ip := fmt.Sprintf("127.0.0.%d", i+1)
		pp, err := freePort(ip)
		if err != nil {
			return nil, err
		}
		cp, err := freePort(ip)
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("m%d", i+1)
		c.members = append(c.members, &member{
			name: name, ip: ip, peerURL: "http://" + ip + ":" + pp, clientURL: "http://" + ip + ":" + cp,
			dataDir: filepath.Join(work, fmt.Sprintf("%s-c%d-%s", c.name, size, name)),
		})
	}
	return c, nil
}

func (c *cluster) initial() string {
	var parts []string
	for _, m := range c.members {
		parts = append(parts, m.name+"="+m.peerURL)
	}
	return strings.Join(parts, ",")
}

func (c *cluster) start(m *member, state string) error {
	f, err := os.OpenFile(m.dataDir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bin,
		"--name="+m.name, "--data-dir="+m.dataDir,
		"--listen-peer-urls="+m.peerURL, "--initial-advertise-peer-urls="+m.peerURL,
		"--listen-client-urls="+m.clientURL, "--advertise-client-urls="+m.clientURL,
		"--initial-cluster="+c.initial(), "--initial-cluster-state="+state,
		"--initial-cluster-token="+c.token, "--log-level=warn")
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	m.cmd, m.logFile, m.exited = cmd, f, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(m.exited)
	return nil
}

func (c *cluster) startAll() error {
	for _, m := range c.members {
		if err := c.start(m, "new"); err != nil {
			c.stopAll()
			return fmt.Errorf("loadbench: start %s %s: %w", c.name, m.name, err)
		}
	}
	return nil
}

// stop sends SIGTERM to m's PID and waits for it to exit (SIGKILL after 20 s).
func (m *member) stop() {
	if m.cmd == nil {
		return
	}
	select {
	case <-m.exited:
	default:
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.exited:
		case <-time.After(20 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.exited
		}
	}
	m.logFile.Close()
	m.cmd = nil
}

func (c *cluster) stopAll() {
	for _, m := range c.members {
		m.stop()
	}
}

func (c *cluster) endpoints() string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientURL)
	}
	return strings.Join(eps, ",")
}

func healthy(url string) bool {
	cl := &http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(url + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	buf := make([]byte, 256)
	n, _ := resp.Body.Read(buf)
	return resp.StatusCode == 200 && strings.Contains(string(buf[:n]), `"health":"true"`)
}

var errUnhealthy = errors.New("loadbench: member not healthy in time")

// waitHealthy polls every member's /health until it answers true.
func (c *cluster) waitHealthy(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, m := range c.members {
		for !healthy(m.clientURL) {
			select {
			case <-m.exited:
				return fmt.Errorf("%w: %s %s exited; end of its log:\n%s", errUnhealthy, c.name, m.name, m.logTail())
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%w: %s %s after %v", errUnhealthy, c.name, m.name, timeout)
			}
		}
	}
	return nil
}

// logTail returns the last 2 KiB of m's log: the work dir holding it is
// removed when loadbench ends, so errors carry it instead.
func (m *member) logTail() string {
	b, err := os.ReadFile(m.dataDir + ".log")
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return string(b)
}

// statusMiB reads VmRSS (or another /proc/<pid>/status field in kB) of m, in MiB.
func (m *member) statusMiB(field string) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("loadbench: no %s in /proc/%d/status", field, m.cmd.Process.Pid)
}
