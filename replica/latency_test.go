package replica

import (
	"testing"
	"time"
)

// A duration counts in the first bucket whose bound it does not exceed,
// as Prometheus's "le" buckets do.
func TestLatencyBuckets(t *testing.T) {
	bounds := LatencyBounds()
	last := len(bounds)
	for _, tc := range []struct {
		d      time.Duration
		bucket int
	}{
		{0, 0},
		{bounds[0], 0},
		{bounds[0] + 1, 1},
		{time.Millisecond, 1},
		{3 * time.Millisecond, 3},
		{bounds[last-1], last - 1},
		{bounds[last-1] + 1, last},
		{time.Hour, last},
	} {
		var l Latency
		l.Observe(tc.d)
		counts, sum := l.Snapshot()
		if len(counts) != last+1 || sum != tc.d {
			t.Fatalf("%v: %d buckets, sum %v", tc.d, len(counts), sum)
		}
		for i, c := range counts {
			if want := uint64(0); i == tc.bucket && c != 1 || i != tc.bucket && c != want {
				t.Fatalf("%v: counts %v, want it in bucket %d", tc.d, counts, tc.bucket)
			}
		}
	}
	var l Latency
	if n := testing.AllocsPerRun(100, func() { l.Observe(time.Millisecond) }); n != 0 {
		t.Fatalf("Observe allocates %v times", n)
	}
}
