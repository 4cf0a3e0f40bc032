package replica

import (
	"math/rand/v2"
	"testing"
	"time"
)

// Two clusters founded apart meet (LEASES-AT-SCALE.md §6.2): what a run
// of the other cluster says counts for nothing at either, each answers
// the other with a refusal naming its own cluster, and the runs of the
// later cluster leave theirs; the earlier stays.
func TestOfTwoClustersThatMeetTheEarlierStays(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	newFounder := func(name string) *seatNode {
		self := run{name, "1"}
		return newSeatNode(self, foundingConfig(self), seatL, seatM, rng, 0)
	}
	a, b := newFounder("a"), newFounder("b")
	now := 2 * seatSettle

	// b asks a for a lease: a refuses, under its own cluster.
	ask := b.hold.ask()
	ans, ok := a.serve(ask, now).(seatGrantAnswer)
	if !ok || ans.Granted || ans.Config.Cluster != a.self {
		t.Fatalf("a answered b's lease ask with %+v; want a refusal naming a's cluster", ans)
	}
	if len(ans.Numbers) != 0 || a.acc.numbers["b"] != 0 {
		t.Fatalf("a's run numbers and b's mixed: a knows %v, and answered %v", a.acc.numbers, ans.Numbers)
	}
	if a.leaving() {
		t.Fatal("a, of the earlier cluster, leaves it on hearing of b's")
	}
	out, ev := b.answered(ask, ans, now, now, []string{"a", "b"})
	if len(out) != 0 || ev.other != a.self || b.hold.live(now) || b.hold.cfg.Cluster != b.self {
		t.Fatalf("b counted a's refusal: sends %v, events %+v, holder config %+v", out, ev, b.hold.cfg)
	}
	if !b.leaving() {
		t.Fatal("b, of the later cluster, does not leave it on hearing of a's")
	}

	// A prepare of b's cluster seals nothing at a, and a decision of it
	// changes nothing there.
	_, prep := newSeatProposer("b", b.acc.cfg, b.acc.cfg.next([]string{"a", "b"}), 1)
	if pr, ok := a.serve(prep, now).(seatPromise); !ok || pr.OK || a.acc.sealed {
		t.Fatalf("a answered b's prepare with %+v (sealed %v); want a refusal", pr, a.acc.sealed)
	}
	a.serve(seatDecide{Config: b.acc.cfg.next([]string{"a", "b"})}, now)
	if a.acc.cfg.Cluster != a.self || a.acc.cfg.Version != 1 {
		t.Fatalf("a took b's cluster's decision: %+v", a.acc.cfg)
	}

	// a's prepare seals nothing at b either.
	_, prep = newSeatProposer("a", a.acc.cfg, a.acc.cfg.next([]string{"a", "b"}), 1)
	if pr, ok := b.serve(prep, now).(seatPromise); !ok || pr.OK || b.acc.sealed {
		t.Fatalf("b answered a's prepare with %+v (sealed %v); want a refusal", pr, b.acc.sealed)
	}
}

