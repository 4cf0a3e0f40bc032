package replica

import (
	"sync/atomic"
	"time"
)

// latencyBounds are the upper bounds of Latency's buckets, ascending: from
// half a millisecond (a write between two nodes on one LAN) to 5 s (the
// default request timeout), about 2.5× apart.
var latencyBounds = [...]time.Duration{
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

// LatencyBounds returns the upper bounds of Latency's buckets, ascending.
func LatencyBounds() []time.Duration { return latencyBounds[:] }

// Latency counts durations into the buckets of LatencyBounds, like the
// counters of Stats: Observe takes no lock and allocates nothing.
type Latency struct {
	// counts[i] counts durations no longer than latencyBounds[i] and
	// longer than the bound before; the last, those longer than every
	// bound.
	counts [len(latencyBounds) + 1]atomic.Uint64
	sum    atomic.Int64 // nanoseconds
}

// Observe counts one duration.
func (l *Latency) Observe(d time.Duration) {
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	l.counts[i].Add(1)
	l.sum.Add(int64(d))
}

// Snapshot returns the count in each bucket (one more than
// LatencyBounds: the last counts durations beyond every bound) and the sum
// of the durations. Buckets are read one at a time: the snapshot is not
// atomic across them.
func (l *Latency) Snapshot() (counts []uint64, sum time.Duration) {
	counts = make([]uint64, len(l.counts))
	for i := range l.counts {
		counts[i] = l.counts[i].Load()
	}
	return counts, time.Duration(l.sum.Load())
}
