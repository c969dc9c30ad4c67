package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketsCoverEveryValueOnce(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 1<<40 + 12345, math.MaxInt64} {
		i := bucketOf(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d out of range", v, i)
		}
		if i < prev {
			t.Fatalf("bucketOf not monotonic at %d", v)
		}
		prev = i
		lo, w := bucketRange(i)
		if v < lo || v-lo >= w {
			t.Fatalf("value %d not in bucket %d = [%d, %d+%d)", v, i, lo, lo, w)
		}
		if v >= histSub && float64(w)/float64(lo) > 1.0/64+1e-12 {
			t.Fatalf("bucket %d too wide: %d at %d", i, w, lo)
		}
	}
	// Adjacent buckets tile the line.
	for i := 0; i < histBuckets-1; i++ {
		lo, w := bucketRange(i)
		next, _ := bucketRange(i + 1)
		if lo+w != next {
			t.Fatalf("gap after bucket %d: [%d,+%d) then %d", i, lo, w, next)
		}
	}
}

func exactPercentile(sorted []int64, q float64) int64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = max(rank, 1)
	return sorted[rank-1]
}

func TestPercentilesWithinOnePercentOfExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var a, b Histogram // Merge must give the same answer as one histogram
	var samples []int64
	for i := range 100000 {
		// Log-normal-ish latencies from 50 µs to ~1 s.
		v := int64(50e3 * math.Exp(rng.NormFloat64()*1.5+1))
		samples = append(samples, v)
		h.Record(time.Duration(v))
		if i%3 == 0 {
			a.Record(time.Duration(v))
		} else {
			b.Record(time.Duration(v))
		}
	}
	a.Merge(&b)
	slices.Sort(samples)
	for _, q := range []float64{0.001, 0.5, 0.9, 0.99, 0.999, 1} {
		want := exactPercentile(samples, q)
		got := int64(h.Percentile(q))
		if math.Abs(float64(got-want))/float64(want) > 0.01 {
			t.Errorf("p%v = %d, exact %d", q*100, got, want)
		}
		if m := int64(a.Percentile(q)); m != got {
			t.Errorf("merged p%v = %d, single histogram %d", q*100, m, got)
		}
	}
	if h.Count() != uint64(len(samples)) || a.Count() != h.Count() {
		t.Fatalf("count %d/%d, want %d", h.Count(), a.Count(), len(samples))
	}
	if h.Max() != time.Duration(samples[len(samples)-1]) {
		t.Fatalf("max %v, want %d", h.Max(), samples[len(samples)-1])
	}
}

func TestPercentileSmallSetsAreExact(t *testing.T) {
	var h Histogram
	if h.Percentile(0.5) != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram must report 0")
	}
	for _, v := range []time.Duration{10, 20, 30, 40, 100} {
		h.Record(v)
	}
	cases := map[float64]time.Duration{0.2: 10, 0.5: 30, 0.8: 40, 0.99: 100, 1: 100}
	for q, want := range cases {
		if got := h.Percentile(q); got != want {
			t.Errorf("p%v = %v, want %v", q*100, got, want)
		}
	}
	if h.Mean() != 40 {
		t.Errorf("mean %v, want 40", h.Mean())
	}
}
