package bench

import (
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestParseArgsDefaultsAndFlags(t *testing.T) {
	cfg, asJSON, err := ParseArgs([]string{"range", "--endpoints", "a:1, b:2", "--consistency", "s",
		"--total", "10", "--duration", "3s", "--clients", "4", "--conns", "2", "--sequential-keys", "--json"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !asJSON || cfg.Scenario != "range" || cfg.Consistency != "s" || cfg.Total != 10 ||
		cfg.Duration != 3*time.Second || cfg.Clients != 4 || cfg.Conns != 2 || !cfg.Sequential {
		t.Fatalf("flags not applied: %+v json=%v", cfg, asJSON)
	}
	if strings.Join(cfg.Endpoints, "|") != "a:1|b:2" {
		t.Fatalf("endpoints %q", cfg.Endpoints)
	}
	d := DefaultConfig()
	if cfg.KeySize != d.KeySize || cfg.ValSize != d.ValSize || cfg.KeySpace != d.KeySpace {
		t.Fatalf("defaults lost: %+v", cfg)
	}
	w, _, err := ParseArgs([]string{"watch", "--puts", "7"}, io.Discard)
	if err != nil || w.Total != 7 {
		t.Fatalf("--puts: total %d err %v", w.Total, err)
	}
}

func TestParseArgsRejects(t *testing.T) {
	cases := map[string][]string{
		"no bound":           {"put"},
		"unknown scenario":   {"delete", "--total", "1"},
		"zero clients":       {"put", "--total", "1", "--clients", "0"},
		"zero conns":         {"put", "--total", "1", "--conns", "0"},
		"negative total":     {"put", "--total", "-1"},
		"bad consistency":    {"range", "--total", "1", "--consistency", "x"},
		"key too small":      {"put", "--total", "1", "--key-size", "3", "--key-space", "100000"},
		"watch too few keys": {"watch", "--puts", "1", "--watched-keys", "10", "--key-space", "5"},
		"watch value small":  {"watch", "--puts", "1", "--val-size", "4"},
		"stray argument":     {"put", "--total", "1", "extra"},
		"no endpoints":       {"put", "--total", "1", "--endpoints", ""},
		"zero txn ops":       {"txn-put", "--total", "1", "--txn-ops", "0"},
		"zero lease ttl":     {"lease-keepalive", "--total", "1", "--lease-ttl", "0"},
		"zero req timeout":   {"put", "--total", "1", "--request-timeout", "0s"},
		"zero dial timeout":  {"put", "--total", "1", "--dial-timeout", "0s"},
	}
	for name, args := range cases {
		if _, _, err := ParseArgs(args, io.Discard); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err = %v, want ErrConfig", name, err)
		}
	}
	if _, _, err := ParseArgs([]string{"put", "--nope"}, io.Discard); err == nil {
		t.Error("unknown flag accepted")
	}
	if _, _, err := ParseArgs(nil, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("no args: %v, want help", err)
	}
}

func TestKeyNamesAreFixedSizeAndDistinct(t *testing.T) {
	seen := map[string]bool{}
	for n := range 1000 {
		k := keyName(n, 8)
		if len(k) != 8 || seen[k] {
			t.Fatalf("key %d = %q (len %d, dup %v)", n, k, len(k), seen[k])
		}
		seen[k] = true
	}
}

func TestWatchersOfSumsToWatchers(t *testing.T) {
	for _, c := range []struct{ w, k int }{{1000, 100}, {7, 3}, {3, 7}, {1, 1}} {
		cfg := Config{Watchers: c.w, WatchedKeys: c.k}
		var sum uint64
		for k := range c.k {
			got := watchersOf(&cfg, k)
			var want uint64
			for i := range c.w {
				if i%c.k == k {
					want++
				}
			}
			if got != want {
				t.Fatalf("%d watchers, %d keys: key %d has %d, want %d", c.w, c.k, k, got, want)
			}
			sum += got
		}
		if sum != uint64(c.w) {
			t.Fatalf("sum %d != %d", sum, c.w)
		}
	}
}

// A run against an address where nothing listens ends with an error once
// --dial-timeout has passed, instead of waiting for a connection forever.
func TestRunUnreachableEndsWithError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg, _, err := ParseArgs([]string{"put", "--endpoints", addr, "--total", "10", "--dial-timeout", "300ms"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "--dial-timeout") {
		t.Fatalf("Run = %+v, %v (ctx %v); want the dial-timeout error before the test's deadline", res, err, ctx.Err())
	}
}
