package replica

import (
	"sync"
	"time"
)

// A session's expiry is a wall-clock time (its last access plus its idle
// timeout, or its absolute deadline), since it must mean the same on
// every node. But a node's wall clock can step: an operator or NTP sets it
// an hour ahead, and a node that read it as is would sweep every live
// session as expired, and stamp the sessions it writes with times an hour
// off. So the engine reads the wall clock through expiryClock: it follows
// the system's wall clock while that moves at the pace of the monotonic
// clock (within stepTolerance), and when the wall clock steps it keeps
// counting on the monotonic clock and slews toward the new wall time at
// most slewRate of the time that passes. A step therefore neither expires
// live sessions early nor keeps them much longer: an hour's step is
// absorbed over a hundred hours, during which this node's idea of the
// time is off from the system's by what remains of it.

// stepTolerance is how far the wall clock may stray from the monotonic
// clock's count before it is taken to have stepped.
const stepTolerance = time.Second

// slewRate is how fast the engine's wall time converges on a stepped
// wall clock: this fraction of the time that passes.
const slewRate = 0.01

// expiryClock is the wall clock as the engine reads it. It is safe for
// concurrent use.
type expiryClock struct {
	mu       sync.Mutex
	started  bool
	at       time.Time     // the engine's wall time at the last reading
	mono     time.Duration // the monotonic reading then
	stepping bool          // the wall clock is off by more than stepTolerance
}

// read returns the engine's wall time given the system's wall clock and
// the monotonic clock now, and whether the wall clock was just found to
// have stepped (once per step, for the caller to log).
func (c *expiryClock) read(wall time.Time, mono time.Duration) (now time.Time, stepped bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started || mono < c.mono {
		c.started, c.at, c.mono = true, wall, mono
		return wall, false
	}
	passed := mono - c.mono
	expected := c.at.Add(passed)
	off := wall.Sub(expected)
	if off.Abs() <= stepTolerance {
		c.at, c.mono, c.stepping = wall, mono, false
		return wall, false
	}
	slew := time.Duration(float64(passed) * slewRate)
	now = expected.Add(min(max(off, -slew), slew))
	stepped = !c.stepping
	c.at, c.mono, c.stepping = now, mono, true
	return now, stepped
}

// Wall returns the node's wall time as its expiry and write stamps read
// it: Config.Now, kept from steps. A time a client gives as an age (as
// Idempotency-Age) is turned into one on this clock.
func (n *Node) Wall() time.Time { return n.wall() }

// wall returns the engine's wall time: Config.Now, kept from steps.
func (n *Node) wall() time.Time {
	now, stepped := n.expiry.read(n.cfg.Now(), n.mono())
	if stepped {
		n.log.Warn("the wall clock stepped; expiry and last-access times follow the monotonic clock and converge on the wall clock slowly",
			"wall", n.cfg.Now(), "engine", now, "slew_rate", slewRate)
	}
	return now
}
