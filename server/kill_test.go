package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/server"
	"github.com/cairn-kv/cairn/server/config"
)

// The child side of TestKill9LosesNoAcknowledgedWrite: a member process that
// either writes keys and prints each acknowledged one ("write"), or prints
// every key it holds ("verify").
const (
	envKillMode = "CAIRN_KILL_TEST_MODE"
	envKillDir  = "CAIRN_KILL_TEST_DIR"
	envKillPeer = "CAIRN_KILL_TEST_PEER"
	envKillCli  = "CAIRN_KILL_TEST_CLIENT"
	envKillTag  = "CAIRN_KILL_TEST_TAG"
)

func killChild(t *testing.T, mode string) {
	dir, peer, client := os.Getenv(envKillDir), os.Getenv(envKillPeer), os.Getenv(envKillCli)
	cfg, err := config.Parse([]string{
		"--name=solo", "--data-dir=" + dir,
		"--listen-peer-urls=" + peer, "--initial-advertise-peer-urls=" + peer,
		"--listen-client-urls=" + client, "--advertise-client-urls=" + client,
		"--initial-cluster=solo=" + peer, "--snapshot-count=50",
		"--heartbeat-interval=20", "--election-timeout=200",
	}, nil, io.Discard)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	srv, err := server.New(context.Background(), cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err == nil {
		err = srv.Start(server.ClientAPI{})
	}
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	deadline := time.Now().Add(20 * time.Second)
	for srv.Leader() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	out := bufio.NewWriter(os.Stdout)
	switch mode {
	case "write":
		tag := os.Getenv(envKillTag)
		for i := 0; i < 1_000_000; i++ {
			k := fmt.Sprintf("kill/%s/%06d", tag, i)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := srv.Put(ctx, &pb.PutRequest{Key: []byte(k), Value: []byte(k)})
			cancel()
			if err != nil {
				continue
			}
			fmt.Fprintln(out, "ack", k)
			out.Flush()
		}
	case "verify":
		resp, err := srv.Range(context.Background(), &pb.RangeRequest{Key: []byte("kill/"), RangeEnd: []byte("kill0")})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(3)
		}
		for _, kv := range resp.Kvs {
			if string(kv.Key) != string(kv.Value) {
				fmt.Fprintln(out, "bad", string(kv.Key))
			}
			fmt.Fprintln(out, "have", string(kv.Key))
		}
		fmt.Fprintln(out, "done")
		out.Flush()
		srv.Stop()
	}
	os.Exit(0)
}

func TestKill9LosesNoAcknowledgedWrite(t *testing.T) {
	if mode := os.Getenv(envKillMode); mode != "" {
		killChild(t, mode)
		return
	}
	if testing.Short() {
		t.Skip("starts member processes")
	}
	dir := filepath.Join(t.TempDir(), "solo")
	peer := "http://127.0.0.1:" + freePort(t, "127.0.0.1")
	client := "http://127.0.0.1:" + freePort(t, "127.0.0.1")
	child := func(mode, tag string) (*exec.Cmd, *bufio.Scanner, *strings.Builder) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKill9LosesNoAcknowledgedWrite$")
		cmd.Env = append(os.Environ(), envKillMode+"="+mode, envKillDir+"="+dir,
			envKillPeer+"="+peer, envKillCli+"="+client, envKillTag+"="+tag)
		stderr := &strings.Builder{}
		cmd.Stderr = stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		})
		return cmd, bufio.NewScanner(stdout), stderr
	}

	acked := map[string]bool{}
	for round := 0; round < 3; round++ {
		cmd, sc, stderr := child("write", fmt.Sprint(round))
		want := 150 + 70*round // kill at a different point each round
		n := 0
		for n < want && sc.Scan() {
			line := sc.Text()
			if k, ok := strings.CutPrefix(line, "ack "); ok {
				acked[k] = true
				n++
			} else if strings.HasPrefix(line, "error") {
				t.Fatalf("round %d: child: %s\n%s", round, line, tail(stderr.String(), 30))
			}
		}
		if n < want {
			t.Fatalf("round %d: child stopped after %d acks\n%s", round, n, tail(stderr.String(), 30))
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
	}

	cmd, sc, stderr := child("verify", "")
	have := map[string]bool{}
	done := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "have "):
			have[strings.TrimPrefix(line, "have ")] = true
		case strings.HasPrefix(line, "bad "), strings.HasPrefix(line, "error"):
			t.Fatalf("verify: %s", line)
		case line == "done":
			done = true
		}
	}
	_ = cmd.Wait()
	if !done {
		t.Fatalf("verify child did not finish\n%s", tail(stderr.String(), 30))
	}
	for k := range acked {
		if !have[k] {
			t.Fatalf("acknowledged write %s lost after kill -9 (%d acked, %d present)", k, len(acked), len(have))
		}
	}
	if !strings.Contains(stderr.String(), "restarting member") {
		t.Fatal("verify child did not restart from the existing data dir")
	}
	t.Logf("%d acknowledged writes, %d present after 3 kill -9 and restarts", len(acked), len(have))
}
