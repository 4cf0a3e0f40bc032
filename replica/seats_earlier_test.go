package replica

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// The two tests in this file are a review's scenarios (LEASES-AT-SCALE.md
// §6.1, "An earlier run's state"): a restarting seat recovers from the
// state an earlier run of another seat gives, which lacks what that
// seat's later run recorded. They failed in every config size before
// states carried the giver's number and a run recovered from
// recoveryNeed seats. A config of two seats is the protocol's known
// limit (recoveryNeed), and is not run.

// reviewSeats returns the first config of n seats a, b, ….
func reviewSeats(n int) seatConfig {
	return cfgOf(1, []string{"a", "b", "c", "d", "e", "f"}[:n]...)
}

// reviewSizes are the config sizes the scenarios run in.
var reviewSizes = []int{3, 4, 5, 6}

// reviewFrom returns the seats b2 asks for its state: a1, then the seats
// outside the set that recorded a2's act, then, as recoveryNeed asks for
// more, those inside it other than a and b.
func reviewFrom(cfg seatConfig, first map[string]*seatAcceptor, inside, outside []string) []*seatAcceptor {
	from := []*seatAcceptor{first["a"]}
	for _, s := range outside {
		from = append(from, first[s])
	}
	for _, s := range inside {
		if len(from) < recoveryNeed(cfg) && s != "b" {
			from = append(from, first[s])
		}
	}
	return from
}

// reviewFirstRuns returns the first run of every seat of cfg, by name.
func reviewFirstRuns(cfg seatConfig) map[string]*seatAcceptor {
	first := map[string]*seatAcceptor{}
	for _, s := range cfg.Seats {
		first[s] = newSeatAcceptor(run{s, "1"}, cfg, seatL+seatM, seatSettle, 0)
	}
	return first
}

// reviewRestartA restarts a: its second run recovers at 100 ms from the
// first |C| − maj(C) + 1 other seats. It returns the run and when it
// answers.
func reviewRestartA(t *testing.T, cfg seatConfig, first map[string]*seatAcceptor) (*seatAcceptor, time.Duration) {
	t.Helper()
	need := recoveryNeed(cfg)
	var from []*seatAcceptor
	for _, s := range cfg.Seats[1 : 1+need] {
		from = append(from, first[s])
	}
	return recoveredRun(t, "a", "2", 100*time.Millisecond, from...), 100*time.Millisecond + seatSettle
}

// reviewRecover is recoveredRun, but reports a run that does not recover
// (the scenario is then shut out) instead of failing.
func reviewRecover(name, incarnation string, now time.Duration, from ...*seatAcceptor) (*seatAcceptor, bool) {
	r := newSeatAcceptor(run{name, incarnation}, seatConfig{}, seatL+seatM, seatSettle, now)
	ask := seatStateAsk{From: r.self}
	states := func() (out []seatState) {
		for _, s := range from {
			out = append(out, s.state(ask, now))
		}
		return out
	}
	ask.Number, _ = r.recover(states(), now)
	_, done := r.recover(states(), now)
	return r, done
}

// reviewRecoverB restarts b at now, recovering from the seats given,
// a1 first. Its state must not count, as a2 is known to a seat the rest
// of from: if b2 recovers, a1 was not needed and stays the one named a
// that answers next; if it does not, it asks a again, is answered by a2,
// and must recover, a2 then answering as a. It returns b2 and the run
// that answers as a.
func reviewRecoverB(t *testing.T, now time.Duration, a1, a2 *seatAcceptor, from []*seatAcceptor) (*seatAcceptor, *seatAcceptor) {
	t.Helper()
	if b2, ok := reviewRecover("b", "2", now, from...); ok {
		return b2, a1
	}
	from = append([]*seatAcceptor{a2}, from[1:]...)
	b2, ok := reviewRecover("b", "2", now, from...)
	if !ok {
		t.Fatalf("b2 did not recover from a2 and %d others", len(from)-1)
	}
	return b2, a2
}

