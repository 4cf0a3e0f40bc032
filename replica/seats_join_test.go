package replica

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tandem-io/tandem/ring"
)

// exchangeSeatAsks delivers every ask in out addressed to node to, and
// its answer back to from; seen, if set, gets every state to gave.
func exchangeSeatAsks(from, to *seatNode, out []seatOut, now time.Duration, members []string, seen func(seatState)) {
	for _, o := range out {
		if o.to.name != to.self.name {
			continue
		}
		ans := to.serve(o.body, now)
		if ans == nil {
			continue
		}
		if st, ok := ans.(seatState); ok && seen != nil {
			seen(st)
		}
		next, _ := from.answered(o.body, ans, now, now, members)
		_ = next
	}
}

// A blank run that heard of a cluster whose only seat then died joins the
// cluster founded next, though it comes later: the dead one goes quiet
// and is forgotten. (When a blank run's asks named the cluster it meant
// to join, the founder's new run left its cluster on each of them,
// founded again, and so on, a review found: a livelock half the time,
// as boot ids are random.)
func TestABlankRunJoinsTheClusterFoundedAfterTheOneItHeardOfDied(t *testing.T) {
	lease := seatL
	// a's earlier process ("p") founded A; x heard of it, then that
	// process died before x recovered (A's lone seat: "a cluster whose
	// only seat restarted starts again", seats.go).
	A := run{"a", "p.1"}
	x := newSeatNode(run{"x", "1"}, seatConfig{}, lease, seatM, rand.New(rand.NewPCG(1, 2)), 0)
	x.answered(seatStateAsk{From: x.self}, seatState{Seat: A, Cluster: A, Active: true, Number: 1, Config: foundingConfig(A), Numbers: seatNumbers{"a": 1}}, 0, 0, []string{"a", "x"})
	if x.joining != A {
		t.Fatalf("x joins %v", x.joining)
	}
	// a's new process, boot id "q" (random; later than "p" half the time).
	tab, err := ring.New(ring.DefaultConfig(), 1, []ring.Member{{Name: "a", Peer: "a", Incarnation: "q"}, {Name: "x", Peer: "x", Incarnation: "1"}})
	if err != nil {
		t.Fatal(err)
	}
	members := []string{"a", "x"}
	r := newSeatRunner(Config{Seats: 3, LeaseDuration: lease})
	now := time.Second
	r.start(runOf(tab, "a"), false, lease, seatM, now)
	founded, left := 0, 0
	for step := 0; step < 200; step++ {
		now += 50 * time.Millisecond
		if r.node.leaving() { // tickSeats
			left++
			r.start(r.node.self, false, lease, seatM, now)
		}
		if r.founds(tab, now) {
			founded++
			r.start(r.node.self, true, lease, seatM, now)
			if !clusterBefore(A, r.node.acc.cfg.Cluster) {
				t.Fatalf("founded %v before %v", r.node.acc.cfg.Cluster, A)
			}
		}
		asker := r.node
		exchangeSeatAsks(r.node, x, r.node.tick(now, members, nil), now, members, func(st seatState) {
			r.seen["x"] = seenOf(st, asker.self, now, now)
		})
		exchangeSeatAsks(x, r.node, x.tick(now, members, nil), now, members, nil)
	}
	if !x.acc.recovered || x.acc.cfg.Cluster != r.node.cluster() || founded != 1 || left != 0 {
		t.Errorf("after 10 s a founded %d clusters and left %d; x recovered %v into %v, a's run is in %v", founded, left, x.acc.recovered, x.acc.cfg.Cluster, r.node.cluster())
	}
}

// A run that switches to an earlier cluster forgets the run numbers it
// learnt of the later one: one of them would outnumber, in the earlier
// cluster, the seat it names, and the run would never count that seat's
// state (a review found it reporting a healthy config lost).
func TestARunThatSwitchesClusterForgetsTheOthersRunNumbers(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	members := []string{"a", "b", "x"}
	// a's first run, blank, had announced its number to b's cluster B;
	// a's next run then founded A (a < b: A is the earlier).
	B, A := run{"b", "1"}, run{"a", "2"}
	aOld := runNumber(1, run{"a", "1"})
	bState := seatState{Seat: B, Cluster: B, Active: true, Number: 1, Config: foundingConfig(B), Numbers: seatNumbers{"a": aOld, "b": 1}}
	aState := func(forN uint64) seatState {
		return seatState{Seat: A, Cluster: A, Active: true, Number: 1, For: forN, Config: foundingConfig(A), Numbers: seatNumbers{"a": 1}}
	}
	x := newSeatNode(run{"x", "1"}, seatConfig{}, seatL, seatM, rng, 0)
	now := time.Second
	x.answered(seatStateAsk{From: x.self}, bState, now, now, members) // heard of B first
	x.answered(seatStateAsk{From: x.self}, aState(0), now, now, members)
	if x.joining != A {
		t.Fatalf("x joins %v", x.joining)
	}
	for range 20 {
		now += seatL / 6
		x.answered(seatStateAsk{From: x.self, Number: x.acc.number}, aState(x.acc.number), now, now, members)
	}
	v, lost := x.acc.lost()
	t.Logf("x: recovered %v, numbers %v, number %d, lost %v at v%d", x.acc.recovered, x.acc.numbers, x.acc.number, lost, v)
	if !x.acc.recovered {
		t.Errorf("x never recovers into %v: it still knows a: %d, B's number, above A's seat a (1); it reports A lost: %v", A, x.acc.numbers["a"], lost)
	}
	// The same run, never having heard of B, recovers at once.
	y := newSeatNode(run{"y", "1"}, seatConfig{}, seatL, seatM, rng, 0)
	y.answered(seatStateAsk{From: y.self}, aState(0), now, now, members)
	y.answered(seatStateAsk{From: y.self}, aState(y.acc.number), now, now, members)
	if !y.acc.recovered {
		t.Fatal("y did not recover either")
	}
}
