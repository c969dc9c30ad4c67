package main

import (
	"os"
	"strings"
	"testing"
)

// testdata/etcd-benchmark-put.txt is the standard output of a real run:
// `benchmark --endpoints 127.0.0.2:24379 --clients 64 --conns 8 --precise
// put --key-size 8 --val-size 256 --key-space-size 100000 --total 5000`
// against a one-member cairn (etcd v3.7.1's tool).
func TestParseEtcdBenchmark(t *testing.T) {
	out, err := os.ReadFile("testdata/etcd-benchmark-put.txt")
	if err != nil {
		t.Fatal(err)
	}
	r, err := parseEtcdBenchmark(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.PerSecond != 8868.1 || r.Seconds != 0.56382037 || r.Requests != 5000 || r.Errors != 0 {
		t.Errorf("per second %v, seconds %v, requests %d, errors %d; want 8868.1, 0.56382037, 5000, 0", r.PerSecond, r.Seconds, r.Requests, r.Errors)
	}
	if r.P50Ms != 5.798 || r.P90Ms != 12.385 || r.P99Ms != 22.344 || r.P999Ms != 23.755 || r.MeanMs != 7.006 || r.MaxMs != 25.954 {
		t.Errorf("p50/p90/p99/p99.9/mean/max ms = %v/%v/%v/%v/%v/%v, want 5.798/12.385/22.344/23.755/7.006/25.954",
			r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms, r.MeanMs, r.MaxMs)
	}

	// The error distribution, as etcd's report package prints it after the
	// latencies.
	withErrs := string(out) + "\nError distribution:\n  [3]\trpc error: code = Unavailable desc = x\n  [2]\tcontext deadline exceeded\n"
	r, err = parseEtcdBenchmark([]byte(withErrs))
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 5 || len(r.ErrorSamples) != 2 || r.ErrorSamples[1] != "context deadline exceeded" {
		t.Errorf("errors %d, samples %q; want 5 and two samples", r.Errors, r.ErrorSamples)
	}

	for name, bad := range map[string]string{
		"empty":                "",
		"only errors":          "\nError distribution:\n  [10]\tconnection refused\n",
		"no 99th percentile":   strings.Replace(string(out), "  99% in", "  98% in", 1),
		"garbled rate":         strings.Replace(string(out), "Requests/sec:\t8868", "Requests/sec:\tx8868", 1),
		"negative latency":     strings.Replace(string(out), "50% in 0.005798236", "50% in -0.005798236", 1),
		"latency without unit": strings.Replace(string(out), "50% in 0.005798236 secs.", "50% in 0.005798236", 1),
		"garbled error count":  string(out) + "\nError distribution:\n  [x]\tboom\n",
		"infinite total":       strings.Replace(string(out), "Total:\t0.56382037", "Total:\t+Inf", 1),
	} {
		if _, err := parseEtcdBenchmark([]byte(bad)); err == nil {
			t.Errorf("%s: parsed without an error", name)
		}
	}
}

func FuzzParseEtcdBenchmark(f *testing.F) {
	if out, err := os.ReadFile("testdata/etcd-benchmark-put.txt"); err == nil {
		f.Add(out)
	}
	f.Add([]byte("\nError distribution:\n  [1]\tx\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseEtcdBenchmark(b)
		if err != nil {
			return
		}
		for _, v := range []float64{r.PerSecond, r.Seconds, r.P50Ms, r.P99Ms} {
			if v < 0 || v != v {
				t.Fatalf("accepted a report with a negative or NaN figure: %+v", r)
			}
		}
	})
}
