package main

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildBinary builds cairn into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cairn")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}

func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)

	t.Run("help lists flags and environment variables", func(t *testing.T) {
		out, err := exec.Command(bin, "--help").CombinedOutput()
		if err != nil {
			t.Fatalf("--help: %v\n%s", err, out)
		}
		for _, want := range []string{"--initial-cluster", "CAIRN_INITIAL_CLUSTER", "--election-timeout", "--config-file"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("--help output lacks %q", want)
			}
		}
	})

	t.Run("bad flags stop with a message that says what to fix", func(t *testing.T) {
		cmd := exec.Command(bin, "--heartbeat-interval=100", "--election-timeout=200", "--data-dir="+t.TempDir())
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Fatalf("exit = %v, want status 2\n%s", err, out)
		}
		if !strings.Contains(string(out), "election-timeout") {
			t.Fatalf("message does not name the flag:\n%s", out)
		}
	})

	t.Run("starts, serves health, stops on SIGTERM", func(t *testing.T) {
		dir := t.TempDir()
		client := "http://127.0.0.1:" + freePort(t)
		peer := "http://127.0.0.1:" + freePort(t)
		cmd := exec.Command(bin, "--data-dir="+filepath.Join(dir, "d"),
			"--listen-client-urls="+client, "--advertise-client-urls="+client,
			"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer)
		var logs strings.Builder
		cmd.Stderr = &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		done := make(chan struct{})
		go func() {
			exited <- cmd.Wait()
			close(done)
		}()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-done
		})
		deadline := time.Now().Add(20 * time.Second)
		var health map[string]string
		for {
			resp, err := http.Get(client + "/health")
			if err == nil {
				health = map[string]string{}
				_ = json.NewDecoder(resp.Body).Decode(&health)
				resp.Body.Close()
				if health["health"] == "true" {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("member not healthy within 20s (last %v, %v)\n%s", health, err, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no exit within 10s of SIGTERM")
		}
		if !strings.Contains(logs.String(), "member stopped") {
			t.Fatalf("no clean stop in the log:\n%s", logs.String())
		}
		if _, err := os.Stat(filepath.Join(dir, "d", "member", "wal")); err != nil {
			t.Fatalf("no WAL in the data dir: %v", err)
		}
	})
}

// The member runs one processor more than the runtime's default, unless
// GOMAXPROCS is set (0 leaves the runtime's number as it is).
func TestProcs(t *testing.T) {
	for _, c := range []struct {
		env       string
		cur, want int
	}{
		{"", 2, 3},
		{"", 1, 2},
		{"2", 2, 0},
		{"5", 5, 0},
	} {
		if got := procs(c.env, c.cur); got != c.want {
			t.Errorf("procs(%q, %d) = %d, want %d", c.env, c.cur, got, c.want)
		}
	}
}
