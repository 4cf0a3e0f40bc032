package replica

import (
	"sync"
	"time"
)

// hlc is a hybrid logical clock: stamps are the physical time in
// milliseconds shifted left 16 bits, plus a logical counter, and never go
// backwards on one node, even when the wall clock does. Stamps seen from
// other nodes push it forward, so a write that follows another in time gets
// a larger stamp wherever it happens. Stamps break ties between copies of
// one version written on both sides of a network cut.
type hlc struct {
	mu   sync.Mutex
	last uint64
}

// now returns a stamp larger than every stamp this clock has issued or
// observed.
func (c *hlc) now(wall time.Time) uint64 {
	pt := uint64(max(wall.UnixMilli(), 0)) << 16
	c.mu.Lock()
	defer c.mu.Unlock()
	if pt > c.last {
		c.last = pt
	} else {
		c.last++
	}
	return c.last
}

// observe moves the clock past a stamp seen from another node.
func (c *hlc) observe(stamp uint64) {
	c.mu.Lock()
	c.last = max(c.last, stamp)
	c.mu.Unlock()
}
