package chaos

import (
	"slices"
	"testing"
	"time"
)

func TestScheduleIsDeterministicFromItsSeed(t *testing.T) {
	cfg := ScheduleConfig{Nodes: 5}
	a, b := NewSchedule(42, cfg).Take(300), NewSchedule(42, cfg).Take(300)
	if !slices.Equal(a, b) {
		t.Fatal("the same seed gave two schedules")
	}
	if c := NewSchedule(43, cfg).Take(300); slices.Equal(a, c) {
		t.Fatal("different seeds gave the same schedule")
	}
	seen := map[FaultKind]bool{}
	for _, f := range a {
		seen[f.Kind] = true
		if f.Node < 0 || f.Node >= 5 {
			t.Fatalf("fault %v attacks node %d of 5", f, f.Node)
		}
		if (f.Kind == FaultPartition || f.Kind == FaultOneWay) != (f.Peer >= 0) || f.Peer == f.Node {
			t.Fatalf("fault %v has peer %d", f, f.Peer)
		}
		if f.Kind == FaultPause && f.Duration < 2500*time.Millisecond {
			t.Fatalf("pause %v shorter than the failure detector", f)
		}
		if f.Kind == FaultClock && (f.Skew == 0 || f.Skew > 2*time.Second || f.Skew < -2*time.Second) {
			t.Fatalf("clock fault %v outside ±2s", f)
		}
	}
	if len(seen) != len(AllFaults) {
		t.Fatalf("300 faults drew only %v", seen)
	}
}

func TestScheduleDrawsOnlyTheKindsAsked(t *testing.T) {
	kinds, err := ParseFaultKinds("pause, partition")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range NewSchedule(1, ScheduleConfig{Nodes: 3, Kinds: kinds}).Take(100) {
		if f.Kind != FaultPause && f.Kind != FaultPartition {
			t.Fatalf("drew %v", f)
		}
	}
	if _, err := ParseFaultKinds("kill,meteor"); err == nil {
		t.Fatal("an unknown fault kind was accepted")
	}
	if all, _ := ParseFaultKinds("all"); !slices.Equal(all, AllFaults) {
		t.Fatalf("all = %v", all)
	}
}

func TestWorkloadChoicesAreDeterministicFromTheSeed(t *testing.T) {
	cfg := WorkloadConfig{Seed: 7}
	take := func(seed int64, client int) []choice {
		cfg.Seed = seed
		ch := newChooser(cfg, 5, client)
		out := make([]choice, 500)
		for i := range out {
			out[i] = ch.next()
		}
		return out
	}
	a := take(7, 0)
	if !slices.Equal(a, take(7, 0)) {
		t.Fatal("the same seed and client gave two workloads")
	}
	if slices.Equal(a, take(7, 1)) || slices.Equal(a, take(8, 0)) {
		t.Fatal("different clients or seeds gave the same workload")
	}
	seen := map[OpKind]bool{}
	for _, c := range a {
		seen[c.Kind] = true
	}
	for _, k := range []OpKind{OpGet, OpPut, OpCAS, OpPatch, OpDelete, OpCreate} {
		if !seen[k] {
			t.Errorf("500 choices made no %s", k)
		}
	}
}