// A run that knows no config recovers into the earliest cluster it hears
// of: the states it gathered of a later one are dropped, and a later
// one's states count for nothing, unless the earlier has gone quiet for
// two leases. Its own messages name no cluster: a run that has none
// never makes another leave one.
func TestABlankRunRecoversIntoTheEarliestClusterItHearsOf(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	a, b := run{"a", "1"}, run{"b", "1"}
	x := newSeatNode(run{"x", "1"}, seatConfig{}, seatL, seatM, rng, 0)
	now := time.Second
	ask := seatStateAsk{From: x.self}
	stateOf := func(founder run) seatState {
		return seatState{Seat: founder, Cluster: founder, Active: true, Number: 1, Config: foundingConfig(founder), Numbers: seatNumbers{founder.name: 1}}
	}
	x.answered(ask, stateOf(b), now, now, []string{"a", "b", "x"})
	if x.joining != b || len(x.states) != 1 {
		t.Fatalf("x, blank, heard of b's cluster only and recovers into %v with states %v", x.joining, x.states)
	}
	x.answered(ask, stateOf(a), now, now, []string{"a", "b", "x"})
	if x.joining != a || len(x.states) != 1 || x.states["a"].Cluster != a {
		t.Fatalf("x heard of a's earlier cluster and recovers into %v with states %v; want a's, and b's dropped", x.joining, x.states)
	}
	x.answered(ask, stateOf(b), now, now, []string{"a", "b", "x"})
	if _, ok := x.states["b"]; ok || x.joining != a {
		t.Fatalf("x counted b's state once it recovers into a's cluster: %v", x.states)
	}
	// Its asks and answers name no cluster.
	out := x.tick(now, []string{"a", "b", "x"}, nil)
	if len(out) == 0 || out[0].body.(seatStateAsk).Cluster != (run{}) {
		t.Fatalf("x's state asks %v name a cluster", out)
	}
	if st := x.serve(seatStateAsk{Cluster: b, From: b}, now).(seatState); st.Cluster != (run{}) {
		t.Fatalf("x's state names cluster %v", st.Cluster)
	}
	// a goes quiet: two leases later, b's state counts, and x joins b.
	quiet := now + 2*seatL + time.Millisecond
	x.answered(ask, stateOf(b), quiet, quiet, []string{"a", "b", "x"})
	if x.joining != b || len(x.states) != 1 || x.states["b"].Cluster != b {
		t.Fatalf("a quiet for two leases, x still recovers into %v with states %v", x.joining, x.states)
	}
	x.answered(ask, stateOf(a), quiet, quiet, []string{"a", "b", "x"})
	if x.joining != a {
		t.Fatalf("x heard of a again, and recovers into %v", x.joining)
	}
	// x recovers from a's state, under a's cluster.
	for range 3 {
		st := stateOf(a)
		st.For = x.acc.number
		x.answered(ask, st, now, now, []string{"a", "b", "x"})
	}
	if !x.acc.recovered || x.acc.cfg.Cluster != a {
		t.Fatalf("x did not recover into a's cluster: recovered %v, config %+v", x.acc.recovered, x.acc.cfg)
	}
}

// A fencer cannot know the epoch a departed holder asks at, so it
// revokes the holder's run for good: a seat refuses the run at every
// epoch from then on, even the one its refusal names, and the holder,
// told so, never serves again. Its node goes on as a new holder
// (seatNode.rehold), which counts no grant asked by the old one.
func TestARunRevokedForGoodIsNeverGrantedAgain(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	self := run{"a", "1"}
	n := newSeatNode(self, foundingConfig(self), seatL, seatM, rng, 0)
	h := run{"h", "1"}
	hold := newSeatHolder(h, n.acc.cfg, seatL)
	now := 2 * seatSettle
	live := true
	if ans := n.acc.grantLease(hold.ask(), now, live); !ans.Granted {
		t.Fatalf("a refused h before any revocation: %+v", ans)
	}
	hold.record(now, n.acc.grantLease(hold.ask(), now, live))
	if !hold.live(now) {
		t.Fatal("h is not live on the grant of its config's only seat")
	}
	if rev := n.acc.revoke(seatRevokeAsk{Cluster: self, Holder: h, Epoch: forGood}, now); rev.Retry || rev.Remaining <= 0 {
		t.Fatalf("the revocation answered %+v; want it recorded, with the grant's remaining time", rev)
	}
	for _, epoch := range []uint64{0, 1, forGood, revokedForGood} {
		ask := hold.ask()
		ask.Epoch = epoch
		if ans := n.acc.grantLease(ask, now, live); ans.Granted || ans.Epoch != revokedForGood {
			t.Fatalf("a revoked run asking at epoch %d was answered %+v; want a refusal naming revokedForGood", epoch, ans)
		}
	}
	if dead := hold.record(now, n.acc.grantLease(hold.ask(), now, live)); !dead || !hold.revoked || hold.live(now) {
		t.Fatalf("h refused for good: declared dead %v, revoked %v, live %v", dead, hold.revoked, hold.live(now))
	}

	// The node's own holder: one revoked and replaced counts nothing
	// asked before, by the holder it replaced.
	ask := n.hold.ask()
	granted := n.serve(ask, now)
	n.rehold(run{"a", "1/h1"})
	n.answered(ask, granted, now, now, []string{"a"})
	if len(n.hold.leases) != 0 || n.hold.live(now) {
		t.Fatalf("the new holder counts a grant asked by the one it replaced: %+v", n.hold.leases)
	}
	n.answered(n.hold.ask(), n.serve(n.hold.ask(), now), now, now, []string{"a"})
	if !n.hold.live(now) {
		t.Fatal("the new holder is not live on its own grant")
	}
}

