package replica

import (
	"hash/fnv"
	"maps"
	"math"
	"slices"
	"time"
)

// This file is the seat protocol of docs/design/LEASES-AT-SCALE.md (§3,
// step 4 of its plan): leases from a majority of a small, agreed set of
// seats, fences that end once a majority of seats has revoked the
// departed holder, and seat changes agreed one name at a time by a
// single-decree Paxos instance per version. It is pure: no I/O, no
// clock (every transition takes the time on the caller's monotonic
// clock), in the style of ownership. It is not wired into Node yet: the
// node still leases from every member but one (lease.go). What is here
// is what the protocol explorer (seats_test.go) checks. A config a
// majority of whose seats lost their state at once (restarted, or
// recovered only under the config before) cannot be recovered without
// disk: its seats wait, and say so (seatAcceptor.lost;
// LEASES-AT-SCALE.md §6.1). An earlier run of a seat still alive beside
// its successor (L4) is shut out by run numbers and seat liveness
// (grantLease, seatHolder.record, superseded).
//
// Four roles, each a value the caller drives:
//   - seatAcceptor: what a seat keeps and answers (grants, revocations,
//     prepares, accepts, decisions, and its state to a restarted seat);
//   - seatHolder: a node that serves while it holds live grants from a
//     majority of its newest seats;
//   - seatRevocation: a fencer's round revoking one holder's grants;
//   - seatProposer: one ballot of one instance, proposing the next seats.

// seatConfig is one version of the seats: the names whose grants count.
// A name is a seat whichever run of it holds the name; a restarted seat
// votes again only once it has recovered its seat's state (recover).
type seatConfig struct {
	Version uint64   // 0: no config known
	Seats   []string // sorted, no duplicates
	// Cluster is the run that founded the cluster's first config: every
	// config of one cluster names it. Versions, run numbers and epochs
	// are a cluster's own, and what a run of another cluster says counts
	// for nothing (seatNode.counts; LEASES-AT-SCALE.md §6.2).
	Cluster run
}

// foundingConfig is the first config of a cluster that founder founds:
// version 1, founder its only seat, and founder its identity.
func foundingConfig(founder run) seatConfig {
	return seatConfig{Version: 1, Seats: []string{founder.name}, Cluster: founder}
}

// next returns the config of the version after c, of c's cluster, with
// seats.
func (c seatConfig) next(seats []string) seatConfig {
	return seatConfig{Version: c.Version + 1, Seats: seats, Cluster: c.Cluster}
}

// clusterBefore reports whether the cluster founded by a comes before
// the one founded by b: when two clusters meet, the earlier stays and
// the runs of the other leave theirs (seatNode.counts).
func clusterBefore(a, b run) bool {
	return a.name < b.name || a.name == b.name && a.incarnation < b.incarnation
}

// majority returns how many of c's seats make a majority.
func (c seatConfig) majority() int { return len(c.Seats)/2 + 1 }

// holds reports whether name is one of c's seats.
func (c seatConfig) holds(name string) bool {
	_, found := slices.BinarySearch(c.Seats, name)
	return found
}

// oneApart reports whether next may follow c: one version later, at least
// one seat, and at most one seat added or removed (a swap, one added and
// one removed, would let a majority of c miss a majority of next).
func (c seatConfig) oneApart(next seatConfig) bool {
	if next.Version != c.Version+1 || next.Cluster != c.Cluster || len(next.Seats) == 0 || !slices.IsSorted(next.Seats) {
		return false
	}
	changed := 0
	for _, s := range next.Seats {
		if !c.holds(s) {
			changed++
		}
	}
	for _, s := range c.Seats {
		if !next.holds(s) {
			changed++
		}
	}
	return changed <= 1
}

// seatBallot orders the proposals of one instance: by round, then by
// proposer name.
type seatBallot struct {
	Round    uint64
	Proposer string
}

// less reports whether b comes before o.
func (b seatBallot) less(o seatBallot) bool {
	return b.Round < o.Round || b.Round == o.Round && b.Proposer < o.Proposer
}

// seatProposal is a value proposed for an instance, under a ballot. The
// zero value is "none accepted".
type seatProposal struct {
	Ballot seatBallot
	Config seatConfig
}

// revokedForGood, as a run's lowest grantable epoch (revocations), means
// the run is refused at every epoch: a fencer revokes a departed holder's
// run for good (forGood), as it cannot know at which epoch the run asks.
// A holder refused so stops for good (seatHolder.revoked); its node goes
// on, if at all, as a new run, which has reconciled before it asks.
const revokedForGood = math.MaxUint64

// forGood is the epoch a fencer revokes at: every epoch below
// revokedForGood, so the run is revoked for good.
const forGood = revokedForGood - 1

// revocations are, for each run of a holder, the lowest epoch at which
// it may still be granted: a revocation of a run at epoch e raises it to
// e+1. They only grow, and merge by maximum.
type revocations map[run]uint64

// merge raises r to o, run by run.
func (r revocations) merge(o revocations) {
	for k, e := range o {
		r[k] = max(r[k], e)
	}
}

