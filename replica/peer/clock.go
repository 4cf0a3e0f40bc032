package peer

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// Clock is the time source of a Network: it reads the time and times the
// delays injected on links. SystemClock is the real one; ManualClock is a
// fake that moves only when a test advances it.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a Timer that sends the time on its channel once d
	// has passed; a d of zero or less fires at once.
	NewTimer(d time.Duration) Timer
}

// Timer is a single pending event of a Clock.
type Timer interface {
	// Chan returns the channel the timer sends the time on when it fires.
	// It receives at most one value.
	Chan() <-chan time.Time
	// Stop prevents the timer from firing. It reports whether it did so:
	// false means the timer had already fired or been stopped.
	Stop() bool
}

// SystemClock returns the real clock: time.Now and time.NewTimer.
func SystemClock() Clock { return systemClock{} }

// systemClock is the Clock backed by package time.
type systemClock struct{}

// Now returns time.Now().
func (systemClock) Now() time.Time { return time.Now() }

// NewTimer wraps time.NewTimer.
func (systemClock) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

// systemTimer is the Timer backed by a *time.Timer.
type systemTimer struct{ t *time.Timer }

// Chan returns the timer's channel.
func (t systemTimer) Chan() <-chan time.Time { return t.t.C }

// Stop stops the timer.
func (t systemTimer) Stop() bool { return t.t.Stop() }

// ManualClock is a fake Clock for tests, in the manner of clockwork's
// FakeClock: its time stands still until Advance moves it, and its timers
// fire only inside Advance, so a test decides exactly when a delay ends
// without sleeping. It is safe for concurrent use.
//
// Timers fire in deadline order, timers with equal deadlines in the order
// they were made, and each receives the clock's time after the advance.
// A test that must not advance before some goroutine has started waiting
// uses BlockUntil.
type ManualClock struct {
	mu      sync.Mutex
	now     time.Time
	pending []*manualTimer // not yet fired nor stopped
	seq     uint64         // creation counter, orders timers with equal deadlines
	changed chan struct{}  // closed and replaced whenever pending changes
}

var _ Clock = (*ManualClock)(nil)

// NewManualClock returns a ManualClock reading start.
func NewManualClock(start time.Time) *ManualClock {
	return &ManualClock{now: start, changed: make(chan struct{})}
}

// Now returns the clock's current time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer firing when Advance takes the clock d or more
// past now. A d of zero or less fires at once and is never pending.
func (c *ManualClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &manualTimer{clock: c, at: c.now.Add(d), ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t
	}
	c.seq++
	t.seq = c.seq
	c.pending = append(c.pending, t)
	c.notify()
	return t
}

// Advance moves the clock forward by d and fires, in deadline order, every
// timer that is then due. It panics if d is negative: the clock never goes
// back.
func (c *ManualClock) Advance(d time.Duration) {
	if d < 0 {
		panic("peer: ManualClock.Advance with a negative duration")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	var due []*manualTimer
	c.pending = slices.DeleteFunc(c.pending, func(t *manualTimer) bool {
		if t.at.After(c.now) {
			return false
		}
		due = append(due, t)
		return true
	})
	if len(due) == 0 {
		return
	}
	slices.SortFunc(due, func(a, b *manualTimer) int {
		if by := a.at.Compare(b.at); by != 0 {
			return by
		}
		return cmp.Compare(a.seq, b.seq)
	})
	for _, t := range due {
		t.ch <- c.now // buffered and sent once: never blocks
	}
	c.notify()
}

// Pending returns the number of timers that have neither fired nor been
// stopped.
func (c *ManualClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// BlockUntil waits until at least n timers are pending, so that a test can
// advance the clock knowing the goroutines it expects are waiting on it. It
// returns nil once they are, or ctx.Err() if ctx ends first.
func (c *ManualClock) BlockUntil(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		enough, changed := len(c.pending) >= n, c.changed
		c.mu.Unlock()
		if enough {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// notify wakes BlockUntil callers after pending changed. Called with mu held.
func (c *ManualClock) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// manualTimer is a Timer of a ManualClock.
type manualTimer struct {
	clock *ManualClock
	at    time.Time // when it fires
	seq   uint64    // creation order, for ties
	ch    chan time.Time
}

// Chan returns the timer's channel.
func (t *manualTimer) Chan() <-chan time.Time { return t.ch }

// Stop removes the timer from the clock's pending set if it is still there.
func (t *manualTimer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.pending, t)
	if i < 0 {
		return false
	}
	c.pending = slices.Delete(c.pending, i, i+1)
	c.notify()
	return true
}

// Next returns when the earliest pending timer fires, and false when none
// is pending.
func (c *ManualClock) Next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return time.Time{}, false
	}
	next := c.pending[0].at
	for _, t := range c.pending[1:] {
		if t.at.Before(next) {
			next = t.at
		}
	}
	return next, true
}

// WithTimeout returns a copy of parent that ends when clock says d has
// passed, as context.WithTimeout does on the system clock (which it uses
// for SystemClock and nil). Its Err is context.DeadlineExceeded once the
// time is up, for contexts derived from it too; its Deadline is parent's,
// since a deadline on another clock means nothing to a socket. Call the
// CancelFunc when done with it.
func WithTimeout(parent context.Context, clock Clock, d time.Duration) (context.Context, context.CancelFunc) {
	if _, system := clock.(systemClock); system || clock == nil {
		return context.WithTimeout(parent, d)
	}
	t := clock.NewTimer(d)
	c := &clockContext{Context: parent, timer: t, done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		select {
		case <-t.Chan():
			c.end(context.DeadlineExceeded)
		case <-parent.Done():
			c.end(parent.Err())
		case <-c.stopped:
		}
	}()
	return c, func() { c.end(context.Canceled) }
}

// clockContext is a context that WithTimeout ends on another clock. It
// has a Done channel of its own, so contexts derived from it take its Err.
type clockContext struct {
	context.Context               // the parent: values and deadline
	timer           Timer         // stopped by end
	done            chan struct{} // closed by end
	stopped         chan struct{} // closed by end: the timer's goroutine returns
	mu              sync.Mutex
	err             error
}

// end records why the context ended and closes Done, the first time only.
func (c *clockContext) end(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	c.timer.Stop()
	close(c.done)
	close(c.stopped)
}

// Done is closed when the time is up, the parent ends or it is cancelled.
func (c *clockContext) Done() <-chan struct{} { return c.done }

// Err says why the context ended, or nil while it lasts.
func (c *clockContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
