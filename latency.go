package tandem

import (
	"time"

	"github.com/tandem-io/tandem/replica"
)

// Histogram is a snapshot of durations counted in fixed buckets.
type Histogram struct {
	// Bounds are the buckets' upper bounds, ascending; the same for every
	// Histogram a node returns.
	Bounds []time.Duration
	// Counts has one more entry than Bounds: Counts[i] counts durations
	// no longer than Bounds[i] and longer than Bounds[i-1]; the last,
	// those longer than every bound.
	Counts []uint64
	// Sum adds up every duration counted.
	Sum time.Duration
}

// Count returns how many durations were counted.
func (h Histogram) Count() uint64 {
	var c uint64
	for _, n := range h.Counts {
		c += n
	}
	return c
}

// histogramOf snapshots an engine latency.
func histogramOf(l *replica.Latency) Histogram {
	counts, sum := l.Snapshot()
	return Histogram{Bounds: replica.LatencyBounds(), Counts: counts, Sum: sum}
}

// Latencies are a node's latency histograms since it started. Node.Latencies
// returns a snapshot; httpapi exports them to Prometheus.
type Latencies struct {
	// Ops times the session operations asked of this node (Node.Do, and
	// so the middleware and httpapi), by kind, from the call until its
	// answer: routing, forwarding to the primary, replication and retries
	// included, failures too.
	Ops map[OpKind]Histogram
	// Replication times each write this node sent to the buddy as
	// primary, until the buddy answered or the call failed.
	Replication Histogram
}

// opKinds are the kinds Latencies.Ops holds.
var opKinds = [...]OpKind{OpGet, OpPut, OpPatch, OpDelete, OpTouch}

// opLatencies times Node.Do by kind, indexed by OpKind.
type opLatencies [OpTouch + 1]replica.Latency

// observe counts one operation of kind k; kinds out of range (refused
// as invalid) are not counted.
func (l *opLatencies) observe(k OpKind, d time.Duration) {
	if k >= OpGet && int(k) < len(l) {
		l[k].Observe(d)
	}
}

// Latencies returns a snapshot of the node's latency histograms.
func (n *Node) Latencies() Latencies {
	out := Latencies{Ops: make(map[OpKind]Histogram, len(opKinds)), Replication: histogramOf(&n.replica.Stats().ReplicationLatency)}
	for _, k := range opKinds {
		out.Ops[k] = histogramOf(&n.latency[k])
	}
	return out
}