// seatNumbers are, for each seat name, the highest run number known. A
// seat's run has a number: 1 for the runs the cluster was created with;
// a restarted run picks one above every number the seats it recovers
// from know, and announces it before it takes their state (recover). An
// answer counted from a run of a seat whose name a later answer knows a
// higher number for is from before the seat restarted, and may have
// been lost with it: the asker counts it no longer, and asks again.
// Numbers only grow, so a late message cannot make a seat name an older
// run again (run identities, random per process, could not be ordered).
//
// Two runs of one name may pick at once (an earlier run, paused while it
// recovered, resumes beside its successor: L4), so a number's low bits
// come from the run's identity (runNumber): two runs never share one,
// and of two live runs the one with the lower number learns it is
// superseded and stops (seatAcceptor.superseded).
type seatNumbers map[string]uint64

// runNumber returns the number a restarted run picks above known, the
// highest known for its name: the next multiple of 2¹⁶, plus low bits
// from its identity, so that two runs picking above the same number
// differ (unless their identities' hashes collide, 1 in 65,536).
func runNumber(known uint64, self run) uint64 {
	h := fnv.New32a()
	h.Write([]byte(self.incarnation))
	return (known>>16+1)<<16 | uint64(h.Sum32()&0xffff)
}

// merge raises n to o, name by name.
func (n seatNumbers) merge(o seatNumbers) {
	for k, v := range o {
		n[k] = max(n[k], v)
	}
}

// The messages of the protocol. Each answer names the answering seat's
// run and config, so askers learn newer configs and notice restarts.
type (
	// seatGrantAsk asks a seat for a lease, for Holder, the run
	// numbered Number of its node, at Epoch. Known is the version of
	// the config the asking run's acceptor holds: a seat that knows a
	// newer one sends its decision back with the answer (catch-up).
	// Ring is the fingerprint of the ring the holder serves by: a seat
	// grants only under the same ring (seatNode.serve), so that a
	// holder is live only while a majority of the seats share its view
	// of the members (0 for none, as in the explorer).
	seatGrantAsk struct {
		Cluster run
		Holder  run
		Number  uint64
		Epoch   uint64
		Known   uint64
		Ring    uint64
	}
	// seatGrantAnswer grants or refuses a lease. Epoch is the epoch it
	// was granted at, or, refused, the lowest one the seat would grant.
	// Number is the answering run's number, and Numbers the highest the
	// seat knows: a holder drops what an earlier run of a seat granted
	// once it knows of a later one (L4), and stops for good once it
	// knows of a later run of its own node.
	//
	// Decision, when the ask's Known is older than the seat's config,
	// is the seat's decision of its config, for the asker's acceptor
	// to adopt (seatNode.serve). Ring is the fingerprint of the seat's
	// ring: a grant is made under it, and counts for a holder only
	// while the holder serves by the same ring.
	seatGrantAnswer struct {
		Seat     run
		Config   seatConfig
		Number   uint64
		Numbers  seatNumbers
		Granted  bool
		Epoch    uint64
		Decision *seatDecide
		Ring     uint64
	}
	// seatRevokeAsk revokes every grant to Holder at Epoch or below.
	seatRevokeAsk struct {
		Cluster run
		Holder  run
		Epoch   uint64
	}
	// seatRevokeAnswer says the seat refuses Holder at the revoked epoch
	// from now on, and for how much longer its last grant to it lasts;
	// Retry when it could not record the revocation (it is sealed or
	// recovering).
	seatRevokeAnswer struct {
		Seat      run
		Config    seatConfig
		Number    uint64
		Numbers   seatNumbers
		Retry     bool
		Remaining time.Duration
	}
	// seatPrepare is phase 1 of instance Version (the config after
	// Version-1) under Ballot.
	seatPrepare struct {
		Cluster run
		Version uint64
		Ballot  seatBallot
	}
	// seatBallotAnswer is what every answer to a proposer says: the
	// seat, its config, its run's number and the numbers it knows,
	// whether it took the ballot, and the ballot it has promised.
	seatBallotAnswer struct {
		Seat     run
		Config   seatConfig
		Number   uint64
		Numbers  seatNumbers
		OK       bool
		Promised seatBallot
	}
	// seatPromise answers a prepare: OK with what the seat accepted and
	// its revocations (as of the promise: a sealed seat records no
	// revocation, though grants and decisions may still raise them), or
	// not OK with what it promised or its config.
	seatPromise struct {
		seatBallotAnswer
		Accepted seatProposal
		Revoked  revocations
	}
	// seatAccept is phase 2 of instance Proposal.Config.Version.
	seatAccept struct {
		Proposal seatProposal
	}
	// seatAccepted answers an accept.
	seatAccepted struct {
		seatBallotAnswer
	}
	// seatDecide tells a seat the chosen config, with every revocation
	// it must keep refusing and the run numbers known.
	seatDecide struct {
		Config  seatConfig
		Revoked revocations
		Numbers seatNumbers
	}
	// seatStateAsk is a restarted run asking a seat for its state:
	// first with Number 0, then announcing the number it picked. A
	// proposer asks it too, to learn which members are ready. Cluster is
	// the asker's (none for a blank run that has heard of none).
	seatStateAsk struct {
		Cluster run
		From    run
		Number  uint64
	}
	// seatState is a seat's state, given to a restarted run of another
	// seat that recovers from it. A run that gives none says whether it
	// is recovering itself (not recovered, or unsure): it gives none
	// until it has recovered, from the states of other seats.
	//
	// Known, in an answer that gives no state, is the version of the
	// config the run knows (a run recovering again under a config it
	// adopted): the cluster has a config, and no run may found one
	// (seatrun.go's founding rule).
	seatState struct {
		Seat       run
		Cluster    run // the giving run's cluster: its config's, or the one it recovers into
		Recovering bool
		Known      uint64
		Number     uint64 // the giving run's own number
		For        uint64 // the number announced by the ask it answers, 0 if none
		Numbers    seatNumbers
		Active     bool
		Config     seatConfig
		Sealed     bool
		Promised   seatBallot
		Accepted   seatProposal
		Revoked    revocations
	}
)