// A seat grants only to a holder that serves by the same ring as it
// does, and a holder counts a grant only while it still serves by the
// ring it was made under: a holder is live only while a majority of its
// seats share its view of the members (LEASES-AT-SCALE.md §6.3, "Grants
// name the seat's ring").
func TestASeatGrantsOnlyUnderTheRingItServesBy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	self := run{"a", "1"}
	n := newSeatNode(self, foundingConfig(self), seatL, seatM, rng, 0)
	const ringA, ringB = 0xa, 0xb
	n.setRing(ringA)
	now := 2 * seatSettle
	h := newSeatHolder(run{"h", "1"}, n.acc.cfg, seatL)
	// The seat's own holder, live: a seat grants members that hold no
	// seat only while it is live itself.
	n.answered(n.hold.ask(), n.serve(n.hold.ask(), now), now, now, []string{"a"})
	if !n.hold.live(now) {
		t.Fatal("the node's holder is not live on its own grant")
	}

	h.ring = ringB
	ans, _ := n.serve(h.ask(), now).(seatGrantAnswer)
	if ans.Granted || ans.Ring != ringA {
		t.Fatalf("a seat on ring %#x answered a holder of ring %#x with %+v; want a refusal naming its ring", ringA, ringB, ans)
	}
	if dead := h.record(now, ans); dead || h.revoked || h.live(now) {
		t.Fatalf("a refusal for another ring: declared dead %v, revoked %v, live %v; want none", dead, h.revoked, h.live(now))
	}

	h.ring = ringA
	ans, _ = n.serve(h.ask(), now).(seatGrantAnswer)
	if !ans.Granted || ans.Ring != ringA {
		t.Fatalf("a seat refused a holder of its own ring: %+v", ans)
	}
	h.record(now, ans)
	if !h.live(now) {
		t.Fatal("the holder is not live on its seat's grant under their ring")
	}
	h.ring = ringB // it installs another ring
	if h.live(now) {
		t.Fatal("a grant made under the ring before counts under the new one")
	}
	h.ring = ringA
	if !h.live(now) {
		t.Fatal("the grant stopped counting under the ring it was made under")
	}

	// The node's own holder follows the node's ring.
	n.setRing(ringB)
	if n.hold.live(now) {
		t.Fatal("the node's holder counts a grant made under the ring it left")
	}
	n.rehold(run{"a", "1/h1"})
	if n.hold.ring != ringB {
		t.Fatalf("a new holder serves by ring %#x, not the node's %#x", n.hold.ring, ringB)
	}
}