// reviewLive reports whether seat s's holder is live at now on the grants
// of the seats given (seat-to-seat grants skip R2.5).
func reviewLive(s *seatAcceptor, cfg seatConfig, now time.Duration, from ...*seatAcceptor) bool {
	h := newSeatHolder(s.self, cfg, seatL)
	h.number = s.number
	for _, g := range from {
		s.heardOf(g.grantLease(h.ask(), now, true).Numbers)
	}
	for _, g := range from { // again, with what the first answers taught
		h.record(now, g.grantLease(h.ask(), now, true))
	}
	return h.live(now)
}

// L4 and recovery: a's first run a1 stays alive beside a2. a2 recovered
// from b and the next seats, and, with b (and the next seats up to a
// majority), revokes non-seat holder h; the fence ends. Then b restarts,
// and b2 recovers from recoveryNeed(C) other seats: a1 (the state ask to
// name a reached the earlier run) and the seats that did not record the
// revocation. a1 is active (it knows of no later run of a) and gives its
// state as a's; b2 takes it as a's and recovers without the revocation.
// A majority of C then grants h again: b2, the seats outside the fence,
// and (4 seats, 2 seats) a1, which no answer it hears names a2 to.
func TestAnEarlierRunsStateLosesNoCompletedRevocation(t *testing.T) {
	for _, n := range reviewSizes {
		t.Run(fmt.Sprintf("%d seats", n), func(t *testing.T) {
			cfg := reviewSeats(n)
			ms := time.Millisecond
			first := reviewFirstRuns(cfg)
			h := newSeatHolder(run{"h", "1"}, cfg, seatL)
			for _, s := range cfg.Seats {
				h.record(0, first[s].grantLease(h.ask(), 0, true))
			}
			need := recoveryNeed(cfg)
			others := cfg.Seats[1:] // b, c, …
			a1 := first["a"]
			a2, now := reviewRestartA(t, cfg, first)
			if !a2.active(now) {
				t.Fatal("a2 not active")
			}
			// The fence: a2 and b, c, … up to a majority.
			fence := []*seatAcceptor{a2}
			for _, s := range others[:cfg.majority()-1] {
				fence = append(fence, first[s])
			}
			f := newSeatRevocation(h.self, 0, cfg, 10*ms)
			for _, s := range fence {
				f.record(now, s.revoke(f.ask(), now))
			}
			end, done := f.ends()
			if !done {
				t.Fatal("the fence did not end")
			}
			// b restarts after the fence; b2 recovers from a1 and the seats
			// outside the fence.
			outside := others[cfg.majority()-1:]
			from := reviewFrom(cfg, first, others[:cfg.majority()-1], outside)
			if len(from) != need {
				t.Fatalf("b2 recovers from %d states, needs %d", len(from), need)
			}
			now = end + 10*ms
			b2, a := reviewRecoverB(t, now, a1, a2, from)
			now += seatSettle
			if !b2.active(now) {
				t.Fatal("b2 not active")
			}
			// After the fence, h reaches b2, the seats outside the fence and
			// a1 (a2 and the fence's other seats cut off from them).
			grant := []*seatAcceptor{b2}
			for _, s := range outside {
				grant = append(grant, first[s])
			}
			if len(grant) < cfg.majority() {
				grant = append(grant, a)
			}
			var granted []string
			for _, s := range grant {
				live := reviewLive(s, cfg, now, grant...)
				ans := s.grantLease(h.ask(), now, live)
				if ans.Granted {
					granted = append(granted, s.self.name+s.self.incarnation)
				}
				h.record(now, ans)
			}
			if h.live(now) {
				t.Fatalf("revoked h is live at %v, after its fence ended at %v, on grants from %v of %v (b2 recovered from a's earlier run)", now, end, granted, cfg.Seats)
			}
		})
	}
}