// seatAcceptor is what one run of a node keeps as a seat (or as a node
// that may become one): the newest config it learned, the revocations it
// refuses by, its grants, and its part in the instance that follows its
// config. A run starts either with the config the cluster was created
// with, or recovering: it answers nothing until it has the state of
// enough other seats (recover) and settle has passed since it started.
type seatAcceptor struct {
	self   run
	grant  time.Duration // how long a grant lasts at the seat: L + m
	settle time.Duration // L + m: time at a version before the next is prepared; a restarted run's wait

	cfg      seatConfig
	since    time.Duration // when it learned cfg
	revoked  revocations
	granted  map[run]time.Duration // until when each holder run may rely on this seat
	number   uint64                // this run's number; 0 until a restarted run picks one
	numbers  seatNumbers
	sealed   bool // it promised or accepted in instance cfg.Version+1: revocations wait
	sealedAt time.Duration
	promised seatBallot
	accepted seatProposal

	recovered bool          // it holds a seat's state: the config it started with, or one recovered
	activeAt  time.Duration // when it may answer, once recovered
	// unsure: it recovered while a seat it recovered from had accepted a
	// config for the next version, which may have been chosen and used
	// (its earlier run may have answered under it). Until it knows the
	// outcome it only does its part as an acceptor of that instance,
	// which its recovered promise and accepted value make safe: it grants
	// nothing, records no revocation and gives no state. On the decision
	// it recovers again, under the newer config.
	unsure bool
	// isLost: this recovering run last found so many of the seats of
	// config version lostAt recovering too that fewer than
	// recoveryNeed(C) remain recovered (lostAt 0: every run that
	// answered is recovering and none knows a config). Each recovering
	// run needs the states of that many recovered seats other than its
	// own: the state those runs' earlier ones held is gone, and no run
	// of C can vote or recover.
	isLost bool
	lostAt uint64
}

// newSeatAcceptor starts a run of a node. With a config (the cluster's
// first), it is active at once; without, it recovers first.
func newSeatAcceptor(self run, cfg seatConfig, grant, settle, now time.Duration) *seatAcceptor {
	a := &seatAcceptor{
		self: self, grant: grant, settle: settle,
		cfg: cfg, since: now,
		revoked: revocations{}, granted: map[run]time.Duration{}, numbers: seatNumbers{},
		recovered: cfg.Version > 0, activeAt: now,
	}
	if a.recovered {
		// Every run of the cluster's first config is number 1, and the
		// others know it: a restarted run then picks 2 or more even if no
		// message of the first run reached them (a review found a run
		// that picked 1 again, and an answer of its first run that no
		// later answer could drop).
		a.number = 1
		for _, name := range cfg.Seats {
			a.numbers[name] = 1
		}
		a.numbers[self.name] = 1
	} else {
		a.activeAt = now + settle
	}
	return a
}

// active reports whether the run answers as a seat at now: recovered,
// settled, and not superseded.
func (a *seatAcceptor) active(now time.Duration) bool {
	return a.recovered && now >= a.activeAt && !a.superseded()
}

// superseded reports whether the run knows of a later run of its own
// node: an earlier run still alive beside its successor (L4), or, when
// two picked their numbers at once, the one that picked the lower. It
// answers nothing from then on; the node starts a new run, unless it is
// the earlier one, which ends.
func (a *seatAcceptor) superseded() bool {
	return a.number > 0 && a.numbers[a.self.name] > a.number
}

// seat reports whether the run votes at now: active, sure of its
// state, and one of its config's seats.
func (a *seatAcceptor) seat(now time.Duration) bool {
	return a.acceptor(now) && !a.unsure
}

// acceptor reports whether the run takes part in the instance after its
// config at now: active and one of its config's seats, sure or not.
func (a *seatAcceptor) acceptor(now time.Duration) bool {
	return a.active(now) && a.cfg.holds(a.self.name)
}

// hear notes a message from the run numbered number of node name.
func (a *seatAcceptor) hear(name string, number uint64) {
	a.numbers[name] = max(a.numbers[name], number)
}

// heardOf takes the run numbers an answer to this node's holder, fencer
// or proposer named: among them a later run of this node's own, which
// supersedes this one (superseded).
func (a *seatAcceptor) heardOf(numbers seatNumbers) { a.numbers.merge(numbers) }

