package replica

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// Timing of the seat tests: a lease of L, grants of L + m at the seat.
const (
	seatL      = 600 * time.Millisecond
	seatM      = 65 * time.Millisecond
	seatSettle = seatL + seatM
)

func cfgOf(version uint64, seats ...string) seatConfig {
	s := slices.Clone(seats)
	slices.Sort(s)
	return seatConfig{Version: version, Seats: s}
}

func TestASeatChangeAddsOrRemovesOneSeat(t *testing.T) {
	base := cfgOf(3, "a", "b", "c")
	for _, tc := range []struct {
		next seatConfig
		want bool
	}{
		{cfgOf(4, "a", "b", "c", "d"), true},
		{cfgOf(4, "a", "b"), true},
		{cfgOf(4, "a", "b", "c"), true}, // a no-op: a stuck instance finished
		{cfgOf(4, "a", "b", "d"), false},
		{cfgOf(4, "a", "b", "c", "d", "e"), false},
		{cfgOf(5, "a", "b", "c", "d"), false},
		{cfgOf(4), false},
	} {
		if got := base.oneApart(tc.next); got != tc.want {
			t.Errorf("%v after %v: oneApart %v, want %v", tc.next, base, got, tc.want)
		}
	}
}

func TestASeatRefusesARevokedEpochAndNamesTheNewOne(t *testing.T) {
	a := newSeatAcceptor(run{"a", "1"}, cfgOf(1, "a", "b", "c"), seatL+seatM, seatSettle, 0)
	d := run{"d", "1"}
	if ans := a.grantLease(seatGrantAsk{Holder: d}, 0, true); !ans.Granted {
		t.Fatalf("first ask refused: %+v", ans)
	}
	rev := a.revoke(seatRevokeAsk{Holder: d, Epoch: 0}, 100*time.Millisecond)
	if rev.Retry || rev.Remaining != seatL+seatM-100*time.Millisecond {
		t.Fatalf("revocation answered %+v, want the grant's remaining %v", rev, seatL+seatM-100*time.Millisecond)
	}
	ans := a.grantLease(seatGrantAsk{Holder: d}, 200*time.Millisecond, true)
	if ans.Granted || ans.Epoch != 1 {
		t.Fatalf("ask at the revoked epoch answered %+v, want refused naming epoch 1", ans)
	}
	if ans := a.grantLease(seatGrantAsk{Holder: d, Epoch: 1}, 300*time.Millisecond, true); !ans.Granted {
		t.Fatalf("ask at the new epoch refused: %+v", ans)
	}
	// Another run of d is another holder.
	if ans := a.grantLease(seatGrantAsk{Holder: run{"d", "2"}}, 300*time.Millisecond, true); !ans.Granted {
		t.Fatalf("a new run of d refused: %+v", ans)
	}
}

func TestASealedSeatRecordsNoRevocationUntilTheDecision(t *testing.T) {
	base := cfgOf(1, "a", "b", "c")
	a := newSeatAcceptor(run{"a", "1"}, base, seatL+seatM, seatSettle, 0)
	d := run{"d", "1"}
	now := seatSettle
	if pr := a.prepare(seatPrepare{Version: 2, Ballot: seatBallot{Round: 1, Proposer: "b"}}, now); !pr.OK {
		t.Fatalf("prepare after settle refused: %+v", pr)
	}
	if ans := a.revoke(seatRevokeAsk{Holder: d}, now); !ans.Retry {
		t.Fatalf("a sealed seat recorded a revocation: %+v", ans)
	}
	if a.refuses(d, 1, 0, now) {
		t.Fatal("a sealed seat refuses a holder it never recorded a revocation of")
	}
	a.decide(seatDecide{Config: cfgOf(2, "a", "b", "c", "d"), Revoked: revocations{d: 1}}, now)
	if !a.refuses(d, 1, 0, now) || a.sealed {
		t.Fatalf("after the decision: refuses %v, sealed %v; want the decision's revocation kept and the seat unsealed", a.refuses(d, 1, 0, now), a.sealed)
	}
}

func TestAFirstPrepareWaitsUntilTheSeatHasHeldItsConfigForSettle(t *testing.T) {
	a := newSeatAcceptor(run{"a", "1"}, cfgOf(1, "a", "b", "c"), seatL+seatM, seatSettle, 0)
	a.decide(seatDecide{Config: cfgOf(2, "a", "b", "c", "d")}, time.Second)
	if pr := a.prepare(seatPrepare{Version: 3, Ballot: seatBallot{Round: 1, Proposer: "b"}}, time.Second+seatSettle/2); pr.OK {
		t.Fatal("a seat promised for the next change before its grants under the config before could lapse")
	}
	if pr := a.prepare(seatPrepare{Version: 3, Ballot: seatBallot{Round: 1, Proposer: "b"}}, time.Second+seatSettle); !pr.OK {
		t.Fatalf("a seat settled at its config refused: %+v", pr)
	}
}

func TestARestartedSeatRecoversFromEnoughOtherSeats(t *testing.T) {
	cfg := cfgOf(4, "a", "b", "c", "d", "e")
	d := run{"x", "1"}
	peer := func(name string, revoked revocations, promised uint64) seatState {
		return seatState{Seat: run{name, "1"}, Active: true, Config: cfg, Revoked: revoked, Promised: seatBallot{Round: promised, Proposer: "b"}, Sealed: promised > 0}
	}
	a := newSeatAcceptor(run{"a", "2"}, seatConfig{}, seatL+seatM, seatSettle, 0)
	two := []seatState{peer("b", revocations{d: 1}, 0), peer("c", nil, 3)}
	two[0].Numbers = seatNumbers{"a": 4}
	if n, done := a.recover(two, 0); done || n != 0 {
		t.Fatal("picked a number from two of four other seats of five; it needs three")
	}
	three := append(two, peer("d", nil, 0))
	n, done := a.recover(three, 0)
	if done || n <= 4 || n != runNumber(4, a.self) {
		t.Fatalf("first round: number %d, done %v; want %d, above the highest known (4), to announce", n, done, runNumber(4, a.self))
	}
	if _, done := a.recover(three, 0); done {
		t.Fatal("recovered from states given before the seats recorded its number")
	}
	for i := range three {
		three[i].For = n
	}
	if _, done := a.recover(three, 0); !done {
		t.Fatal("did not recover from three of four other seats of five")
	}
	if a.active(seatSettle-time.Millisecond) || !a.active(seatSettle) {
		t.Fatal("a restarted run must answer only from settle after it started")
	}
	if !a.refuses(d, 1, 0, seatSettle) || a.promised.Round != 3 || !a.sealed {
		t.Fatalf("recovered state: refuses %v, promised %v, sealed %v; want the revocation, the highest promise and the seal", a.refuses(d, 1, 0, seatSettle), a.promised, a.sealed)
	}
	lone := newSeatAcceptor(run{"a", "2"}, seatConfig{}, seatL+seatM, seatSettle, 0)
	if _, done := lone.recover([]seatState{{Seat: run{"b", "1"}, Active: true, Config: cfgOf(7, "a")}}, 0); done {
		t.Fatal("a lone seat recovered: no other seat holds its state")
	}
}