// The same hole in Paxos: a2 and b accept X for version 2, so X is
// chosen. b restarts and recovers from a1 (an earlier run of a, which
// knows nothing of X) and the seats that did not accept X: sure, with
// nothing accepted. A ballot with b2 and those seats (and a1 where it
// needs a's vote) then chooses Y. Two configs decided for version 2.
func TestAnEarlierRunsStateLetsNoSecondConfigBeChosen(t *testing.T) {
	for _, n := range reviewSizes {
		t.Run(fmt.Sprintf("%d seats", n), func(t *testing.T) {
			cfg := reviewSeats(n)
			ms := time.Millisecond
			first := reviewFirstRuns(cfg)
			others := cfg.Seats[1:] // b, c, …
			a1 := first["a"]
			a2, now := reviewRestartA(t, cfg, first)
			// X (add z) chosen by a2 and b, c, … up to a majority.
			x := cfgOf(2, append(slices.Clone(cfg.Seats), "z")...)
			voters := []*seatAcceptor{a2}
			for _, s := range others[:cfg.majority()-1] {
				voters = append(voters, first[s])
			}
			decideWith := func(proposer string, want seatConfig, round uint64, acc []*seatAcceptor, now time.Duration) *seatDecide {
				p, prep := newSeatProposer(proposer, cfg, want, round)
				var accept *seatAccept
				for _, s := range acc {
					if m := p.promise(s.prepare(prep, now)); m != nil {
						accept = m
					}
				}
				if accept == nil {
					return nil
				}
				var dec *seatDecide
				for _, s := range acc {
					if d := p.accepted(s.accept(*accept, now)); d != nil {
						dec = d
					}
				}
				return dec
			}
			dx := decideWith("a", x, 1, voters, now)
			if dx == nil {
				t.Fatal("X was not chosen")
			}
			// b restarts (the decision reached none but the proposer); b2
			// recovers from a1 and the seats that did not vote.
			outside := others[cfg.majority()-1:]
			from := reviewFrom(cfg, first, others[:cfg.majority()-1], outside)
			now += 10 * ms
			b2, a := reviewRecoverB(t, now, a1, a2, from)
			now += seatSettle
			// Y, the no-op config (any value but X), by b2 and the others.
			y := cfgOf(2, cfg.Seats...)
			acc := []*seatAcceptor{b2}
			for _, s := range outside {
				acc = append(acc, first[s])
			}
			if len(acc) < cfg.majority() {
				acc = append(acc, a)
			}
			dy := decideWith(outsideOr(outside, "b"), y, 2, acc, now)
			if dy != nil && !slices.Equal(dx.Config.Seats, dy.Config.Seats) {
				t.Fatalf("two configs decided for version 2: %v (by a2 and %v) and %v (by b2, recovered from a's earlier run, and %v)", dx.Config.Seats, others[:cfg.majority()-1], dy.Config.Seats, outside)
			}
		})
	}
}

func outsideOr(outside []string, or string) string {
	if len(outside) > 0 {
		return outside[0]
	}
	return or
}

// A run may pick a number below one another run of its node announced:
// that run died before it recovered, and the seats this one recovered
// from had not recorded its number (it reached only non-seats, or seats
// that restarted since). Any state that knows the higher number makes a
// restarting seat drop this run's states; so a recovering run keeps the
// numbers the states it hears name, and its answers pass them on, and the
// run learns it is superseded and starts again (explorer seed 4922: a
// two-seat config whose live seat's states were dropped for good).
func TestARecoveringRunPassesOnTheNumbersItHears(t *testing.T) {
	cfg := cfgOf(2, "b", "c")
	c := newSeatAcceptor(run{"c", "1"}, cfg, seatL+seatM, seatSettle, 0)
	c.number = 500 // picked below the ghost's 900, unknowing
	c.numbers["c"] = 500
	x := newSeatAcceptor(run{"x", "1"}, cfg, seatL+seatM, seatSettle, 0) // a non-seat that recorded the ghost
	x.hear("c", 900)
	b := newSeatAcceptor(run{"b", "2"}, seatConfig{}, seatL+seatM, seatSettle, 0)
	now := 10 * time.Millisecond
	ask := seatStateAsk{From: b.self}
	states := []seatState{x.state(ask, now), c.state(ask, now)}
	ask.Number, _ = b.recover(states, now)
	states = []seatState{x.state(ask, now), c.state(ask, now)}
	if _, done := b.recover(states, now); done {
		t.Fatal("b recovered from c's run 500, though x knows c's run 900")
	}
	// c's holder asks b for a grant: b's answer names 900, and c learns
	// it is superseded.
	h := newSeatHolder(c.self, cfg, seatL)
	h.number = c.number
	ans := b.grantLease(h.ask(), now, true)
	if ans.Numbers["c"] != 900 {
		t.Fatalf("recovering b's answer names c's run %d; want 900, the number it heard", ans.Numbers["c"])
	}
	c.heardOf(ans.Numbers)
	if !c.superseded() {
		t.Fatal("c's run 500 is not superseded after hearing of run 900")
	}
}