// ballotAnswer returns the seat's answer to a ballot, not yet OK.
func (a *seatAcceptor) ballotAnswer() seatBallotAnswer {
	return seatBallotAnswer{Seat: a.self, Config: a.cfg, Number: a.number, Numbers: a.numbersCopy(), Promised: a.promised}
}

// numbersCopy returns a copy of the run numbers it knows, for an answer.
func (a *seatAcceptor) numbersCopy() seatNumbers { return maps.Clone(a.numbers) }

// grantLease answers a holder's ask for a lease: granted unless the seat
// does not vote, has revoked the holder's run at that epoch, knows of a
// later run of the holder's node, or, asked by a node that is no seat of
// its config, is not live itself (live: this run holds grants from a
// majority of its seats; R2.5). An ask at a higher epoch than the seat
// knows raises it: the holder learned it was declared dead from another
// seat.
//
// Liveness bounds an earlier run that is still alive beside its
// successor (a process paused, or cut off, while another took its name):
// once |C| − maj(C) + 1 other seats know the later run's number they
// refuse the earlier one, so it holds grants from at most maj(C) − 1
// seats, itself among them, and stops granting non-seats within a lease.
// Seats still grant seats without it, so that liveness can start; a
// seat holder drops what such a run grants once an answer names the
// later run (seatHolder.record).
func (a *seatAcceptor) grantLease(ask seatGrantAsk, now time.Duration, live bool) seatGrantAnswer {
	a.hear(ask.Holder.name, ask.Number)
	ans := seatGrantAnswer{Seat: a.self, Config: a.cfg, Number: a.number, Numbers: a.numbersCopy()}
	if !a.seat(now) || ask.Number < a.numbers[ask.Holder.name] || !live && !a.cfg.holds(ask.Holder.name) {
		ans.Epoch = ask.Epoch
		return ans
	}
	lowest := a.revoked[ask.Holder]
	if ask.Epoch < lowest || lowest == revokedForGood {
		ans.Epoch = lowest
		return ans
	}
	a.revoked[ask.Holder] = ask.Epoch
	a.granted[ask.Holder] = max(a.granted[ask.Holder], now+a.grant)
	ans.Granted, ans.Epoch = true, ask.Epoch
	return ans
}

// refuses reports whether the seat would refuse holder, the run numbered
// number of its node, at epoch now, if it were live (the explorer's view
// of its state).
func (a *seatAcceptor) refuses(holder run, number, epoch uint64, now time.Duration) bool {
	return !a.seat(now) || epoch < a.revoked[holder] || number < a.numbers[holder.name]
}

// revoke records a revocation of ask.Holder at ask.Epoch and says how
// long the seat's last grant to it lasts. A sealed seat answers Retry:
// what it records while sealed might miss the instance's gathering of
// revocations, so it records nothing until the decision.
func (a *seatAcceptor) revoke(ask seatRevokeAsk, now time.Duration) seatRevokeAnswer {
	ans := seatRevokeAnswer{Seat: a.self, Config: a.cfg, Number: a.number, Numbers: a.numbersCopy()}
	if !a.active(now) || a.sealed || a.unsure {
		ans.Retry = true
		return ans
	}
	a.revoked[ask.Holder] = max(a.revoked[ask.Holder], min(ask.Epoch, forGood)+1)
	ans.Remaining = max(0, a.granted[ask.Holder]-now)
	return ans
}

// prepare answers phase 1 of the instance after the seat's config. A
// promise seals the seat; the first seal waits until the seat has held
// its config for settle, so that grants made under the config before
// have lapsed before a second change can be made.
func (a *seatAcceptor) prepare(m seatPrepare, now time.Duration) seatPromise {
	ans := seatPromise{seatBallotAnswer: a.ballotAnswer()}
	if !a.acceptor(now) || m.Version != a.cfg.Version+1 || m.Ballot.less(a.promised) {
		return ans
	}
	if !a.sealed && now-a.since < a.settle {
		return ans
	}
	a.promised = m.Ballot
	if !a.sealed {
		a.sealed, a.sealedAt = true, now
	}
	ans.OK, ans.Promised, ans.Accepted, ans.Revoked = true, a.promised, a.accepted, maps.Clone(a.revoked)
	return ans
}

// accept answers phase 2. An accept seals the seat as a promise does.
func (a *seatAcceptor) accept(m seatAccept, now time.Duration) seatAccepted {
	ans := seatAccepted{seatBallotAnswer: a.ballotAnswer()}
	p := m.Proposal
	if !a.acceptor(now) || !a.cfg.oneApart(p.Config) || p.Ballot.less(a.promised) {
		return ans
	}
	a.promised, a.accepted = p.Ballot, p
	if !a.sealed {
		a.sealed, a.sealedAt = true, now
	}
	ans.OK, ans.Promised = true, a.promised
	return ans
}