// A recovering run reports its config's state lost once a majority of
// the config's seats, itself among them if it is one, are recovering:
// fewer than |C| − maj(C) + 1 others are left to give state, so none of
// them can recover. With fewer recovering it waits and reports nothing,
// and a state given by a seat that recovered clears the report.
func TestARecoveringRunReportsItsConfigLostOnlyWhenTooFewSeatsRemain(t *testing.T) {
	sure := func(cfg seatConfig, name string) seatState {
		return seatState{Seat: run{name, "1"}, Active: true, Config: cfg}
	}
	recovering := func(name string) seatState { return seatState{Seat: run{name, "2"}, Recovering: true} }
	three := cfgOf(3, "a", "b", "c")
	b := newSeatAcceptor(run{"b", "2"}, seatConfig{}, seatL+seatM, seatSettle, 0)
	lost := func(a *seatAcceptor) uint64 {
		if v, ok := a.lost(); ok {
			return v
		}
		return 0
	}
	if _, done := b.recover([]seatState{sure(three, "a")}, 0); done || lost(b) != 0 {
		t.Fatalf("b of {a,b,c} with a's state alone: done %v, lost %d; want it waiting for c, no loss reported", done, lost(b))
	}
	if _, done := b.recover([]seatState{sure(three, "a"), recovering("c")}, 0); done || lost(b) != 3 {
		t.Fatalf("b and c of {a,b,c} both recovering: done %v, lost %d; want version 3 reported lost", done, lost(b))
	}
	x := newSeatAcceptor(run{"x", "2"}, seatConfig{}, seatL+seatM, seatSettle, 0)
	x.recover([]seatState{sure(three, "a"), recovering("b")}, 0)
	if lost(x) != 0 {
		t.Fatalf("x, no seat, with one seat of {a,b,c} recovering reports version %d lost", lost(x))
	}
	x.recover([]seatState{sure(three, "a"), recovering("b"), recovering("c")}, 0)
	if lost(x) != 3 {
		t.Fatalf("x, no seat, with two seats of {a,b,c} recovering reports %d; want version 3 lost", lost(x))
	}
	if x.recover([]seatState{sure(three, "a"), recovering("b"), sure(three, "c")}, 0); lost(x) != 0 {
		t.Fatalf("c recovered, and x still reports version %d lost", lost(x))
	}
	five := cfgOf(6, "a", "b", "c", "d", "e")
	e := newSeatAcceptor(run{"e", "2"}, seatConfig{}, seatL+seatM, seatSettle, 0)
	e.recover([]seatState{sure(five, "a"), recovering("b")}, 0)
	if lost(e) != 0 {
		t.Fatalf("b and e of five seats recovering: e reports version %d lost; three seats can still give state", lost(e))
	}
	e.recover([]seatState{sure(five, "a"), recovering("b"), recovering("c")}, 0)
	if lost(e) != 6 {
		t.Fatalf("b, c and e of five seats recovering: e reports %d; want version 6 lost", lost(e))
	}
	// An even config: a restarted run needs every other seat but one
	// (recoveryNeed), so two of four recovering stall, though they are
	// no majority.
	four := cfgOf(4, "a", "b", "c", "d")
	d := newSeatAcceptor(run{"d", "2"}, seatConfig{}, seatL+seatM, seatSettle, 0)
	if d.recover([]seatState{sure(four, "a"), sure(four, "b"), sure(four, "c")}, 0); lost(d) != 0 {
		t.Fatalf("d alone of four seats recovering reports version %d lost", lost(d))
	}
	if d.recover([]seatState{sure(four, "a"), sure(four, "b"), recovering("c")}, 0); lost(d) != 4 {
		t.Fatalf("c and d of four seats recovering: d reports %d; want version 4 lost", lost(d))
	}
	// Runs that know no config, and hear only from runs recovering too:
	// the cluster's seats all lost their state.
	f := newSeatAcceptor(run{"f", "2"}, seatConfig{}, seatL+seatM, seatSettle, 0)
	f.recover([]seatState{recovering("g")}, 0)
	if v, ok := f.lost(); !ok || v != 0 {
		t.Fatalf("f, knowing no config, hearing only g recovering: lost %d, %v; want reported, version unknown", v, ok)
	}
	f.recover([]seatState{recovering("g"), {Seat: run{"h", "1"}}}, 0)
	if _, ok := f.lost(); ok {
		t.Fatal("f reports the seats lost though h, not recovering, may yet give it state")
	}
}

func TestAHolderServesOnGrantsFromAMajorityOfItsNewestSeats(t *testing.T) {
	h := newSeatHolder(run{"h", "1"}, cfgOf(1, "a", "b", "c"), seatL)
	grant := func(seat string, cfg seatConfig, epoch uint64) seatGrantAnswer {
		return seatGrantAnswer{Seat: run{seat, "1"}, Config: cfg, Granted: true, Epoch: epoch}
	}
	h.record(0, grant("a", cfgOf(1, "a", "b", "c"), 0))
	if h.live(time.Millisecond) {
		t.Fatal("live on one grant of three seats")
	}
	h.record(0, grant("b", cfgOf(1, "a", "b", "c"), 0))
	if !h.live(seatL-time.Millisecond) || h.live(seatL) {
		t.Fatal("a majority's grants must count for L from when they were asked, and no longer")
	}
	// A seat answering under a newer config moves the holder to it: the
	// grants under the older one stop counting.
	h.record(10*time.Millisecond, grant("c", cfgOf(2, "a", "b", "c", "d"), 0))
	if h.live(20 * time.Millisecond) {
		t.Fatal("grants under an older config counted toward the newer one")
	}
	if dead := h.record(20*time.Millisecond, seatGrantAnswer{Seat: run{"d", "1"}, Config: cfgOf(2, "a", "b", "c", "d"), Epoch: 1}); !dead || h.epoch != 1 {
		t.Fatalf("a refusal naming a higher epoch: declaredDead %v, epoch %d", dead, h.epoch)
	}
}

func TestARevocationEndsWithAMajorityAndForgetsRestartedSeats(t *testing.T) {
	cfg := cfgOf(1, "a", "b", "c")
	r := newSeatRevocation(run{"d", "1"}, 0, cfg, 10*time.Millisecond)
	answer := func(seat string, number uint64, remaining time.Duration, numbers seatNumbers) seatRevokeAnswer {
		return seatRevokeAnswer{Seat: run{seat, "x"}, Number: number, Config: cfg, Numbers: numbers, Remaining: remaining}
	}
	r.record(100*time.Millisecond, answer("a", 1, 400*time.Millisecond, nil))
	if _, done := r.ends(); done {
		t.Fatal("ended on one seat of three")
	}
	// b has recorded the number of a restarted run of a: a's answer no
	// longer binds.
	r.record(150*time.Millisecond, answer("b", 1, 0, seatNumbers{"a": 2}))
	if _, done := r.ends(); done {
		t.Fatal("ended counting the answer of a seat's run that has restarted since")
	}
	r.record(200*time.Millisecond, seatRevokeAnswer{Seat: run{"c", "1"}, Config: cfg, Retry: true})
	if _, done := r.ends(); done {
		t.Fatal("ended counting a retry")
	}
	r.record(300*time.Millisecond, answer("c", 1, 100*time.Millisecond, nil))
	if end, done := r.ends(); !done || end != 410*time.Millisecond {
		t.Fatalf("ends %v, %v; want the latest grant's end plus the margin, 410ms", end, done)
	}
	// A late answer from a's earlier run counts no more.
	r.record(310*time.Millisecond, answer("a", 1, 500*time.Millisecond, nil))
	if end, _ := r.ends(); end != 410*time.Millisecond {
		t.Fatalf("a late answer from a run older than one already named moved the end to %v", end)
	}
	// A newer config starts the round again.
	r.record(350*time.Millisecond, seatRevokeAnswer{Seat: run{"a", "x"}, Number: 2, Config: cfgOf(2, "a", "b", "c", "d"), Retry: true})
	if _, done := r.ends(); done {
		t.Fatal("a round still counted under the older config after a newer one was named")
	}
}

func TestAProposerFinishesTheValueAlreadyAccepted(t *testing.T) {
	base := cfgOf(1, "a", "b", "c")
	accepted := seatProposal{Ballot: seatBallot{Round: 1, Proposer: "a"}, Config: cfgOf(2, "a", "b")}
	p, prep := newSeatProposer("c", base, cfgOf(2, "a", "b", "c", "d"), 2)
	promise := func(seat string, acc seatProposal) seatPromise {
		return seatPromise{seatBallotAnswer: seatBallotAnswer{Seat: run{seat, "1"}, Config: base, OK: true, Promised: prep.Ballot}, Accepted: acc}
	}
	if acc := p.promise(promise("b", accepted)); acc != nil {
		t.Fatal("phase 2 began on one promise of three")
	}
	acc := p.promise(promise("c", seatProposal{}))
	if acc == nil || !slices.Equal(acc.Proposal.Config.Seats, accepted.Config.Seats) {
		t.Fatalf("phase 2 proposes %+v, want the value a seat accepted, %v", acc, accepted.Config)
	}
}

