package replica

import (
	"sync/atomic"
	"testing"
	"time"
)

// The engine's wall time follows the wall clock while it keeps pace with
// the monotonic clock, and keeps counting on the monotonic clock through a
// step either way, converging on the stepped wall clock at slewRate.
func TestExpiryClockRidesOutSteps(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type reading struct {
		wall        time.Duration // system wall clock, after t0
		mono        time.Duration
		want        time.Duration // engine's wall time, after t0
		wantStepped bool
	}
	cases := []struct {
		name     string
		readings []reading
	}{
		{"follows a steady clock", []reading{{0, 0, 0, false}, {10 * time.Second, 10 * time.Second, 10 * time.Second, false}}},
		{"follows drift within the tolerance", []reading{{0, 0, 0, false}, {10*time.Second + 500*time.Millisecond, 10 * time.Second, 10*time.Second + 500*time.Millisecond, false}}},
		{"a step ahead is not followed at once", []reading{
			{0, 0, 0, false},
			{time.Hour + 10*time.Second, 10 * time.Second, 10*time.Second + 100*time.Millisecond, true}, // 1% of 10s slewed
			{time.Hour + 20*time.Second, 20 * time.Second, 20*time.Second + 200*time.Millisecond, false},
		}},
		{"a step back is not followed at once", []reading{
			{0, 0, 0, false},
			{-time.Hour + 10*time.Second, 10 * time.Second, 10*time.Second - 100*time.Millisecond, true},
		}},
		{"a step undone ends the stepping", []reading{
			{0, 0, 0, false},
			{time.Hour + 10*time.Second, 10 * time.Second, 10*time.Second + 100*time.Millisecond, true},
			{20 * time.Second, 20 * time.Second, 20 * time.Second, false},
			{time.Hour + 30*time.Second, 30 * time.Second, 30*time.Second + 100*time.Millisecond, true}, // a new step is reported again
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c expiryClock
			for i, r := range tc.readings {
				got, stepped := c.read(t0.Add(r.wall), r.mono)
				if got.Sub(t0) != r.want || stepped != r.wantStepped {
					t.Fatalf("reading %d (wall %v, mono %v): %v stepped=%v, want %v stepped=%v", i, r.wall, r.mono, got.Sub(t0), stepped, r.want, r.wantStepped)
				}
			}
		})
	}
}

// A node whose wall clock steps an hour ahead expires nothing early: the
// session it holds, with a 30-minute idle timeout, stays readable through
// it and on its buddy, and the sweep keeps it.
func TestAWallClockStepExpiresNothingEarly(t *testing.T) {
	var skew atomic.Int64
	c := newTestCluster(t, 3, func(cfg *Config) {
		if cfg.Name == "node-0" {
			cluster := cfg.Now // the cluster's wall clock
			cfg.Now = func() time.Time { return cluster().Add(time.Duration(skew.Load())) }
		}
	})
	x := c.node("node-0")
	id := idOwnedBy(t, x, true)
	put(t, x, id, "v", 1) // idle timeout: the default 30 minutes
	_, buddy := c.ownersOf(id)
	p := x.Table().Partition(id)
	x.wall() // the clock as it was
	skew.Store(int64(time.Hour))
	c.sleep(10 * time.Millisecond)
	for range 3 {
		x.sweep() // would remove the copy if it trusted the stepped clock
	}
	if got := x.store.get(p, id); got == nil || got.Deleted {
		t.Fatalf("after the step the primary holds %+v, want the live session", got)
	}
	if s, err := x.Get(testCtx(t), id, true); err != nil || s.Version != 1 {
		t.Fatalf("read through the stepped node: %+v %v", s, err)
	}
	if got := buddy.store.get(p, id); got == nil || got.Deleted {
		t.Fatalf("the buddy holds %+v, want the live session", got)
	}
}
