package bench

import (
	"math"
	"math/bits"
	"time"
)

// Histogram buckets: values below histSub nanoseconds get a bucket each;
// above, every power of two [2^k, 2^(k+1)) is split into histSub/2 equal
// buckets, so a bucket is at most 1/64 of its values wide. Percentiles
// report the bucket's midpoint, within 0.8% of the exact sample.
const (
	histSubBits = 7
	histSub     = 1 << histSubBits // 128
	histHalf    = histSub / 2      // 64
	histBuckets = histSub + (64-histSubBits)*histHalf
)

// Histogram is an HDR-style latency histogram of fixed size (about 30 KiB)
// whatever the number of samples. It is not safe for concurrent use: each
// load client records into its own and the runner merges them.
type Histogram struct {
	counts   [histBuckets]uint64
	n        uint64
	sum      float64 // nanoseconds
	min, max int64   // nanoseconds; valid when n > 0
}

func bucketOf(v int64) int {
	if v < histSub {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - histSubBits // >= 1
	top := int(v >> shift)                       // in [64, 128)
	return histSub + (shift-1)*histHalf + (top - histHalf)
}

// bucketRange returns the smallest value of bucket i and its width.
func bucketRange(i int) (lo, width int64) {
	if i < histSub {
		return int64(i), 1
	}
	shift := (i-histSub)/histHalf + 1
	top := int64((i-histSub)%histHalf + histHalf)
	return top << shift, 1 << shift
}

// Record adds one sample.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if h.n == 0 || v > h.max {
		h.max = v
	}
	h.n++
	h.sum += float64(v)
}

// Merge adds every sample of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if h.n == 0 || o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of samples.
func (h *Histogram) Count() uint64 { return h.n }

// Mean returns the mean sample, 0 without samples.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Max returns the largest sample, 0 without samples.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Percentile returns the q-quantile (0 < q <= 1) by the nearest-rank
// method: the smallest sample with at least q of all samples at or below
// it, to the bucket's precision, clamped to the exact minimum and maximum.
func (h *Histogram) Percentile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	rank = min(rank, h.n)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen < rank {
			continue
		}
		lo, w := bucketRange(i)
		v := lo + (w-1)/2
		v = max(v, h.min)
		v = min(v, h.max)
		return time.Duration(v)
	}
	return time.Duration(h.max)
}