// The seat protocol explorer: a simulated cluster of runs exchanging the
// protocol's messages through a bag that loses, duplicates, delays and
// reorders them, with crashes and restarts under the same name, holders
// renewing, fencers revoking and proposers changing the seats one at a
// time, each choice drawn from a seed. After every step it checks:
//
//  1. at most one config of a cluster is decided per version, and each is
//     one seat apart from the one before;
//  2. once a revocation's fence has ended, the revoked holder run at that
//     epoch holds no majority of live grants (it would serve);
//  3. once a revocation has completed, no version at or after the one
//     before it has a majority of its seats, at that version, that would
//     grant the revoked epoch.
//
// In a fifth of the seeds (blank) every node starts knowing no config,
// split into two groups that cannot hear each other at first, and up to
// three of them found a cluster each (LEASES-AT-SCALE.md §6.2), as nodes
// started under a cut, or two clusters an operator joins, do.
//
// After a calm spell at the end (no losses, no crashes), one cluster is
// left, the earliest, and every run is active at one config of it,
// unsealed and sure of its state; in the seeds
// where runs crash freely (not oneAtATime, half of them), unless a
// majority of the newest config's seats lost their state at once, and
// then every run still recovering reports that config lost.
//
// Crashes keep, of every config in use, fewer than a majority of seats
// down, recovering or unsure at once (the protocol's fault bound: a
// restarted seat recovers from |C| − maj(C) + 1 others). Configs never
// shrink below two seats.
//
// go test runs seatGuardSeeds; TANDEM_SEATS=N runs N seeds from
// TANDEM_SEATS_SEED on.
func TestSeatProtocolExplorer(t *testing.T) {
	seeds := seatGuardSeeds
	if v := os.Getenv("TANDEM_SEATS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			t.Fatalf("TANDEM_SEATS=%q: want a positive number", v)
		}
		first := uint64(1)
		if s := os.Getenv("TANDEM_SEATS_SEED"); s != "" {
			if first, err = strconv.ParseUint(s, 10, 64); err != nil {
				t.Fatalf("TANDEM_SEATS_SEED=%q: want a number", s)
			}
		}
		seeds = nil
		for i := range uint64(n) {
			seeds = append(seeds, first+i)
		}
	} else if testing.Short() {
		seeds = seeds[:20] // CI runs -short under the race detector; the protocol has one goroutine
	}
	failed := 0
	var total seatSimStats
	for _, seed := range seeds {
		st, err := exploreSeats(seed)
		total.add(st)
		if err != nil {
			failed++
			t.Errorf("seed %d: %v", seed, err)
			if failed >= 5 {
				t.Fatal("stopping after five failed seeds")
			}
		}
	}
	t.Logf("%d seeds: %+v", len(seeds), total)
	// The schedules must reach what the checks are about.
	if total.Decided < uint64(len(seeds)) || total.Fences < uint64(len(seeds)) || total.Restarts < uint64(len(seeds))/2 || total.Refused == 0 || total.Recovered == 0 ||
		len(seeds) >= 3 && total.Settled == 0 || len(seeds) >= 20 && (total.Founded == 0 || total.Left == 0) {
		t.Errorf("the schedules did too little to check anything: %+v", total)
	}
}

// seatSimStats count what a schedule did.
type seatSimStats struct {
	Decided    uint64 // versions decided after the first
	Lost       uint64 // runs left waiting by a majority's state lost at once, reported
	Zombies    uint64 // earlier runs left alive beside a restarted one
	Superseded uint64 // current runs that learnt of a later run of their node, and restarted
	Fences     uint64 // revocations completed
	Restarts   uint64 // runs started after a crash
	Recovered  uint64 // restarted runs that recovered
	Refused    uint64 // grants refused to a revoked run
	Settled    uint64 // policy seeds whose seats the policy left as they were after the calm spell
	Founded    uint64 // clusters founded in blank seeds
	Left       uint64 // runs that left their cluster for an earlier one
	Revoked    uint64 // holders that learnt they were revoked for good, replaced by new ones
}

func (a *seatSimStats) add(b seatSimStats) {
	a.Decided += b.Decided
	a.Lost += b.Lost
	a.Zombies += b.Zombies
	a.Superseded += b.Superseded
	a.Fences += b.Fences
	a.Restarts += b.Restarts
	a.Recovered += b.Recovered
	a.Refused += b.Refused
	a.Settled += b.Settled
	a.Founded += b.Founded
	a.Left += b.Left
	a.Revoked += b.Revoked
}

// seatGuardSeeds are the seeds go test runs.
var seatGuardSeeds = func() []uint64 {
	s := make([]uint64, 200)
	for i := range s {
		s[i] = uint64(i + 1)
	}
	return s
}()

// seatMsg is a message in the explorer's bag.
type seatMsg struct {
	from, to run // to.incarnation "": whichever run is up
	body     any
	sent, at time.Duration
}

// seatSimProc is one node: its current run, if up.
type seatSimProc struct {
	name    string
	runs    int
	holders int // holders started after one was revoked
	up      bool
	self    run
	node    *seatNode     // the current run's
	acc     *seatAcceptor // node.acc
	hold    *seatHolder   // node.hold
	fences  []*seatSimFence
	// zombie: an earlier run still alive beside this one (L4: a paused
	// or cut-off process whose replacement started under its name). It
	// hears nothing and does nothing until resume, then answers and
	// acts as it did, until it dies.
	zombie        *seatSimProc
	resume, dieAt time.Duration // the zombie's
	downAt        time.Duration // when it last went down
}

// seatSimFence is a fencer's round and what the checks need of it.
type seatSimFence struct {
	*seatFence
	number uint64 // the revoked run's
	atVers uint64 // the config version it completed under
}

type seatSim struct {
	rng       *rand.Rand
	now       time.Duration
	procs     []*seatSimProc
	bag       []seatMsg
	decided   map[run]map[uint64]seatConfig // by cluster, then version
	fences    []*seatSimFence
	loss, dup float64
	cut       map[string]time.Duration    // a node cut off from everyone until then
	links     map[[2]string]time.Duration // messages from one node to another lost until then
	calm      bool
	// oneAtATime: a node goes down only while every other is up,
	// recovered and sure of its state (half the seeds).
	oneAtATime bool
	plan       *seatSimPlan
	stats      seatSimStats
	zombies    bool // restarts may leave the earlier run alive (on unless TANDEM_SEATS_ZOMBIES=0)
	// policy, in a third of the seeds: changes are the seat policy's,
	// proposed by its proposer, instead of drawn at random; after the
	// calm spell the policy must want no change.
	policy *seatPolicy
	// wire, in a quarter of the seeds: every message crosses the wire's
	// encoding (seatwire.go) on its way, so that runs hear only what the
	// wire carries.
	wire bool
	// foundings, in blank seeds: when each founder founds a cluster, if
	// it still knows none then.
	foundings []seatSimFounding
}

// seatSimFounding is a node due to found a cluster.
type seatSimFounding struct {
	at time.Duration
	p  *seatSimProc
}

// configs returns the configs decided in cluster c, by version.
func (s *seatSim) configs(c run) map[uint64]seatConfig {
	m := s.decided[c]
	if m == nil {
		m = map[uint64]seatConfig{}
		s.decided[c] = m
	}
	return m
}

// found starts a new run of p that founds a cluster.
func (s *seatSim) found(p *seatSimProc) {
	s.start(p, seatConfig{})
	cfg := foundingConfig(p.self)
	p.node = newSeatNode(p.self, cfg, seatL, seatM, s.rng, s.now)
	p.acc, p.hold = p.node.acc, p.node.hold
	s.configs(cfg.Cluster)[1] = cfg
	s.stats.Founded++
}