// decide takes a chosen config newer than the seat's: the seat keeps the
// decision's revocations beside its own, unseals, and from then on
// answers under it.
func (a *seatAcceptor) decide(m seatDecide, now time.Duration) {
	if !a.recovered {
		return
	}
	a.revoked.merge(m.Revoked)
	a.numbers.merge(m.Numbers)
	if m.Config.Version <= a.cfg.Version {
		return
	}
	a.cfg, a.since = m.Config, now
	a.sealed, a.promised, a.accepted = false, seatBallot{}, seatProposal{}
	if a.unsure {
		// Recovered under an older config while the next was accepted
		// somewhere: this run's earlier one may have answered under
		// this one. It takes the states of this config's seats first.
		a.recovered, a.unsure = false, false
	}
}

// stuck reports whether the seat has been sealed for longer than wait
// without a decision: it should finish the instance itself.
func (a *seatAcceptor) stuck(wait, now time.Duration) bool {
	// An unsure seat finishes an instance too: a ballot is an ordinary
	// proposer's whoever runs it, and the instance it is unsure of may
	// have no sure seat left sealed to finish it (a review's schedule:
	// the only seat that accepted restarted, and the other waited on it).
	return a.acceptor(now) && a.sealed && now-a.sealedAt > wait
}

// state answers a restarted run of another node that recovers: its
// state, and, when the ask announces the run's number, the number too,
// recorded first (seatNumbers). A run not yet recovered gives nothing.
func (a *seatAcceptor) state(ask seatStateAsk, now time.Duration) seatState {
	if !a.active(now) || a.unsure {
		return seatState{Seat: a.self, Recovering: !a.recovered || a.unsure || a.superseded(), Known: a.cfg.Version}
	}
	a.hear(ask.From.name, ask.Number)
	return seatState{
		Seat: a.self, Number: a.number, For: ask.Number, Numbers: a.numbersCopy(), Active: true, Config: a.cfg, Sealed: a.sealed,
		Promised: a.promised, Accepted: a.accepted, Revoked: maps.Clone(a.revoked),
	}
}

// recover takes the states other seats gave this restarted run, in two
// rounds. It needs the newest config among them (or the one it adopted,
// recovering again) and the states of recoveryNeed(C) seats of that
// config other than itself, at that version, whether or not it is one of
// the seats: together with any majority that recorded a revocation,
// promised or accepted in the instance after it without this node's
// earlier run, they leave one seat in common. A state given by a run
// that any state knows a later run of does not count (L4). From the
// first round it
// picks its run number, one above every number they know for its name
// (at least 2: every first run is 1), and returns it to announce; the
// second round's states, given after each seat recorded that number
// (seatState.For), are the ones it recovers from: every revocation, the
// highest promise and the accepted proposal of the highest ballot. A
// seat that answered a revocation or a ballot before it gave its state
// has that in its state; one that answers after names the new number,
// and the asker drops the earlier run's answer. If one of them had
// accepted a config for the next version, that config may have been
// chosen and used while this run knew only the older one: the run is
// unsure, and recovers again under each newer config it adopts (decide).
// A lone seat cannot recover (no other seat holds its state): a cluster
// whose only seat restarted starts again. It returns the number to
// announce (0 before it has one) and whether it recovered at now; the
// run answers from settle after it started, and after it recovered.
func (a *seatAcceptor) recover(states []seatState, now time.Duration) (announce uint64, done bool) {
	if a.recovered {
		return a.number, true
	}
	newest := a.cfg // a run recovering again does so under the config it adopted, or a newer one
	for _, s := range states {
		if s.Active && s.Config.Version > newest.Version {
			newest = s.Config
		}
	}
	if newest.Version == 0 {
		a.isLost, a.lostAt = len(states) > 0 && !slices.ContainsFunc(states, func(s seatState) bool { return !s.Recovering }), 0
		return a.number, false
	}
	seat := newest.holds(a.self.name)
	// A state given by an earlier run of its seat, still alive beside a
	// later one (L4), lacks what the later run recorded: it counts for
	// nothing once any state, or this run, knows a higher number for
	// that seat. The numbers are kept at once, recovered or not: this
	// run's answers pass them on, so that a run that picked its number
	// below one another run announced (that run died before it
	// recovered, and the seats this one heard from had not recorded it)
	// learns it is superseded and starts again, rather than giving
	// states no one counts (explorer seed 4922: a two-seat config whose
	// live seat's states were dropped for good).
	for _, s := range states {
		if s.Active {
			a.numbers.merge(s.Numbers)
		}
	}
	known := a.numbers
	need := recoveryNeed(newest)
	var from []seatState
	for _, s := range states {
		if s.Active && s.Config.Version == newest.Version && newest.holds(s.Seat.name) && s.Seat.name != a.self.name &&
			s.For == a.number && s.Number >= known[s.Seat.name] &&
			!slices.ContainsFunc(from, func(f seatState) bool { return f.Seat.name == s.Seat.name }) {
			from = append(from, s) // one state a seat: a seat counts once however often it is passed
		}
	}
	a.isLost, a.lostAt = false, 0
	if len(from) < need {
		a.isLost, a.lostAt = a.stalled(newest, states), newest.Version
		return a.number, false
	}
	if a.number == 0 {
		// Above every number known for its name: every run before this
		// one was at least 1, and the states' numbers are merged above.
		a.number = runNumber(max(1, a.numbers[a.self.name]), a.self)
		return a.number, false
	}
	a.cfg = newest
	for _, s := range states {
		if s.Active {
			a.revoked.merge(s.Revoked)
		}
	}
	a.numbers[a.self.name] = max(a.numbers[a.self.name], a.number)
	for _, s := range from {
		a.unsure = a.unsure || s.Accepted.Config.Version == newest.Version+1
		if !seat {
			continue // not an acceptor of the next instance
		}
		if a.promised.less(s.Promised) {
			a.promised = s.Promised
		}
		if s.Accepted.Config.Version == newest.Version+1 && a.accepted.Ballot.less(s.Accepted.Ballot) {
			a.accepted = s.Accepted
		}
		a.sealed = a.sealed || s.Sealed
	}
	// It answers only settle after it recovered, too: the seats it
	// recovered from recorded its number first, and from then on refuse
	// its earlier run, which, if it is still alive (L4), may hold their
	// grants, and grant others, for up to a lease more.
	a.activeAt = max(a.activeAt, now+a.settle)
	a.sealedAt = a.activeAt // stuck only a wait after it answers
	a.recovered = true
	return a.number, true
}