// Explorer seed 15175: a fence that revokes a seat's own holder for good
// may complete without that seat, at a seat whose earlier run is still
// alive (L4). In {a, b, c}, c's holder h is revoked at a's second run
// and b; c, which missed the revocation, and a's first run, which knows
// nothing of it, would each still grant h (a seat's holder needs no
// liveness of theirs, R2.5). The two never count together: a's second
// run recovered from b and c, so c's answer names it, and h drops a's
// first run's grant, in either order (seatHolder.record). The
// explorer's check 3 must see that too: it counted every grant the
// holder had not yet learned to drop, and reported {a, c} as a majority
// that would grant h.
func TestARevokedSeatHolderNeverCountsAnEarlierRunBesideASeatThatKnowsItsSuccessor(t *testing.T) {
	cfg := cfgOf(1, "a", "b", "c")
	members := []string{"a", "b", "c"}
	setup := func(t *testing.T) (s *seatSim, a1, a2, b, c *seatNode, f *seatFence) {
		t.Helper()
		rng := rand.New(rand.NewPCG(1, 2))
		a1 = newSeatNode(run{"a", "1"}, cfg, seatL, seatM, rng, 0)
		b = newSeatNode(run{"b", "1"}, cfg, seatL, seatM, rng, 0)
		c = newSeatNode(run{"c", "1"}, cfg, seatL, seatM, rng, 0)
		c.rehold(run{"c", "1/h1"}) // a holder after an earlier revocation, as in the seed
		// a restarts; its first run stays alive. The second recovers
		// from b and c, which record its number before they give state.
		at := 100 * time.Millisecond
		a2 = newSeatNode(run{"a", "2"}, seatConfig{}, seatL, seatM, rng, at)
		asks := []any{seatStateAsk{From: a2.self}}
		for len(asks) > 0 && !a2.acc.recovered {
			ask := asks[0]
			asks = asks[1:]
			for _, x := range []*seatNode{b, c} {
				out, _ := a2.answered(ask, x.serve(ask, at), at, at, members)
				for _, o := range out {
					if o.to.name == "b" {
						asks = append(asks, o.body) // the announce, once to each
					}
				}
			}
		}
		if !a2.acc.recovered || c.acc.numbers["a"] != a2.acc.number {
			t.Fatalf("a's second run: recovered %v, number %d; c knows %d", a2.acc.recovered, a2.acc.number, c.acc.numbers["a"])
		}
		// b revokes c's holder for good; a's second run and b record it,
		// c never hears of it.
		at += seatSettle
		f = b.fence(c.hold.self, forGood, 10*time.Millisecond)
		ask := f.rev.ask()
		for _, x := range []*seatNode{a2, b} {
			b.answered(ask, x.serve(ask, at), at, at, members)
		}
		if !f.done {
			t.Fatal("the revocation did not end at a's second run and b")
		}
		pa := &seatSimProc{name: "a", up: true, self: a2.self, node: a2, acc: a2.acc, hold: a2.hold,
			zombie: &seatSimProc{name: "a", up: true, self: a1.self, node: a1, acc: a1.acc, hold: a1.hold}}
		s = &seatSim{now: f.end + time.Millisecond, decided: map[run]map[uint64]seatConfig{{}: {1: cfg}}}
		for _, x := range []*seatNode{b, c} {
			s.procs = append(s.procs, &seatSimProc{name: x.self.name, up: true, self: x.self, node: x, acc: x.acc, hold: x.hold})
		}
		s.procs = append([]*seatSimProc{pa}, s.procs...)
		s.fences = []*seatSimFence{{seatFence: f, number: c.hold.number, atVers: 1}}
		return s, a1, a2, b, c, f
	}

	t.Run("the holder drops the earlier run's grant", func(t *testing.T) {
		for _, order := range [][]string{{"a", "c"}, {"c", "a"}} {
			s, a1, _, _, c, _ := setup(t)
			ask := c.hold.ask()
			for _, name := range order {
				x := c
				if name == "a" {
					x = a1
				}
				ans := x.serve(ask, s.now).(seatGrantAnswer)
				if !ans.Granted {
					t.Fatalf("%v refused h: %+v; the schedule needs it to grant", x.self, ans)
				}
				c.answered(ask, ans, s.now, s.now, members)
			}
			if c.hold.live(s.now) {
				t.Fatalf("h, revoked for good, is live after its fence on a's first run and c (in the order %v): %+v", order, c.hold.leases)
			}
		}
	})
	t.Run("check 3 sees it too", func(t *testing.T) {
		s, _, _, _, c, _ := setup(t)
		if err := s.check(); err != nil {
			t.Fatalf("the explorer's check: %v", err)
		}
		// Had c not heard of a's second run, {a, c} would be a majority
		// that grants h: the check must still say so.
		c.acc.numbers["a"] = 1
		if err := s.check(); err == nil {
			t.Fatal("the explorer's check passes a majority of a's first run and c, which names no later run of a")
		}
	})
}

// An idle seat lets its own grants lapse and asks nothing (the idle
// floor); a member that holds no seat asking it for a grant finds it not
// live, is refused, and wakes it: its holder asks its seats at once, and
// goes on renewing for a lease after the last such ask, so the member's
// next ask is granted (seatNode.renewing, wake).
func TestAnIdleSeatRenewsOnlyOnDemand(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	self := run{"a", "1"}
	n := newSeatNode(self, foundingConfig(self), seatL, seatM, rng, 0)
	n.setRing(1)
	now := 2 * seatSettle
	asks := func(out []seatOut) (k int) {
		for _, o := range out {
			if _, ok := o.body.(seatGrantAsk); ok {
				k++
			}
		}
		return k
	}
	// Serving, the seat renews every round, and is live.
	for range 3 {
		for _, o := range n.tick(now, []string{"a"}, nil) {
			if ask, ok := o.body.(seatGrantAsk); ok {
				n.answered(ask, n.serve(ask, now), now, now, []string{"a"})
			}
		}
		now += n.timing.renew
	}
	if !n.hold.live(now - n.timing.renew) {
		t.Fatal("a serving seat is not live on its own grants")
	}
	// Idle: no ask, and its grants lapse.
	n.idle = true
	for range 12 {
		if k := asks(n.tick(now, []string{"a"}, nil)); k > 0 {
			t.Fatalf("an idle seat no member asked sent %d grant asks", k)
		}
		now += n.timing.renew
	}
	if n.hold.live(now) {
		t.Fatal("an idle seat's grants did not lapse")
	}
	// A member that holds no seat asks: refused, as the seat is not
	// live (R2.5), and the seat asks its own at once.
	h := newSeatHolder(run{"h", "1"}, n.acc.cfg, seatL)
	h.ring = 1
	if ans := n.serve(h.ask(), now).(seatGrantAnswer); ans.Granted {
		t.Fatalf("a seat that is not live granted a member that holds none: %+v", ans)
	}
	wake := n.wake(now)
	if asks(wake) == 0 {
		t.Fatal("a seat asked while not live did not ask its seats")
	}
	if again := n.wake(now); len(again) != 0 {
		t.Fatalf("a seat woke twice on one ask: %v", again)
	}
	for _, o := range wake {
		n.answered(o.body, n.serve(o.body, now), now, now, []string{"a"})
	}
	if ans := n.serve(h.ask(), now).(seatGrantAnswer); !ans.Granted {
		t.Fatalf("the woken seat refused the member again: %+v", ans)
	}
	// Asked, it renews by itself for a lease after the last ask, then
	// stops again.
	asked := now
	for now+n.timing.renew-asked <= n.hold.lease {
		now += n.timing.renew
		if asks(n.tick(now, []string{"a"}, nil)) == 0 {
			t.Fatalf("a seat asked for a grant %v ago stopped renewing", now-asked)
		}
	}
	for range 6 {
		now += n.timing.renew
		if k := asks(n.tick(now, []string{"a"}, nil)); k > 0 {
			t.Fatalf("a seat last asked %v ago still renews", now-asked)
		}
	}
}

