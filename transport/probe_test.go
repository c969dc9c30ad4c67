package transport

import (
	"context"
	"testing"
	"time"
)

func TestProbeMeasuresRTTAndClockOffset(t *testing.T) {
	checkGoroutines(t)
	const skew = 3 * time.Second
	a := startNode(t, 1, testCluster, "127.0.0.1:0")
	b := startNode(t, 2, testCluster, "127.0.0.2:0", func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(skew) }
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := a.tr.ProbeMember(ctx, b.url)
	if err != nil {
		t.Fatal(err)
	}
	if r.MemberID != 2 {
		t.Fatalf("probe says member %x, want 2", r.MemberID)
	}
	if r.RTT <= 0 || r.RTT > time.Second {
		t.Fatalf("rtt %v", r.RTT)
	}
	if d := r.ClockOffset - skew; d < -r.RTT || d > r.RTT {
		t.Fatalf("clock offset %v, want %v ± rtt %v", r.ClockOffset, skew, r.RTT)
	}
	rtt, off, err := b.tr.Probe(ctx, a.url)
	if err != nil || rtt <= 0 {
		t.Fatalf("reverse probe: %v %v", rtt, err)
	}
	if d := off + skew; d < -rtt || d > rtt {
		t.Fatalf("reverse clock offset %v, want %v ± %v", off, -skew, rtt)
	}
}

func TestProbeOtherClusterRejected(t *testing.T) {
	checkGoroutines(t)
	a := startNode(t, 1, 0xaaa, "127.0.0.1:0")
	b := startNode(t, 2, 0xbbb, "127.0.0.2:0")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, _, err := a.tr.Probe(ctx, b.url); !isRejected(err, ErrClusterIDMismatch) {
		t.Fatalf("probe across clusters: %v, want ErrClusterIDMismatch", err)
	}
}