// recoveryNeed returns how many other seats of cfg a restarted run
// recovers from, seat or not: the smallest count q such that
//   - they meet every majority of cfg (q ≥ |C| − maj(C) + 1), so one of
//     them shows a config accepted for the next version if one may have
//     been chosen, and holds every revocation a majority recorded;
//   - a later run's number, known to the q seats its run recovered from,
//     stays known to a seat other than its own that any later recovering
//     run hears from, however many of those q restart in turn, each
//     recovering from q others (2q − 2 > |C| − 2, so q ≥ maj(C)): a
//     state given under the seat's name by its earlier run, still alive
//     (L4), is then always outnumbered, and dropped.
//
// For odd sizes the two agree. A config of two seats cannot meet the
// second (it would take both seats' states, its own among them): there a
// restarted run recovers from the other seat alone, and an earlier run
// alive beside its successor while the other seat restarts too is the
// protocol's known limit (LEASES-AT-SCALE.md §6.1).
func recoveryNeed(cfg seatConfig) int {
	return max(len(cfg.Seats)-cfg.majority()+1, min(cfg.majority(), len(cfg.Seats)-1))
}

// stalled reports whether so many of cfg's seats, this run among them
// if it is one, are recovering by the latest states that fewer than
// recoveryNeed(cfg) remain to give state: a majority in odd configs, half
// in even ones (a state may be stale: what it returns is a report, acted
// on by no rule).
//
// A seat whose latest state comes from an earlier run that a later one
// outnumbers (recover drops it) counts as recovering too: its later run
// has not given state, and the earlier one's never counts (a review's
// schedule: b and c of {a, b, c} both restarted, their earlier runs
// alive and answering, each new run waiting for the other's state).
func (a *seatAcceptor) stalled(cfg seatConfig, states []seatState) bool {
	recovering := 0
	if cfg.holds(a.self.name) {
		recovering++
	}
	seen := map[string]bool{}
	for _, s := range states {
		outnumbered := s.Active && s.Number < a.numbers[s.Seat.name]
		if (s.Recovering || outnumbered) && s.Seat.name != a.self.name && cfg.holds(s.Seat.name) && !seen[s.Seat.name] {
			seen[s.Seat.name] = true
			recovering++
		}
	}
	return len(cfg.Seats)-recovering < recoveryNeed(cfg)
}

// lost reports whether this recovering run last found a majority of
// the seats of its newest config recovering too, and that config's
// version (0 when every run that answered is recovering and none knows
// a config). Without disk nothing brings that state back: a revocation
// only those runs had recorded may be gone. The seats wait, and say
// so; the way on is an operator's (LEASES-AT-SCALE.md §6.1).
func (a *seatAcceptor) lost() (version uint64, lost bool) {
	if a.recovered {
		return 0, false
	}
	return a.lostAt, a.isLost
}

// seatHolder is a node that serves while it holds live grants from a
// majority of the seats of the newest config it knows, all granted under
// that config and at its epoch.
type seatHolder struct {
	self   run
	number uint64        // this run's number (seatAcceptor.number); set before it asks
	lease  time.Duration // L: a grant counts for L from when it was asked
	epoch  uint64
	cfg    seatConfig
	ring   uint64               // the fingerprint of the ring the holder serves by: only grants made under it count
	leases map[string]seatLease // by seat name
	// numbers: the highest run numbers the answers named. A grant by an
	// earlier run of a seat stops counting once a later one is known; a
	// holder that learns of a later run of its own node is superseded,
	// and never serves again.
	numbers    seatNumbers
	superseded bool
	// revoked: a seat refused the run for good (revokedForGood). It
	// never serves again: its node must reconcile and go on as a new run.
	revoked bool
}

// seatLease is a grant a holder counts: until when, the config version
// it was granted under, the number of the seat's run that granted it,
// and the fingerprint of the seat's ring when it did.
type seatLease struct {
	until   time.Duration
	version uint64
	number  uint64
	ring    uint64
}