// Two seats of three restart while their earlier runs stay alive and
// answer: each new run drops the other's earlier run's state (a knows the
// later numbers), and waits for the other's, which it never gets. Two of
// three seats lost their state; both must say so, though the earlier runs
// answer as active (a review's schedule).
func TestAnOutnumberedEarlierRunHidesNoLostMajority(t *testing.T) {
	cfg := cfgOf(1, "a", "b", "c")
	now := seatSettle
	a1 := newSeatAcceptor(run{"a", "1"}, cfg, seatL+seatM, seatSettle, 0)
	b1 := newSeatAcceptor(run{"b", "1"}, cfg, seatL+seatM, seatSettle, 0)
	c1 := newSeatAcceptor(run{"c", "1"}, cfg, seatL+seatM, seatSettle, 0)
	b2 := newSeatAcceptor(run{"b", "2"}, seatConfig{}, seatL+seatM, seatSettle, now)
	c2 := newSeatAcceptor(run{"c", "2"}, seatConfig{}, seatL+seatM, seatSettle, now)
	nb, _ := b2.recover([]seatState{a1.state(seatStateAsk{From: b2.self}, now), c1.state(seatStateAsk{From: b2.self}, now)}, now)
	nc, _ := c2.recover([]seatState{a1.state(seatStateAsk{From: c2.self}, now), b1.state(seatStateAsk{From: c2.self}, now)}, now)
	if nb == 0 || nc == 0 {
		t.Fatal("no numbers picked")
	}
	a1.state(seatStateAsk{From: b2.self, Number: nb}, now)
	a1.state(seatStateAsk{From: c2.self, Number: nc}, now)
	for range 5 {
		now += 100 * time.Millisecond
		_, doneB := b2.recover([]seatState{
			a1.state(seatStateAsk{From: b2.self, Number: nb}, now),
			c1.state(seatStateAsk{From: b2.self, Number: nb}, now),
		}, now)
		_, doneC := c2.recover([]seatState{
			a1.state(seatStateAsk{From: c2.self, Number: nc}, now),
			b1.state(seatStateAsk{From: c2.self, Number: nc}, now),
		}, now)
		if doneB || doneC {
			t.Fatalf("recovered (b2 %v, c2 %v) from an outnumbered earlier run", doneB, doneC)
		}
	}
	if v, lost := b2.lost(); !lost || v != 1 {
		t.Errorf("b2 reports lost %v at %d; want version 1 lost", lost, v)
	}
	if v, lost := c2.lost(); !lost || v != 1 {
		t.Errorf("c2 reports lost %v at %d; want version 1 lost", lost, v)
	}
}

// A seat's state passed twice counts once: a run of {a, b, c} does not
// recover from b alone.
func TestRecoverCountsEachSeatOnce(t *testing.T) {
	cfg := cfgOf(1, "a", "b", "c")
	b := newSeatAcceptor(run{"b", "1"}, cfg, seatL+seatM, seatSettle, 0)
	a2 := newSeatAcceptor(run{"a", "2"}, seatConfig{}, seatL+seatM, seatSettle, 0)
	st := b.state(seatStateAsk{From: a2.self}, seatSettle)
	n, _ := a2.recover([]seatState{st, st}, seatSettle)
	st = b.state(seatStateAsk{From: a2.self, Number: n}, seatSettle)
	if _, done := a2.recover([]seatState{st, st}, seatSettle); done {
		t.Fatal("a2 recovered from b's state alone, passed twice; recoveryNeed is 2 other seats")
	}
}
