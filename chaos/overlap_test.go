package chaos

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeNemesis returns a nemesis that injects into nothing: faults hold
// for a hundredth of their duration, and the cluster recovers (is seen
// healthy) 20ms after it is asked to. inject records which nodes hold a
// crash at once.
func fakeNemesis(overlap float64, maxFaults int) (*Nemesis, *int) {
	sched := NewSchedule(7, ScheduleConfig{Nodes: 5, Overlap: overlap})
	n := NewNemesis(nil, sched, NewHistory(), NemesisConfig{Overlap: overlap > 0, MaxFaults: maxFaults, RecoverTimeout: 5 * time.Second})
	n.dilate = func(d time.Duration) time.Duration { return d / 100 }
	var mu sync.Mutex
	holding, most := 0, new(int)
	n.injectFn = func(context.Context, Fault) (func(context.Context) error, error) {
		mu.Lock()
		holding++
		*most = max(*most, holding)
		mu.Unlock()
		return func(context.Context) error {
			mu.Lock()
			holding--
			mu.Unlock()
			return nil
		}, nil
	}
	n.recoverFn = func(ctx context.Context, _ func(int) bool) error {
		select {
		case <-time.After(20 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return n, most
}

func TestOverlapOneStartsEveryFaultBeforeThePreviousRecovered(t *testing.T) {
	n, most := fakeNemesis(1, 12)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n.Run(ctx)
	evs := n.Events()
	if len(evs) != 12 {
		t.Fatalf("%d faults, want 12", len(evs))
	}
	for i, e := range evs {
		if e.Fault.Seq != i || e.End < e.Start || e.Recovered == 0 || e.Recovered < e.End {
			t.Fatalf("fault %d: %+v", i, e)
		}
		if i == 0 {
			continue
		}
		prev := evs[i-1]
		if !e.Fault.Overlap {
			t.Fatalf("fault %d not marked overlapping: %v", i, e.Fault)
		}
		if e.Start >= prev.Recovered {
			t.Errorf("fault %d (%v) started at %v, after fault %d recovered at %v", i, e.Fault, e.Start, i-1, prev.Recovered)
		}
		if e.Fault.Node == prev.Fault.Node {
			t.Errorf("faults %d and %d both attack n%d", i-1, i, e.Fault.Node+1)
		}
		if i >= 2 && e.Start < evs[i-2].End {
			t.Errorf("fault %d started at %v while fault %d held (healed at %v): three at once", i, e.Start, i-2, evs[i-2].End)
		}
	}
	if *most > 2 {
		t.Errorf("%d faults held at once, want at most 2", *most)
	}
	if *most < 2 {
		t.Errorf("never two faults at once")
	}
}

func TestOverlapZeroWaitsForRecovery(t *testing.T) {
	n, most := fakeNemesis(0, 6)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n.Run(ctx)
	evs := n.Events()
	if len(evs) != 6 {
		t.Fatalf("%d faults, want 6", len(evs))
	}
	for i := 1; i < len(evs); i++ {
		if evs[i].Fault.Overlap || evs[i].Start < evs[i-1].Recovered {
			t.Errorf("fault %d (%v) started at %v, before fault %d recovered at %v", i, evs[i].Fault, evs[i].Start, i-1, evs[i-1].Recovered)
		}
	}
	if *most != 1 {
		t.Errorf("%d faults held at once", *most)
	}
}

func TestOverlapModeStopsAndHealsWhenTheAttackEnds(t *testing.T) {
	n, _ := fakeNemesis(1, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the nemesis did not stop after the attack ended")
	}
	for _, e := range n.Events() {
		if e.End == 0 {
			t.Errorf("fault %v never healed", e.Fault)
		}
	}
	if len(n.Events()) == 0 {
		t.Fatal("no fault injected")
	}
}

func TestScheduleOverlap(t *testing.T) {
	plain := NewSchedule(3, ScheduleConfig{Nodes: 5}).Take(200)
	for _, f := range plain {
		if f.Overlap || f.Lag != 0 || f.Kind == FaultLongOneWay || f.Kind == FaultLongPause {
			t.Fatalf("overlap 0 drew %v", f)
		}
	}
	all := NewSchedule(3, ScheduleConfig{Nodes: 5, Overlap: 1}).Take(300)
	seen := map[FaultKind]bool{}
	for i, f := range all {
		seen[f.Kind] = true
		if f.Overlap != (i > 0) {
			t.Fatalf("overlap 1: fault %d overlap %v", i, f.Overlap)
		}
		if i > 0 && (f.Lag < 0 || f.Lag > all[i-1].Duration+3*time.Second) {
			t.Fatalf("fault %d: lag %v after a fault of %v", i, f.Lag, all[i-1].Duration)
		}
		switch f.Kind {
		case FaultLongOneWay:
			if f.Duration <= 10*time.Second || f.Peer < 0 || f.Peer == f.Node {
				t.Fatalf("long one-way cut %v", f)
			}
		case FaultLongPause:
			if f.Duration <= 6*time.Second {
				t.Fatalf("long pause %v", f)
			}
		}
	}
	if !seen[FaultLongOneWay] || !seen[FaultLongPause] {
		t.Fatalf("overlap mode drew %v", seen)
	}
	some := NewSchedule(3, ScheduleConfig{Nodes: 5, Overlap: 0.3}).Take(1000)
	over := 0
	for _, f := range some {
		if f.Overlap {
			over++
		}
	}
	if over < 200 || over > 400 {
		t.Fatalf("overlap 0.3 marked %d of 1000", over)
	}
}
