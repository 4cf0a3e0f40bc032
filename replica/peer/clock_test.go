package peer

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// t0 is the instant test clocks start at.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// fired reports whether tm has fired, without waiting, and the time it got.
func fired(tm Timer) (time.Time, bool) {
	select {
	case at := <-tm.Chan():
		return at, true
	default:
		return time.Time{}, false
	}
}

func TestManualClockAdvanceFiresDueTimers(t *testing.T) {
	tests := []struct {
		name     string
		timers   []time.Duration // made at t0
		advances []time.Duration // applied in turn
		want     [][]int         // indexes of timers fired by each advance
	}{
		{"nothing due", []time.Duration{time.Second}, []time.Duration{999 * time.Millisecond}, [][]int{nil}},
		{"exactly due", []time.Duration{time.Second}, []time.Duration{time.Second}, [][]int{{0}}},
		{"in steps", []time.Duration{3 * time.Second, time.Second, 2 * time.Second},
			[]time.Duration{time.Second, 500 * time.Millisecond, 2 * time.Second}, [][]int{{1}, nil, {0, 2}}},
		{"one jump fires all", []time.Duration{time.Millisecond, time.Hour, time.Minute},
			[]time.Duration{24 * time.Hour}, [][]int{{0, 1, 2}}},
		{"zero advance", []time.Duration{time.Nanosecond}, []time.Duration{0, time.Nanosecond}, [][]int{nil, {0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewManualClock(t0)
			var timers []Timer
			for _, d := range tt.timers {
				timers = append(timers, c.NewTimer(d))
			}
			if got := c.Pending(); got != len(tt.timers) {
				t.Fatalf("Pending() = %d, want %d", got, len(tt.timers))
			}
			done := map[int]bool{}
			now := t0
			for step, d := range tt.advances {
				c.Advance(d)
				now = now.Add(d)
				if got := c.Now(); !got.Equal(now) {
					t.Fatalf("after advance %d: Now() = %v, want %v", step, got, now)
				}
				var got []int
				for i, tm := range timers {
					if at, ok := fired(tm); ok {
						if done[i] {
							t.Fatalf("timer %d fired twice", i)
						}
						if !at.Equal(now) {
							t.Errorf("timer %d received %v, want the clock's time %v", i, at, now)
						}
						done[i] = true
						got = append(got, i)
					}
				}
				if !slices.Equal(got, tt.want[step]) {
					t.Errorf("advance %d (%v) fired %v, want %v", step, d, got, tt.want[step])
				}
				if want := len(tt.timers) - len(done); c.Pending() != want {
					t.Errorf("after advance %d: Pending() = %d, want %d", step, c.Pending(), want)
				}
			}
		})
	}
}

func TestManualClockZeroTimerFiresAtOnce(t *testing.T) {
	c := NewManualClock(t0)
	for _, d := range []time.Duration{0, -time.Second} {
		tm := c.NewTimer(d)
		if at, ok := fired(tm); !ok || !at.Equal(t0) {
			t.Errorf("NewTimer(%v): fired %v at %v, want at once at %v", d, ok, at, t0)
		}
		if tm.Stop() {
			t.Errorf("NewTimer(%v): Stop after firing reported true", d)
		}
	}
	if n := c.Pending(); n != 0 {
		t.Errorf("Pending() = %d, want 0", n)
	}
}

func TestManualClockStop(t *testing.T) {
	c := NewManualClock(t0)
	stopped, kept := c.NewTimer(time.Second), c.NewTimer(time.Second)
	if !stopped.Stop() {
		t.Fatal("Stop of a pending timer reported false")
	}
	if stopped.Stop() {
		t.Error("second Stop reported true")
	}
	if n := c.Pending(); n != 1 {
		t.Fatalf("Pending() = %d after one Stop, want 1", n)
	}
	c.Advance(time.Hour)
	if _, ok := fired(stopped); ok {
		t.Error("stopped timer fired")
	}
	if _, ok := fired(kept); !ok {
		t.Error("timer not stopped did not fire")
	}
	if kept.Stop() {
		t.Error("Stop after firing reported true")
	}
}

func TestManualClockAdvanceNegativePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Advance(-1) did not panic")
		}
	}()
	NewManualClock(t0).Advance(-1)
}

func TestManualClockBlockUntil(t *testing.T) {
	c := NewManualClock(t0)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.BlockUntil(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("BlockUntil(1) with no timers and an ended ctx: %v, want context.Canceled", err)
	}
	if err := c.BlockUntil(ctx, 0); err != nil {
		t.Fatalf("BlockUntil(0): %v, want nil at once", err)
	}

	// Goroutines that sleep on the clock; the test advances it only once
	// they all wait, and each must then wake.
	const n = 8
	var wg sync.WaitGroup
	woke := make(chan time.Time, n)
	for i := range n {
		wg.Go(func() {
			woke <- <-c.NewTimer(time.Duration(i+1) * time.Second).Chan()
		})
	}
	if err := c.BlockUntil(callCtx(t), n); err != nil {
		t.Fatalf("BlockUntil(%d): %v", n, err)
	}
	c.Advance(n * time.Second)
	wg.Wait()
	close(woke)
	for at := range woke {
		if want := t0.Add(n * time.Second); !at.Equal(want) {
			t.Errorf("sleeper woke with %v, want %v", at, want)
		}
	}
	if p := c.Pending(); p != 0 {
		t.Errorf("Pending() = %d after all fired, want 0", p)
	}
}

func TestSystemClock(t *testing.T) {
	c := SystemClock()
	before := time.Now()
	if now := c.Now(); now.Before(before) {
		t.Errorf("Now() = %v, before time.Now() %v", now, before)
	}
	if _, ok := <-c.NewTimer(0).Chan(); !ok {
		t.Error("NewTimer(0) channel closed without a value")
	}
	tm := c.NewTimer(time.Hour)
	if !tm.Stop() {
		t.Error("Stop of an hour-long timer reported false")
	}
}