// newSeatHolder returns a holder run that knows cfg. A run of the
// cluster's first config is number 1; a restarted run's number is set
// once its acceptor has recovered.
func newSeatHolder(self run, cfg seatConfig, lease time.Duration) *seatHolder {
	h := &seatHolder{self: self, lease: lease, cfg: cfg, leases: map[string]seatLease{}, numbers: seatNumbers{}}
	if cfg.Version > 0 {
		h.number = 1
	}
	return h
}

// ask returns the holder's ask for a lease.
func (h *seatHolder) ask() seatGrantAsk {
	return seatGrantAsk{Cluster: h.cfg.Cluster, Holder: h.self, Number: h.number, Epoch: h.epoch, Ring: h.ring}
}

// record takes a seat's answer to an ask sent at sent. It adopts a newer
// config, and reports declaredDead when the seat names a higher epoch:
// the holder then counts none of its grants and must catch up before it
// serves (Node.reconcileAll), asking again at the new epoch.
func (h *seatHolder) record(sent time.Duration, ans seatGrantAnswer) (declaredDead bool) {
	h.numbers.merge(ans.Numbers)
	h.numbers[ans.Seat.name] = max(h.numbers[ans.Seat.name], ans.Number)
	if h.numbers[h.self.name] > h.number {
		h.superseded = true
		clear(h.leases)
		return false
	}
	for name, l := range h.leases {
		if l.number < h.numbers[name] {
			delete(h.leases, name) // granted by an earlier run of the seat
		}
	}
	if ans.Number < h.numbers[ans.Seat.name] {
		return false
	}
	if ans.Config.Version > h.cfg.Version {
		h.cfg = ans.Config
	}
	if !ans.Granted {
		if ans.Epoch == revokedForGood {
			h.revoked = true
		}
		if ans.Epoch > h.epoch {
			h.epoch = ans.Epoch
			clear(h.leases)
			return true
		}
		return false
	}
	if ans.Epoch != h.epoch || ans.Config.Version != h.cfg.Version {
		return false
	}
	if l := h.leases[ans.Seat.name]; l.version != ans.Config.Version || l.number != ans.Number || l.ring != ans.Ring || l.until < sent+h.lease {
		h.leases[ans.Seat.name] = seatLease{until: sent + h.lease, version: ans.Config.Version, number: ans.Number, ring: ans.Ring}
	}
	return false
}

// live reports whether the holder may serve at now: live grants, under
// its newest config and its ring, from a majority of that config's
// seats.
func (h *seatHolder) live(now time.Duration) bool {
	if h.cfg.Version == 0 || h.superseded || h.revoked {
		return false
	}
	n := 0
	for _, s := range h.cfg.Seats {
		if l, ok := h.leases[s]; ok && l.version == h.cfg.Version && l.ring == h.ring && l.until > now {
			n++
		}
	}
	return n >= h.cfg.majority()
}

// liveUntil returns until when the holder is live by the grants it holds
// now (live): the time the majority-th latest of them lapses; 0 if it is
// not live at all.
func (h *seatHolder) liveUntil(now time.Duration) time.Duration {
	if !h.live(now) {
		return 0
	}
	var ends []time.Duration
	for _, s := range h.cfg.Seats {
		if l, ok := h.leases[s]; ok && l.version == h.cfg.Version && l.ring == h.ring && l.until > now {
			ends = append(ends, l.until)
		}
	}
	slices.Sort(ends)
	return ends[len(ends)-h.cfg.majority()]
}

// seatRevocation is a fencer's round revoking a holder run's grants at an
// epoch. It ends once a majority of the seats of the newest config the
// fencer knows have recorded it, each answering under that config and
// still the run it was when it answered; the fence lasts until the
// latest of their grants lapses, plus margin.
type seatRevocation struct {
	holder  run
	epoch   uint64
	margin  time.Duration // m′: the fencer's margin for clock rates
	cfg     seatConfig
	replies map[string]seatRevokeReply // by seat name
	known   seatNumbers                // the highest run numbers the answers named
}

// seatRevokeReply is one seat's answer as the round counts it.
type seatRevokeReply struct {
	number uint64        // the seat's run that answered
	until  time.Duration // received + remaining
}

// newSeatRevocation starts a round revoking holder at epoch under cfg.
func newSeatRevocation(holder run, epoch uint64, cfg seatConfig, margin time.Duration) *seatRevocation {
	return &seatRevocation{holder: holder, epoch: epoch, margin: margin, cfg: cfg, replies: map[string]seatRevokeReply{}, known: seatNumbers{}}
}

// ask returns the round's ask.
func (r *seatRevocation) ask() seatRevokeAsk {
	return seatRevokeAsk{Cluster: r.cfg.Cluster, Holder: r.holder, Epoch: r.epoch}
}

// record takes a seat's answer received at received. A newer config
// starts the round again under it. An answer from a seat's run older
// than one the answers have named is ignored, and a counted answer from
// such a run is dropped: the seat restarted, and may have recovered
// without the revocation (seatNumbers).
func (r *seatRevocation) record(received time.Duration, ans seatRevokeAnswer) {
	if ans.Config.Version > r.cfg.Version {
		r.cfg = ans.Config
		clear(r.replies)
	}
	r.known.merge(ans.Numbers)
	r.known[ans.Seat.name] = max(r.known[ans.Seat.name], ans.Number)
	for seat, rep := range r.replies {
		if rep.number < r.known[seat] {
			delete(r.replies, seat)
		}
	}
	if ans.Retry || ans.Number < r.known[ans.Seat.name] || ans.Config.Version != r.cfg.Version || !r.cfg.holds(ans.Seat.name) {
		return
	}
	until := received + ans.Remaining
	if rep, ok := r.replies[ans.Seat.name]; ok {
		until = max(until, rep.until)
	}
	r.replies[ans.Seat.name] = seatRevokeReply{number: ans.Number, until: until}
}