func (s *seatSim) proc(name string) *seatSimProc {
	for _, p := range s.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

// target returns the run message m reaches: the one it names, or, sent
// to the name, the current run or a live zombie of an earlier one, as
// routing happens to pick; nil if none is up.
func (s *seatSim) target(m seatMsg) *seatSimProc {
	p := s.proc(m.to.name)
	z := p.zombie
	if z != nil && s.now < z.resume {
		z = nil // paused: what it would hear is lost
	}
	switch {
	case m.to.incarnation == "" && z != nil && (!p.up || s.rng.IntN(2) == 0):
		return z
	case m.to.incarnation == "" && p.up:
		return p
	case z != nil && m.to.incarnation == z.self.incarnation:
		return z
	case p.up && m.to.incarnation == p.self.incarnation:
		return p
	}
	return nil
}

// restart starts a new run of p at once. With zombies on, the earlier
// run may stay alive beside it, paused for a while, then resumed.
func (s *seatSim) restart(p *seatSimProc) {
	if s.zombies && p.up && p.zombie == nil && s.rng.IntN(2) == 0 {
		z := *p
		z.fences = slices.Clone(p.fences) // the earlier run's node keeps its fences; the new one starts afresh
		z.zombie = nil
		z.resume = s.now + time.Duration(s.rng.IntN(1500))*time.Millisecond
		z.dieAt = z.resume + time.Duration(s.rng.IntN(3000))*time.Millisecond
		p.zombie = &z
		s.stats.Zombies++
	}
	s.start(p, seatConfig{})
	s.stats.Restarts++
}

func (s *seatSim) send(from, to run, body any) {
	if s.wire {
		body = wired(body)
	}
	if !s.calm && (s.rng.Float64() < s.loss || s.now < s.cut[from.name] || s.now < s.cut[to.name] || s.now < s.links[[2]string{from.name, to.name}]) {
		return
	}
	delay := time.Duration(s.rng.IntN(40)) * time.Millisecond
	if s.rng.IntN(10) == 0 {
		delay += time.Duration(s.rng.IntN(400)) * time.Millisecond
	}
	s.bag = append(s.bag, seatMsg{from: from, to: to, body: body, sent: s.now, at: s.now + delay})
	if !s.calm && s.rng.Float64() < s.dup {
		s.bag = append(s.bag, seatMsg{from: from, to: to, body: body, sent: s.now, at: s.now + delay + time.Duration(s.rng.IntN(200))*time.Millisecond})
	}
}

// learn records a config some run adopted as decided, checking (1).
func (s *seatSim) learn(c seatConfig) error {
	if c.Version == 0 {
		return nil
	}
	decided := s.configs(c.Cluster)
	if d, ok := decided[c.Version]; ok {
		if !slices.Equal(d.Seats, c.Seats) {
			return fmt.Errorf("two configs decided for version %d of cluster %v: %v and %v", c.Version, c.Cluster, d.Seats, c.Seats)
		}
		return nil
	}
	decided[c.Version] = c
	if prev, ok := decided[c.Version-1]; ok && !prev.oneApart(c) {
		return fmt.Errorf("version %d %v is not one seat apart from version %d %v", c.Version, c.Seats, prev.Version, prev.Seats)
	}
	if next, ok := decided[c.Version+1]; ok && !c.oneApart(next) {
		return fmt.Errorf("version %d %v is not one seat apart from version %d %v", next.Version, next.Seats, c.Version, c.Seats)
	}
	return nil
}

func (s *seatSim) start(p *seatSimProc, cfg seatConfig) {
	p.runs++
	p.up = true
	p.self = run{name: p.name, incarnation: strconv.Itoa(p.runs)}
	p.node = newSeatNode(p.self, cfg, seatL, seatM, s.rng, s.now)
	p.acc, p.hold, p.fences = p.node.acc, p.node.hold, nil
}

// deliver hands message m to its run, and sends what that run answers.
func (s *seatSim) deliver(m seatMsg) error {
	p := s.target(m)
	if p == nil {
		return nil
	}
	// The run may replace its acceptor and holder (seatNode.counts, when
	// a blank run switches clusters; rehold): the explorer's shortcuts
	// follow.
	defer func() { p.acc, p.hold = p.node.acc, p.node.hold }()
	if r, ok := m.body.(seatReply); ok {
		out, ev := p.node.answered(r.req, r.answer, r.sent, s.now, s.names())
		p.acc, p.hold = p.node.acc, p.node.hold
		s.sendAll(p, out)
		return s.happened(p, ev)
	}
	if d, ok := m.body.(seatDecide); ok && p.acc.recovered {
		if err := s.learn(d.Config); err != nil {
			return err
		}
	}
	answer := p.node.serve(m.body, s.now)
	p.acc, p.hold = p.node.acc, p.node.hold
	if ask, ok := m.body.(seatGrantAsk); ok {
		if ans := answer.(seatGrantAnswer); !ans.Granted && ans.Epoch > ask.Epoch {
			s.stats.Refused++
		}
	}
	if answer != nil {
		s.send(p.self, m.from, seatReply{req: m.body, answer: answer, sent: m.sent})
	}
	return nil
}

// happened records what an answer made happen at p: a config its ballot
// chose, its recovery, its fences' completion.
func (s *seatSim) happened(p *seatSimProc, ev seatEvents) error {
	for _, d := range []*seatDecide{ev.decided, ev.adopted} {
		if d == nil {
			continue
		}
		if err := s.learn(d.Config); err != nil {
			return err
		}
	}
	if ev.recovered {
		s.stats.Recovered++
		if err := s.learn(p.acc.cfg); err != nil {
			return err
		}
	}
	for _, done := range ev.fenced {
		for _, f := range p.fences {
			if f.seatFence == done {
				f.atVers = f.rev.cfg.Version
				s.fences = append(s.fences, f)
				s.stats.Fences++
			}
		}
	}
	return nil
}

// names returns every node's name.
func (s *seatSim) names() []string {
	out := make([]string, len(s.procs))
	for i, q := range s.procs {
		out[i] = q.name
	}
	return out
}

// sendAll sends what p's node asked to send.
func (s *seatSim) sendAll(p *seatSimProc, out []seatOut) {
	for _, o := range out {
		s.send(p.self, o.to, o.body)
	}
}

// wired returns body as the wire delivers it: encoded and decoded again.
// A message that does not cross whole is the explorer's failure.
func wired(body any) any {
	if r, ok := body.(seatReply); ok {
		r.req, r.answer = wired(r.req), wired(r.answer)
		return r
	}
	b, err := encodeSeat(body)
	if err != nil {
		panic(fmt.Sprintf("seat message %T does not encode: %v", body, err))
	}
	out, err := decodeSeat(b)
	if err != nil {
		panic(fmt.Sprintf("seat message %T does not decode: %v", body, err))
	}
	return out
}

// seatReply carries an answer back to the run that asked, with its
// request and when that was sent, as a transport's call returns them.
type seatReply struct {
	req, answer any
	sent        time.Duration
}

// act lets node p do what a node does by itself at s.now.
func (s *seatSim) act(p *seatSimProc) {
	out := p.node.tick(s.now, s.names(), func(cur seatConfig) (seatConfig, bool) {
		if !s.wantsChange(p) {
			return seatConfig{}, false
		}
		return s.change(cur), true
	})
	s.sendAll(p, out)
	// The proposer (the policy's, or else the lowest seat) asks every
	// member for its state once a lease, as the node's runner does.
	a := p.acc
	proposer := a.seat(s.now) && len(a.cfg.Seats) > 0 && a.cfg.Seats[0] == p.name
	if s.policy != nil {
		proposer = a.seat(s.now) && s.policy.proposer(a.cfg, s.members(a.cfg.Cluster)) == p.name
	}
	if proposer {
		s.sendAll(p, p.node.probe(s.now, s.names(), 6*p.node.timing.renew))
	}
	if p.hold.revoked && s.proc(p.name).zombie != p {
		// A fencer revoked its holder for good: the node goes on as a
		// new holder (it would reconcile first), its acceptor as it was.
		p.holders++
		p.node.rehold(run{name: p.name, incarnation: p.self.incarnation + "/h" + strconv.Itoa(p.holders)})
		p.hold = p.node.hold
		s.stats.Revoked++
	}
	stops := p.acc.recovered && p.acc.superseded()
	if stops || p.node.leaving() {
		// A later run of its node is known, or an earlier cluster: this
		// run stops. The node starts a new run, unless this is an
		// earlier one still alive beside its successor, which ends.
		if q := s.proc(p.name); q.zombie == p {
			q.zombie = nil
		} else {
			s.start(p, seatConfig{})
			if stops {
				s.stats.Superseded++
			} else {
				s.stats.Left++
			}
		}
	}
}

// change draws the next config: one seat added or removed, at most five,
// and never fewer than two, as the seat policy keeps them while there
// are two members: a lone seat's state is held nowhere else, and a run
// of it that restarted during the change could not recover.
// wantsChange reports whether p, a seat, proposes a change of its
// config now: by the policy, when p is its proposer and it wants one;
// else at random, outside the calm spell.
func (s *seatSim) wantsChange(p *seatSimProc) bool {
	a := p.acc
	if !a.seat(s.now) || a.sealed {
		return false
	}
	if s.policy != nil {
		members := s.members(a.cfg.Cluster)
		_, ok := s.policy.next(a.cfg, members)
		return ok && s.policy.proposer(a.cfg, members) == p.name && s.rng.IntN(10) == 0
	}
	return !s.calm && s.rng.IntN(30) == 0
}

// members returns what the seat policy of cluster c knows of the nodes:
// ready when the current run is up, active in c and sure of its state;
// absent for as long as it has been down. (A node learns this from
// membership and its peers' answers; the explorer reads it off the
// runs.)
func (s *seatSim) members(c run) []seatMember {
	var out []seatMember
	for _, q := range s.procs {
		m := seatMember{Name: q.name, Ready: q.up && q.acc.active(s.now) && !q.acc.unsure && q.acc.cfg.Cluster == c}
		if !q.up {
			m.Absent = max(s.now-q.downAt, time.Nanosecond)
		}
		out = append(out, m)
	}
	return out
}

// change returns the config p proposes after c: the policy's, or one
// seat added or removed at random.
func (s *seatSim) change(c seatConfig) seatConfig {
	if s.policy != nil {
		if next, ok := s.policy.next(c, s.members(c.Cluster)); ok {
			return next
		}
		return c.next(slices.Clone(c.Seats))
	}
	var out []string
	add := len(c.Seats) < 5 && (len(c.Seats) <= 2 || s.rng.IntN(2) == 0)
	if add {
		var free []string
		for _, q := range s.procs {
			if !c.holds(q.name) {
				free = append(free, q.name)
			}
		}
		if len(free) == 0 {
			return c.next(slices.Clone(c.Seats))
		}
		out = append(slices.Clone(c.Seats), free[s.rng.IntN(len(free))])
	} else {
		drop := s.rng.IntN(len(c.Seats))
		out = slices.Delete(slices.Clone(c.Seats), drop, drop+1)
	}
	slices.Sort(out)
	return c.next(out)
}

// inUse returns the configs a crash must leave a majority of: of every
// cluster a run that is up belongs to, the two newest decided, and any
// value accepted but not known decided.
func (s *seatSim) inUse() []seatConfig {
	var out []seatConfig
	clusters := map[run]bool{}
	for _, p := range s.procs {
		if c := p.acc.cfg; p.up && c.Version > 0 && !clusters[c.Cluster] {
			clusters[c.Cluster] = true
			decided := s.configs(c.Cluster)
			var top uint64
			for v := range decided {
				top = max(top, v)
			}
			out = append(out, decided[top])
			if prev, ok := decided[top-1]; ok {
				out = append(out, prev)
			}
			for _, q := range s.procs {
				if q.up && q.acc.cfg.Cluster == c.Cluster && q.acc.accepted.Config.Version > top {
					out = append(out, q.acc.accepted.Config)
				}
			}
		}
	}
	return out
}

// mayCrash reports whether p may go down: every config in use keeps
// recoveryNeed(C) of its seats, other than p, up and recovered.
func (s *seatSim) mayCrash(p *seatSimProc) bool {
	if s.oneAtATime {
		for _, q := range s.procs {
			if q != p && (!q.up || !q.acc.active(s.now) || q.acc.unsure) {
				return false
			}
		}
	}
	for _, c := range s.inUse() {
		up := 0
		for _, name := range c.Seats {
			if q := s.proc(name); q != p && q.up && q.acc.active(s.now) && !q.acc.unsure {
				up++
			}
		}
		if up < recoveryNeed(c) {
			return false
		}
	}
	return true
}

// runsOf returns the live runs of node name: its current one if up, and
// a zombie of an earlier one.
func (s *seatSim) runsOf(name string) []*seatSimProc {
	p := s.proc(name)
	var out []*seatSimProc
	if p.up {
		out = append(out, p)
	}
	if p.zombie != nil {
		out = append(out, p.zombie)
	}
	return out
}

// check runs checks 2 and 3.
func (s *seatSim) check() error {
	for _, f := range s.fences {
		h := f.rev.holder
		for _, p := range s.runsOf(h.name) {
			// (A revocation is its cluster's: a run of another cluster
			// may serve until the clusters meet, LEASES-AT-SCALE.md §6.2.)
			if s.now >= f.end && p.hold.self == h && p.hold.epoch <= f.rev.epoch && p.hold.cfg.Cluster == f.rev.cfg.Cluster && p.hold.live(s.now) {
				return fmt.Errorf("at %v holder %v at epoch %d holds a majority of live grants (config %v; leases %+v), though its revocation's fence ended at %v (replies %+v)", s.now, h, p.hold.epoch, p.hold.cfg, p.hold.leases, f.end, f.rev.replies)
			}
		}
		for v, c := range s.decided[f.rev.cfg.Cluster] {
			if v+1 < f.atVers {
				continue
			}
			if grant := s.wouldGrant(c, f); len(grant) >= c.majority() {
				return fmt.Errorf("at %v seats %v of version %d %v would grant %v at epoch %d, revoked under version %d", s.now, grant, v, c.Seats, h, f.rev.epoch, f.atVers)
			}
		}
	}
	return nil
}

// wouldGrant returns the largest set of c's seats, at c's version, whose
// grants f's revoked holder could count together now (check 3).
//
// An earlier run still alive holds stale records; it counts only where
// its grant would: it grants while it is live itself (R2.5), or to a
// seat of its config, and then the holder counts it until an answer
// names a later run of its node. That answer may be one of the others
// the holder needs for a majority: a holder merges the run numbers
// every answer names before it counts any grant (seatHolder.record),
// so an earlier run's grant never counts beside the grant of a run that
// knows a later run of the same node, in either order. The runs a
// restarted seat recovered from recorded its number first, and they
// meet every majority that holds it (LEASES-AT-SCALE.md §6.1, L4:
// "a seat holder is protected by the numbers"). Explorer seed 15175:
// c's own holder, revoked for good at {a's second run, b}, with c
// missed; a's first run, alive, would grant it, and so would c, which
// knows a's second run and so makes the holder drop a's first.
func (s *seatSim) wouldGrant(c seatConfig, f *seatSimFence) []string {
	h := f.rev.holder
	current := map[string]*seatSimProc{} // the current run of each seat, if it would grant
	var earlier []*seatSimProc           // earlier runs still alive that would grant, and count
	for _, name := range c.Seats {
		for _, q := range s.runsOf(name) {
			zombie := q != s.proc(name)
			counts := !zombie || q.hold.live(s.now)
			if zombie && !counts && q.acc.cfg.holds(h.name) {
				for _, hr := range s.runsOf(h.name) {
					counts = counts || hr.hold.self == h && hr.hold.numbers[name] <= q.acc.number
				}
			}
			if q.acc.cfg.Version != c.Version || q.acc.cfg.Cluster != c.Cluster || q.acc.refuses(h, f.number, f.rev.epoch, s.now) || !counts {
				continue
			}
			if zombie {
				earlier = append(earlier, q)
			} else {
				current[name] = q
			}
		}
	}
	// Each set of the earlier runs that name no later run of each
	// other's nodes, with every current run of another seat that names
	// no later run of theirs.
	names := func(q *seatSimProc, set []*seatSimProc) bool {
		return slices.ContainsFunc(set, func(z *seatSimProc) bool { return q != z && q.acc.numbers[z.name] > z.acc.number })
	}
	var best []string
	for mask := range 1 << len(earlier) {
		var set []*seatSimProc
		for i, z := range earlier {
			if mask&(1<<i) != 0 {
				set = append(set, z)
			}
		}
		if slices.ContainsFunc(set, func(q *seatSimProc) bool { return names(q, set) }) {
			continue
		}
		var grant []string
		for _, name := range c.Seats {
			if slices.ContainsFunc(set, func(z *seatSimProc) bool { return z.name == name }) {
				grant = append(grant, name)
			} else if q := current[name]; q != nil && !names(q, set) {
				grant = append(grant, name)
			}
		}
		if len(grant) > len(best) {
			best = grant
		}
	}
	return best
}

// exploreSeats runs one seed's schedule.
func exploreSeats(seed uint64) (seatSimStats, error) {
	s, err := runSeats(seed)
	for _, d := range s.decided {
		s.stats.Decided += uint64(len(d) - 1)
	}
	return s.stats, err
}

// runSeats runs one seed's schedule.
func runSeats(seed uint64) (*seatSim, error) {
	rng := rand.New(rand.NewPCG(seed, 0x5ea75))
	n := 2 + rng.IntN(5)
	s := &seatSim{
		rng: rng, decided: map[run]map[uint64]seatConfig{}, cut: map[string]time.Duration{}, links: map[[2]string]time.Duration{},
		loss: float64(rng.IntN(4)) / 10, dup: 0.05, oneAtATime: seed%2 == 0, zombies: os.Getenv("TANDEM_SEATS_ZOMBIES") != "0",
	}
	if seed%3 == 1 {
		s.policy = &seatPolicy{Seats: 3 + 2*rng.IntN(2), DeadFor: time.Second}
	}
	s.wire = seed%4 == 3
	first := 1 + rng.IntN(min(n, 5))
	var seats []string
	for i := range n {
		s.procs = append(s.procs, &seatSimProc{name: fmt.Sprintf("n%d", i)})
		if i < first {
			seats = append(seats, fmt.Sprintf("n%d", i))
		}
	}
	if seed%5 == 4 {
		// Blank: every node starts knowing no config, in two groups
		// that cannot hear each other for a while, and up to three
		// found a cluster each, early on.
		for _, p := range s.procs {
			s.start(p, seatConfig{})
		}
		until := time.Duration(500+rng.IntN(1500)) * time.Millisecond
		for _, p := range s.procs {
			for _, q := range s.procs {
				if (p.name < s.procs[n/2].name) != (q.name < s.procs[n/2].name) {
					s.links[[2]string{p.name, q.name}] = until
				}
			}
		}
		for _, i := range rng.Perm(n)[:1+rng.IntN(min(n, 3))] {
			s.foundings = append(s.foundings, seatSimFounding{at: time.Duration(rng.IntN(800)) * time.Millisecond, p: s.procs[i]})
		}
	} else {
		initial := cfgOf(1, seats...)
		s.configs(run{})[1] = initial
		for _, p := range s.procs {
			s.start(p, initial)
		}
	}
	steps, calmFrom := 6000, 5000
	if s.policy != nil {
		steps = 8000 // the policy's changes follow one another settle apart
	}
	for step := range steps {
		if step == calmFrom {
			s.calm = true
			clear(s.cut)
			clear(s.links)
			for _, p := range s.procs {
				p.zombie = nil // a calm spell: every earlier run has died
				if !p.up {
					s.start(p, seatConfig{})
				}
			}
		}
		s.now += time.Duration(1+rng.IntN(10)) * time.Millisecond
		s.foundings = slices.DeleteFunc(s.foundings, func(f seatSimFounding) bool {
			if s.now < f.at || !f.p.up {
				return false // a founder down founds once it is up again
			}
			if !f.p.acc.recovered && f.p.acc.cfg.Version == 0 {
				s.found(f.p)
			}
			return true
		})
		// Deliver what is due, in a random order.
		var due, later []seatMsg
		for _, m := range s.bag {
			if m.at <= s.now {
				due = append(due, m)
			} else {
				later = append(later, m)
			}
		}
		s.bag = later
		rng.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
		for _, m := range due {
			if err := s.deliver(m); err != nil {
				return s, err
			}
		}
		for _, p := range s.procs {
			if p.up {
				s.act(p)
			}
			if z := p.zombie; z != nil && s.now >= z.dieAt {
				p.zombie = nil
			} else if z != nil && s.now >= z.resume {
				s.act(z)
			}
		}
		if !s.calm {
			s.fault()
		}
		if err := s.check(); err != nil {
			return s, err
		}
	}
	// After the calm spell: one config everywhere, unsealed. Where state
	// was lost one run at a time (oneAtATime), always. Else the seats of
	// a config may have lost so many runs' state at once that fewer than
	// recoveryNeed remain to recover from (two of three both recovering,
	// or one recovering and one recovered only under the config before,
	// when it was chosen): nothing recovers that without disk, and every
	// run still recovering must say so (lost).
	// The earliest cluster any run is in, or recovers into, is the one
	// left.
	var left run
	for _, p := range s.procs {
		if c := p.node.cluster(); c != (run{}) && (left == (run{}) || clusterBefore(c, left)) {
			left = c
		}
	}
	decided := s.configs(left)
	var top uint64
	for v := range decided {
		top = max(top, v)
	}
	newest := decided[top]
	var recovering []string // seats of the newest config that hold no state of it
	for _, name := range newest.Seats {
		if q := s.proc(name); !q.acc.recovered || q.acc.unsure || q.acc.superseded() {
			recovering = append(recovering, name)
		}
	}
	// A run superseded by an earlier one still alive (L4) restarts too,
	// whatever else is down: state is then no longer lost one at a time.
	stateLost := (!s.oneAtATime || s.stats.Superseded > 0) && len(newest.Seats)-len(recovering) < recoveryNeed(newest)
	for _, p := range s.procs {
		a := p.acc
		if a.active(s.now) && !a.unsure && a.cfg.Version == top && a.cfg.Cluster == left && !a.sealed {
			continue
		}
		if a.recovered && a.cfg.Cluster != left {
			// A lost state excuses a run that cannot recover, never one
			// still in another cluster than the one left.
			return s, fmt.Errorf("after the calm spell %s is still in cluster %v, not the earliest, %v", p.name, a.cfg.Cluster, left)
		}
		if !stateLost {
			return s, fmt.Errorf("after the calm spell %s: active %v, unsure %v, at version %d of cluster %v (newest decided %d %v of %v, its seats recovering %v), sealed %v", p.name, a.active(s.now), a.unsure, a.cfg.Version, p.node.cluster(), top, newest.Seats, left, recovering, a.sealed)
		}
		s.stats.Lost++
		if v, ok := a.lost(); !a.recovered && (!ok || v != top && (v != 0 || a.cfg.Version != 0)) {
			return s, fmt.Errorf("after the calm spell %s is recovering and reports lost %d (%v); seats %v of version %d %v are recovering, too many to recover from, and it must report that version", p.name, v, ok, recovering, top, newest.Seats)
		}
	}
	if s.policy != nil && s.stats.Lost == 0 {
		if next, ok := s.policy.next(newest, s.members(left)); ok {
			return s, fmt.Errorf("after the calm spell the seat policy (%d seats) still wants %v after version %d %v", s.policy.Seats, next.Seats, top, newest.Seats)
		}
		s.stats.Settled++
	}
	return s, nil
}

// seatSimPlan is a seat restart, with a fence of a holder, due at a time.
type seatSimPlan struct {
	at           time.Duration
	seat, holder *seatSimProc
}

// fault draws at most one fault or fence for this step.
func (s *seatSim) fault() {
	if pl := s.plan; pl != nil && s.now >= pl.at {
		s.plan = nil
		f := s.procs[s.rng.IntN(len(s.procs))]
		if pl.seat.up && s.mayCrash(pl.seat) {
			s.restart(pl.seat)
		}
		if f != pl.holder && f.up && f.acc.active(s.now) && pl.holder.up && len(f.fences) < 8 {
			f.fences = append(f.fences, &seatSimFence{seatFence: f.node.fence(pl.holder.hold.self, forGood, 10*time.Millisecond), number: pl.holder.hold.number})
		}
		return
	}
	p := s.procs[s.rng.IntN(len(s.procs))]
	switch r := s.rng.IntN(1000); {
	case r < 4 && p.up && s.mayCrash(p):
		p.up, p.downAt = false, s.now
	case r < 12 && !p.up:
		s.start(p, seatConfig{})
		s.stats.Restarts++
	case r < 14 && p.up && s.mayCrash(p):
		// A restart: the run goes down and a new one starts at once,
		// while the grants the old run made still last.
		s.restart(p)
	case r < 15 && s.plan == nil:
		// A holder h talks only to seat p and one other for a while,
		// so the other seats' grants grow old and no refusal reaches
		// it; then p restarts while another node fences h, which may
		// still count the grant p's old run made.
		h := s.procs[s.rng.IntN(len(s.procs))]
		seats := h.hold.cfg.Seats
		if !h.up || !slices.Contains(seats, p.name) || h == p {
			return
		}
		keep := seats[s.rng.IntN(len(seats))]
		for _, q := range seats {
			if q != keep && q != p.name {
				s.links[[2]string{q, h.name}] = s.now + 2*time.Second
				s.links[[2]string{h.name, q}] = s.now + 2*time.Second
			}
		}
		s.plan = &seatSimPlan{at: s.now + seatL + time.Duration(s.rng.IntN(200))*time.Millisecond, seat: p, holder: h}
	case r < 16 && p.up && s.mayCrash(p):
		s.cut[p.name] = s.now + time.Duration(s.rng.IntN(1500))*time.Millisecond
	case r < 24:
		// Messages from p to q, or both ways, lost for a while.
		q := s.procs[s.rng.IntN(len(s.procs))]
		until := s.now + time.Duration(s.rng.IntN(2000))*time.Millisecond
		s.links[[2]string{p.name, q.name}] = until
		if s.rng.IntN(2) == 0 {
			s.links[[2]string{q.name, p.name}] = until
		}
	case r < 40:
		// p fences another node's current run, as if it had departed.
		q := s.procs[s.rng.IntN(len(s.procs))]
		if q != p && p.up && p.acc.active(s.now) && q.up && len(p.fences) < 8 {
			p.fences = append(p.fences, &seatSimFence{seatFence: p.node.fence(q.hold.self, forGood, 10*time.Millisecond), number: q.hold.number})
		}
	}
}

// A restarted seat answers nothing until its earlier run's grants have
// lapsed: a holder may still count such a grant, and the restarted run
// knows of none (its remaining would be 0), so a fence it helped end
// could end while the holder still serves on it.
func TestARestartedSeatAnswersOnlyOnceItsEarlierRunsGrantsHaveLapsed(t *testing.T) {
	cfg := cfgOf(1, "a", "b", "c")
	h := run{"h", "1"}
	old := newSeatAcceptor(run{"a", "1"}, cfg, seatL+seatM, seatSettle, 0)
	if ans := old.grantLease(seatGrantAsk{Holder: h}, time.Second, true); !ans.Granted {
		t.Fatalf("grant refused: %+v", ans)
	}
	// a restarts at once and recovers from b and c.
	restarted := newSeatAcceptor(run{"a", "2"}, seatConfig{}, seatL+seatM, seatSettle, time.Second)
	states := []seatState{
		{Seat: run{"b", "1"}, Active: true, Config: cfg, Numbers: seatNumbers{"a": 1}},
		{Seat: run{"c", "1"}, Active: true, Config: cfg, Numbers: seatNumbers{"a": 1}},
	}
	number, _ := restarted.recover(states, time.Second)
	for i := range states {
		states[i].For = number
	}
	if _, done := restarted.recover(states, time.Second); !done {
		t.Fatal("did not recover")
	}
	at := time.Second + 10*time.Millisecond
	if ans := restarted.revoke(seatRevokeAsk{Holder: h}, at); !ans.Retry {
		t.Fatalf("the restarted run answered a revocation at once (remaining %v) while its earlier run's grant lasts until %v", ans.Remaining, time.Second+seatL+seatM)
	}
	if ans := restarted.revoke(seatRevokeAsk{Holder: h}, time.Second+seatSettle); ans.Retry {
		t.Fatal("the restarted run still refuses to answer once its earlier run's grants have lapsed")
	}
}

// A restarted seat's number is above its first run's even when no
// message of the first run reached the others: else an answer the first
// run gave a fencer is never dropped, and the restarted run, recovered
// without the revocation, grants the revoked holder with another seat
// after the fence ends (found by a review; the explorer's messages then
// carried every sender's number, which the protocol's do not).
func TestARestartedSeatsNumberIsAboveItsFirstRuns(t *testing.T) {
	cfg := cfgOf(1, "a", "b", "c")
	a := newSeatAcceptor(run{"a", "1"}, cfg, seatL+seatM, seatSettle, 0)
	b := newSeatAcceptor(run{"b", "1"}, cfg, seatL+seatM, seatSettle, 0)
	c := newSeatAcceptor(run{"c", "1"}, cfg, seatL+seatM, seatSettle, 0)
	h := newSeatHolder(run{"h", "1"}, cfg, seatL)
	h.record(0, a.grantLease(h.ask(), 0, true))
	f := newSeatRevocation(h.self, 0, cfg, 10*time.Millisecond)
	f.record(5*time.Millisecond, a.revoke(f.ask(), 5*time.Millisecond))
	// a restarts and recovers from b and c, which never heard from it.
	a2 := newSeatAcceptor(run{"a", "2"}, seatConfig{}, seatL+seatM, seatSettle, 10*time.Millisecond)
	ask := seatStateAsk{From: a2.self}
	number, _ := a2.recover([]seatState{b.state(ask, 10*time.Millisecond), c.state(ask, 10*time.Millisecond)}, 10*time.Millisecond)
	if number < 2 {
		t.Fatalf("the restarted run picked number %d; its first run was 1", number)
	}
	ask.Number = number
	if _, done := a2.recover([]seatState{b.state(ask, 11*time.Millisecond), c.state(ask, 11*time.Millisecond)}, 11*time.Millisecond); !done {
		t.Fatal("did not recover")
	}
	f.record(20*time.Millisecond, b.revoke(f.ask(), 20*time.Millisecond))
	if end, done := f.ends(); done {
		t.Fatalf("the fence ended at %v counting the answer of a's first run, which a restarted run without the revocation replaced", end)
	}
}

// A restarted run that recovered under an older config, while a seat it
// recovered from had accepted the next one, recovers again under the
// newer config before it answers under it: its earlier run may have
// answered a revocation there (two scenarios a review found; each left
// a majority of the newer config that would grant a revoked holder).
func TestARunRecoveredUnderAnOlderConfigRecoversAgainUnderTheNewer(t *testing.T) {
	ms := time.Millisecond
	grantL := seatL + seatM
	h := run{"h", "1"}
	// decideChange runs one instance, from base to next, with the
	// acceptors named.
	decideChange := func(t *testing.T, acc map[string]*seatAcceptor, base, next seatConfig, by []string, now time.Duration) seatDecide {
		t.Helper()
		p, prep := newSeatProposer(by[0], base, next, 1)
		var accept *seatAccept
		for _, n := range by {
			if x := p.promise(acc[n].prepare(prep, now)); x != nil {
				accept = x
			}
		}
		var dec *seatDecide
		for _, n := range by {
			if x := p.accepted(acc[n].accept(*accept, now)); x != nil {
				dec = x
			}
		}
		if dec == nil {
			t.Fatal("no decision")
		}
		return *dec
	}
	// restart recovers a new run of name from the states of the given
	// seats, both rounds.
	tryRestart := func(acc map[string]*seatAcceptor, name string, from []string, now time.Duration) (*seatAcceptor, bool) {
		r := newSeatAcceptor(run{name, "2"}, seatConfig{}, grantL, seatSettle, now)
		ask := seatStateAsk{From: r.self}
		states := func() (out []seatState) {
			for _, n := range from {
				out = append(out, acc[n].state(ask, now))
			}
			return out
		}
		ask.Number, _ = r.recover(states(), 0)
		_, done := r.recover(states(), 0)
		return r, done
	}
	restart := func(t *testing.T, acc map[string]*seatAcceptor, name string, from []string, now time.Duration) *seatAcceptor {
		t.Helper()
		r, done := tryRestart(acc, name, from, now)
		if !done {
			t.Fatalf("%s did not recover from %v", name, from)
		}
		return r
	}
	granting := func(acc map[string]*seatAcceptor, cfg seatConfig, now time.Duration) (out []string) {
		for _, n := range cfg.Seats {
			if !acc[n].refuses(h, 1, 0, now) {
				out = append(out, n)
			}
		}
		return out
	}
	t.Run("a node that was no seat of the older config", func(t *testing.T) {
		c1, c2 := cfgOf(1, "a", "b"), cfgOf(2, "a", "b", "c")
		acc := map[string]*seatAcceptor{}
		for _, n := range []string{"a", "b", "c"} {
			acc[n] = newSeatAcceptor(run{n, "1"}, c1, grantL, seatSettle, 0)
		}
		now := seatSettle
		dec := decideChange(t, acc, c1, c2, []string{"a", "b"}, now)
		now += 10 * ms
		acc["b"].decide(dec, now) // a's decision is late
		acc["c"].decide(dec, now)
		f := newSeatRevocation(h, 0, c2, 10*ms)
		now += 10 * ms
		for _, n := range []string{"a", "b", "c"} {
			f.record(now, acc[n].revoke(f.ask(), now))
		}
		if _, done := f.ends(); !done {
			t.Fatal("the fence did not end")
		}
		// c restarts and hears only a, still at c1.
		now += 10 * ms
		acc["c"] = restart(t, acc, "c", []string{"a"}, now)
		now += 100 * ms
		acc["a"].decide(dec, now)
		acc["c"].decide(seatDecide{Config: acc["a"].cfg, Revoked: maps.Clone(acc["a"].revoked), Numbers: maps.Clone(acc["a"].numbers)}, now)
		now += seatSettle
		if g := granting(acc, c2, now); len(g) >= c2.majority() {
			t.Fatalf("%v of %v would grant the revoked holder", g, c2.Seats)
		}
	})
	t.Run("a seat of a smaller older config", func(t *testing.T) {
		c1, c2 := cfgOf(1, "a", "b", "c", "d"), cfgOf(2, "a", "b", "c", "d", "e")
		acc := map[string]*seatAcceptor{}
		for _, n := range []string{"a", "b", "c", "d", "e"} {
			acc[n] = newSeatAcceptor(run{n, "1"}, c1, grantL, seatSettle, 0)
		}
		now := seatSettle
		dec := decideChange(t, acc, c1, c2, []string{"a", "b", "c"}, now)
		now += 10 * ms
		for _, n := range []string{"a", "b", "e"} {
			acc[n].decide(dec, now)
		}
		f := newSeatRevocation(h, 0, c2, 10*ms)
		now += 10 * ms
		for _, n := range []string{"a", "b", "e"} { // the asks to c and d are lost
			f.record(now, acc[n].revoke(f.ask(), now))
		}
		if _, done := f.ends(); !done {
			t.Fatal("the fence did not end")
		}
		// a restarts and hears only c and d, still at c1. Recovering from
		// |C| − maj(C) + 1 seats, it recovered from them, at c1, and all
		// then adopted c2, where {a, c, d} would grant. Two states of a
		// four-seat config are now too few (recoveryNeed): it waits for a
		// third, and b's shows c2.
		now += 10 * ms
		if _, done := tryRestart(acc, "a", []string{"c", "d"}, now); done {
			t.Fatal("a recovered from two seats of four")
		}
		now += 100 * ms
		for _, n := range []string{"c", "d"} {
			acc[n].decide(dec, now)
		}
		acc["a"] = restart(t, acc, "a", []string{"b", "c", "d"}, now)
		if acc["a"].cfg.Version != c2.Version {
			t.Fatalf("a recovered at version %d, want %d", acc["a"].cfg.Version, c2.Version)
		}
		now += seatSettle
		if g := granting(acc, c2, now); len(g) >= c2.majority() {
			t.Fatalf("%v of %v would grant the revoked holder", g, c2.Seats)
		}
	})
}

// A seat unsure of an instance finishes it when it is stuck: the only
// seat that accepted may restart and wait for the unsure one's state,
// and no sure seat is left sealed to finish it (a review's schedule).
func TestAnUnsureSeatFinishesTheInstanceItIsUnsureOf(t *testing.T) {
	ms := time.Millisecond
	base, next := cfgOf(1, "a", "b", "c"), cfgOf(2, "a", "b", "c", "d")
	acc := map[string]*seatAcceptor{}
	for _, n := range []string{"a", "b", "c"} {
		acc[n] = newSeatAcceptor(run{n, "1"}, base, seatL+seatM, seatSettle, 0)
	}
	now := seatSettle
	p, prep := newSeatProposer("b", base, next, 1)
	var accept *seatAccept
	for _, n := range []string{"a", "b"} { // the prepare to c is lost
		if x := p.promise(acc[n].prepare(prep, now)); x != nil {
			accept = x
		}
	}
	p.accepted(acc["b"].accept(*accept, now)) // the accept to a is lost
	// a restarts and recovers from b and c: b accepted the next config.
	now += 10 * ms
	a := newSeatAcceptor(run{"a", "2"}, seatConfig{}, seatL+seatM, seatSettle, now)
	ask := seatStateAsk{From: a.self}
	states := func() []seatState { return []seatState{acc["b"].state(ask, now), acc["c"].state(ask, now)} }
	ask.Number, _ = a.recover(states(), 0)
	if _, done := a.recover(states(), 0); !done || !a.unsure {
		t.Fatalf("recovered %v, unsure %v; want recovered and unsure", done, a.unsure)
	}
	acc["a"] = a
	now += seatSettle + time.Second
	if !a.stuck(300*ms, now) {
		t.Fatal("the unsure seat, sealed with no decision for a second, does not count itself stuck")
	}
	// Its ballot, with c, finishes the instance with the accepted value.
	p2, prep2 := newSeatProposer("a", base, cfgOf(2, base.Seats...), a.promised.Round+1)
	accept = nil
	for _, n := range []string{"a", "c"} {
		if x := p2.promise(acc[n].prepare(prep2, now)); x != nil {
			accept = x
		}
	}
	if accept == nil {
		t.Fatal("the unsure seat's ballot gathered no majority of promises")
	}
	var dec *seatDecide
	for _, n := range []string{"a", "c"} {
		if x := p2.accepted(acc[n].accept(*accept, now)); x != nil {
			dec = x
		}
	}
	if dec == nil || !slices.Equal(dec.Config.Seats, next.Seats) {
		t.Fatalf("decided %+v; want the accepted %v", dec, next.Seats)
	}
}

// recoveredRun returns a run of name restarted at 0 that recovered at
// now from the first-config seats given (two rounds).
func recoveredRun(t *testing.T, name, incarnation string, now time.Duration, from ...*seatAcceptor) *seatAcceptor {
	t.Helper()
	r := newSeatAcceptor(run{name, incarnation}, seatConfig{}, seatL+seatM, seatSettle, 0)
	ask := seatStateAsk{From: r.self}
	states := func() []seatState {
		var out []seatState
		for _, s := range from {
			out = append(out, s.state(ask, now))
		}
		return out
	}
	ask.Number, _ = r.recover(states(), now)
	if _, done := r.recover(states(), now); !done {
		t.Fatalf("%v did not recover", r.self)
	}
	return r
}

// L4, one voice per seat: a's first run stays alive (paused, or cut
// off) while a second run recovers from b and c and, with b, revokes a
// holder h. After the fence h reaches only a's first run, which knows
// nothing of the revocation, and c, which did not record it: each rule
// that keeps h from a majority again, on its own.
func TestAnEarlierRunAliveBesideItsSuccessorKeepsNoRevokedHolderLive(t *testing.T) {
	cfg := cfgOf(1, "a", "b", "c")
	setup := func(t *testing.T) (a1, a2, b, c *seatAcceptor, h *seatHolder, after time.Duration) {
		a1 = newSeatAcceptor(run{"a", "1"}, cfg, seatL+seatM, seatSettle, 0)
		b = newSeatAcceptor(run{"b", "1"}, cfg, seatL+seatM, seatSettle, 0)
		c = newSeatAcceptor(run{"c", "1"}, cfg, seatL+seatM, seatSettle, 0)
		h = newSeatHolder(run{"h", "1"}, cfg, seatL)
		for _, s := range []*seatAcceptor{a1, b, c} {
			h.record(0, s.grantLease(h.ask(), 0, true))
		}
		a2 = recoveredRun(t, "a", "2", 100*time.Millisecond, b, c)
		if a2.active(100*time.Millisecond+seatSettle-time.Millisecond) || !a2.active(100*time.Millisecond+seatSettle) {
			t.Fatal("the second run must answer only settle after it recovered: until then its first run may hold and give grants it cannot know of")
		}
		at := 100*time.Millisecond + seatSettle
		f := newSeatRevocation(h.self, 0, cfg, 10*time.Millisecond)
		f.record(at, a2.revoke(f.ask(), at))
		f.record(at, b.revoke(f.ask(), at))
		end, done := f.ends()
		if !done {
			t.Fatal("the revocation did not end at a's second run and b")
		}
		return a1, a2, b, c, h, end + time.Millisecond
	}

	t.Run("a seat refuses an earlier run, so it is not live", func(t *testing.T) {
		a1, a2, b, c, _, now := setup(t)
		self := newSeatHolder(a1.self, cfg, seatL)
		for _, s := range []*seatAcceptor{a2, b, c} {
			if ans := s.grantLease(self.ask(), now, true); ans.Granted {
				t.Fatalf("%v granted a's first run, though it knows of a later one", s.self)
			}
		}
		self.record(now, a1.grantLease(self.ask(), now, true))
		if self.live(now) {
			t.Fatal("a's first run is live on its own grant alone")
		}
	})
	t.Run("an earlier run that is not live grants no non-seat (R2.5)", func(t *testing.T) {
		a1, _, _, _, h, now := setup(t)
		if ans := a1.grantLease(h.ask(), now, false); ans.Granted {
			t.Fatal("a's first run, not live, granted non-seat h")
		}
		if ans := a1.grantLease(seatGrantAsk{Holder: run{"b", "1"}, Number: 1}, now, false); !ans.Granted {
			t.Fatal("a seat that is not live refused a seat: liveness could never start")
		}
	})
	t.Run("a holder drops an earlier run's grant once an answer names a later one", func(t *testing.T) {
		a1, _, _, c, h, now := setup(t)
		h.record(now, a1.grantLease(h.ask(), now, true)) // as if a1 were live: the other protection is off
		h.record(now, c.grantLease(h.ask(), now, true))
		if h.live(now) {
			t.Fatal("revoked h is live after its fence ended, on grants from a's first run and from c")
		}
		// And in the other order: the earlier run's grant after c's answer.
		_, _, _, c, h, now = setup(t)
		h.record(now, c.grantLease(h.ask(), now, true))
		h.record(now, a1.grantLease(h.ask(), now, true))
		if h.live(now) {
			t.Fatal("revoked h counted a's first run's grant after c named a's later run")
		}
	})
	t.Run("a holder that learns of a later run of its own node stops", func(t *testing.T) {
		_, _, b, _, _, now := setup(t)
		old := newSeatHolder(run{"a", "1"}, cfg, seatL)
		old.record(now, b.grantLease(old.ask(), now, true))
		if !old.superseded || old.live(now) {
			t.Fatalf("a's first run as holder: superseded %v, live %v; b named a later run of a", old.superseded, old.live(now))
		}
	})
	t.Run("two runs picking at once never share a number, and the lower is superseded", func(t *testing.T) {
		x, y := runNumber(109525, run{"a", "2"}), runNumber(109525, run{"a", "3"})
		if x == y || x <= 109525 || y <= 109525 {
			t.Fatalf("numbers %d and %d picked above 109525 by two runs", x, y)
		}
		a1, _, _, _, _, now := setup(t)
		a1.hear("a", max(x, y))
		if !a1.superseded() || a1.active(now) || !a1.refuses(run{"h", "1"}, 1, 0, now) {
			t.Fatal("a run that knows a later run of its own node still answers")
		}
		if st := a1.state(seatStateAsk{From: run{"d", "1"}}, now); !st.Recovering || st.Active {
			t.Fatalf("a superseded run gave state %+v", st)
		}
	})
}
