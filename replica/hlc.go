package replica

import (
	"sync/atomic"
	"time"
)

// hlc is a hybrid logical clock: stamps are the physical time in
// milliseconds shifted left 16 bits, plus a logical counter, and never go
// backwards on one node, even when the wall clock does. Stamps seen from
// other nodes push it forward, so a write that follows another in time gets
// a larger stamp wherever it happens. Stamps break ties between copies of
// one version written on both sides of a network cut. It takes no lock:
// the write path reads it.
type hlc struct {
	last atomic.Uint64
}

// now returns a stamp larger than every stamp this clock has issued or
// observed.
func (c *hlc) now(wall time.Time) uint64 {
	pt := uint64(max(wall.UnixMilli(), 0)) << 16
	for {
		last := c.last.Load()
		next := max(pt, last+1)
		if c.last.CompareAndSwap(last, next) {
			return next
		}
	}
}

// observe moves the clock past a stamp seen from another node.
func (c *hlc) observe(stamp uint64) {
	for {
		last := c.last.Load()
		if stamp <= last || c.last.CompareAndSwap(last, stamp) {
			return
		}
	}
}