// ends reports when the fence ends, once the round is complete.
func (r *seatRevocation) ends() (time.Duration, bool) {
	if r.cfg.Version == 0 || len(r.replies) < r.cfg.majority() {
		return 0, false
	}
	var end time.Duration
	for _, rep := range r.replies {
		end = max(end, rep.until)
	}
	return end + r.margin, true
}

// seatProposer is one ballot of the instance after base: it proposes want
// unless a seat has accepted another value in the instance, which it then
// finishes.
type seatProposer struct {
	base     seatConfig
	want     seatConfig
	ballot   seatBallot
	promises map[string]seatPromise // by seat name
	accepts  map[string]uint64      // seat name → number of the run that accepted
	known    seatNumbers            // the highest run numbers the answers named
	proposal seatProposal           // set once phase 2 begins
	revoked  revocations            // merged from the promises
	failed   bool                   // a seat promised a higher ballot, or knows a newer config
	highest  seatBallot             // the highest ballot a seat named
}

// newSeatProposer starts a ballot proposing want after base. want must be
// oneApart from base; the caller picks a round above any it has seen.
func newSeatProposer(proposer string, base, want seatConfig, round uint64) (*seatProposer, seatPrepare) {
	p := &seatProposer{
		base: base, want: want, ballot: seatBallot{Round: round, Proposer: proposer},
		promises: map[string]seatPromise{}, accepts: map[string]uint64{}, revoked: revocations{}, known: seatNumbers{},
	}
	return p, seatPrepare{Cluster: base.Cluster, Version: base.Version + 1, Ballot: p.ballot}
}

// dropRestarted learns the run numbers an answer names, and forgets
// what seats answered under runs older than the newest known: they
// restarted since, and may have recovered without it. It reports
// whether the answer itself is from such an old run.
func (p *seatProposer) dropRestarted(seat run, number uint64, numbers seatNumbers) (old bool) {
	p.known.merge(numbers)
	p.known[seat.name] = max(p.known[seat.name], number)
	for name, pr := range p.promises {
		if pr.Number < p.known[name] {
			delete(p.promises, name)
		}
	}
	for name, n := range p.accepts {
		if n < p.known[name] {
			delete(p.accepts, name)
		}
	}
	return number < p.known[seat.name]
}

// heard takes what every answer to the proposer says: the run numbers
// it knows, the seat's config, and the ballot it promised. A seat that
// knows a newer config, or refused for a higher ballot, fails this
// ballot. It reports whether the answer is from a seat's run older than
// one known.
func (p *seatProposer) heard(m seatBallotAnswer) (old bool) {
	old = p.dropRestarted(m.Seat, m.Number, m.Numbers)
	if p.highest.less(m.Promised) {
		p.highest = m.Promised
	}
	if m.Config.Version > p.base.Version || !m.OK && p.ballot.less(m.Promised) {
		p.failed = true
	}
	return old
}

// promise takes a seat's promise. Once a majority of base's seats have
// promised it returns the accept to send them (once).
func (p *seatProposer) promise(m seatPromise) *seatAccept {
	old := p.heard(m.seatBallotAnswer)
	if old || !m.OK || p.failed || p.proposal.Config.Version != 0 || m.Promised != p.ballot || !p.base.holds(m.Seat.name) {
		return nil
	}
	p.promises[m.Seat.name] = m
	if len(p.promises) < p.base.majority() {
		return nil
	}
	value := p.want
	var best seatBallot
	for _, pr := range p.promises {
		p.revoked.merge(pr.Revoked)
		if pr.Accepted.Config.Version == p.base.Version+1 && !pr.Accepted.Ballot.less(best) {
			best, value = pr.Accepted.Ballot, pr.Accepted.Config
		}
	}
	p.proposal = seatProposal{Ballot: p.ballot, Config: value}
	return &seatAccept{Proposal: p.proposal}
}

// accepted takes a seat's answer to the accept. Once a majority of base's
// seats have accepted, the proposal is chosen: it returns the decision to
// send to the seats of base and of the chosen config (and to anyone else).
func (p *seatProposer) accepted(m seatAccepted) *seatDecide {
	old := p.heard(m.seatBallotAnswer)
	if old || !m.OK || p.failed || p.proposal.Config.Version == 0 || m.Promised != p.ballot || !p.base.holds(m.Seat.name) {
		return nil
	}
	p.accepts[m.Seat.name] = m.Number
	if len(p.accepts) < p.base.majority() {
		return nil
	}
	return &seatDecide{Config: p.proposal.Config, Revoked: maps.Clone(p.revoked), Numbers: maps.Clone(p.known)}
}