// A seated node found paused asks its seats, idle or not: it may have
// been taken for departed and revoked for good meanwhile, and only an
// ask tells it (seatsPaused). Idle, its ring what it was before the
// pause and granted under it then, it asked nothing, and stayed ready
// without learning it was revoked (what
// TestAPausedNodeRevokedByTheSeatsExitsForARestart found with real
// processes).
func TestAPausedSeatedNodeAsksItsSeatsIdle(t *testing.T) {
	c := newTestCluster(t, 3, seated(3))
	waitForSeatsThat(t, c, "all three", func(s []string) bool { return len(s) == 3 })
	x := c.node("node-2")
	lease := x.cfg.LeaseDuration
	waitFor(t, 5*time.Second, "every node ready", func() bool {
		return c.node("node-0").Ready() && c.node("node-1").Ready() && x.Ready()
	})
	c.sleep(3 * lease) // idle: every node lets its grants lapse

	// The others take x for departed while it is stopped (its ring never
	// changes) and revoke it for good at the seats; then they take it
	// back.
	others := []string{"node-0", "node-1"}
	c.publishTo(map[string][]string{"node-0": others, "node-1": others})
	waitFor(t, 10*time.Second, "x's revocation to complete", func() bool {
		return len(*c.node("node-0").own.seatFences.Load()) > 0
	})
	all := []string{"node-0", "node-1", "node-2"}
	c.publishTo(map[string][]string{"node-0": all, "node-1": all})

	x.beat.Store(int64(x.mono() - time.Hour)) // as if x had not run for an hour
	x.checkPause()
	waitFor(t, 10*time.Second, "x, paused and idle, to learn it was revoked", func() bool { return x.Readiness().SeatsRevoked })
	if r := x.Readiness(); r.Ready() {
		t.Fatalf("x, revoked for good, is ready: %+v", r)
	}
}

// A holder asks the seats of the newest config its node knows, even one
// only its acceptor has heard decided: b, idle and holding no seat, asked
// nothing while the config grew from a's alone to a, b and c; once a
// dies, b's holder must ask b and c, which hold the config and can grant
// it, not a alone (TestTwoNodesAndAWitnessSurviveACrash).
func TestAHolderAsksTheSeatsOfTheConfigItsAcceptorHeardDecided(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	first := cfgOf(1, "a")
	b := newSeatNode(run{"b", "1"}, first, seatL, seatM, rng, 0)
	grown := first.next([]string{"a", "b", "c"})
	b.serve(seatDecide{Config: grown}, seatSettle)
	if b.acc.cfg.Version != grown.Version {
		t.Fatalf("b's acceptor did not take the decision: %+v", b.acc.cfg)
	}
	asked := map[string]bool{}
	for _, o := range b.renewNow(seatSettle) {
		if _, ok := o.body.(seatGrantAsk); ok {
			asked[o.to.name] = true
		}
	}
	if !asked["b"] || !asked["c"] || b.hold.cfg.Version != grown.Version {
		t.Fatalf("b's holder asked %v under config %+v; want the seats of %+v", asked, b.hold.cfg, grown)
	}
}
