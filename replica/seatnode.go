package replica

import (
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// seatNode is one run of a node in the seat protocol (seats.go): its
// acceptor, its holder, the proposal and the fences it runs, and the
// timers that drive them. It decides what the run sends and how it
// answers, and, like the roles it holds, does no I/O and reads no clock.
// The explorer (TestSeatProtocolExplorer) carries its requests and
// answers through a bag that loses, delays and reorders them; the node's
// transport is to carry them over the peer wire, each answer the reply of
// its request (docs/design/LEASES-AT-SCALE.md, step 5). What the explorer
// checks of a run's behaviour is therefore what this type does.
type seatNode struct {
	self   run
	acc    *seatAcceptor
	hold   *seatHolder
	timing seatTiming
	rng    *rand.Rand // back-offs after a failed ballot

	prop      *seatProposer
	propAt    time.Duration // when prop began
	round     uint64        // the highest ballot round it has seen or used
	backoff   time.Duration // no ballot before then
	fences    []*seatFence
	states    map[string]seatState // the latest state each seat gave this recovering run
	renewAt   time.Duration        // the next round of asks
	announced bool                 // a recovering run sent its number
	probed    time.Duration        // when a proposer's last round of state asks went (probe)
	// joining is the cluster a run that knows no config recovers into:
	// the earliest it has heard of from a run of it lately (clusterBefore;
	// joinedAt). Only that cluster's states count.
	joining  run
	joinedAt time.Duration // when a message of joining last counted
	// leave is an earlier cluster than its own that this run heard of:
	// the run leaves its cluster, and the caller starts a new one,
	// blank, that recovers into the earlier (leaving).
	leave run
	// idle: the node serves nothing that needs its grants now (set by
	// its caller), so its holder lets them lapse: it renews them only
	// if the node holds a seat that a member holding none asked for a
	// grant within the last lease (demanded), as a seat grants such
	// members only while it is live itself (R2.5). The node's own
	// first request after a quiet spell asks for them (renewNow); a
	// seat asked while it is not live asks at once too (woken).
	idle bool
	// demanded is when a member that holds no seat last asked this seat
	// for a grant under its ring; woken, that the ask found the seat not
	// live, so its holder asks its own seats at once (wake).
	demanded time.Duration
	woken    bool
	// asked is when the holder last asked its seats, and askedRing
	// under which ring: renewNow asks again under the same ring only
	// after a pause, so that many requests finding the holder not live
	// at once send one round of asks, not one each.
	asked     time.Duration
	askedRing uint64
	// ring is the fingerprint of the ring the node serves by (setRing):
	// as a seat it grants only to holders of the same ring, and its
	// holder counts only grants made under it.
	ring uint64
}

// seatTiming is how often a seatNode acts.
type seatTiming struct {
	renew   time.Duration // between rounds of grant and revocation asks: L/6
	recover time.Duration // between a recovering run's rounds of state asks
	giveUp  time.Duration // a ballot not chosen by then is abandoned
	backoff time.Duration // after giving up, a random wait below this before the next ballot
	stuck   time.Duration // a seat sealed this long without a decision finishes the instance
}

// seatTimingFor returns the timing for a lease of lease: grants renewed
// six times a lease, as leases are today, and a ballot given up after
// four thirds of a lease.
func seatTimingFor(lease time.Duration) seatTiming {
	return seatTiming{renew: lease / 6, recover: lease / 6, giveUp: lease * 4 / 3, backoff: lease * 5 / 3, stuck: lease / 2}
}

// seatFence is a revocation a seatNode runs as a fencer, until a
// majority of its config's seats have recorded it; end is when the
// revoked holder's last grant from them has lapsed.
type seatFence struct {
	rev  *seatRevocation
	done bool
	end  time.Duration
}

// seatOut is a request a seatNode sends: to one run, or, with no
// incarnation, to whichever run of the name the transport reaches.
type seatOut struct {
	to   run
	body any
}

// seatEvents is what an answer made happen, for the caller to act on or
// report.
type seatEvents struct {
	decided   *seatDecide // this run's ballot chose a config (already adopted)
	adopted   *seatDecide // a decision an answer carried, taken by this recovered run
	recovered bool        // this restarted run recovered its state, under config as number
	config    seatConfig
	number    uint64
	fenced    []*seatFence // fences that completed
	other     run          // another cluster's, whose message counted for nothing
}

// newSeatNode starts a run: with a config, the cluster's first, active
// at once; without, recovering (seatAcceptor).
func newSeatNode(self run, cfg seatConfig, lease, margin time.Duration, rng *rand.Rand, now time.Duration) *seatNode {
	n := &seatNode{
		self:   self,
		acc:    newSeatAcceptor(self, cfg, lease+margin, lease+margin, now),
		hold:   newSeatHolder(self, cfg, lease),
		timing: seatTimingFor(lease),
		rng:    rng,
		states: map[string]seatState{},
	}
	n.hold.number = n.acc.number
	return n
}

// fence starts revoking holder's run at epoch under the node's config;
// margin is added to the holder's remaining grants for clock rates. A
// fencer of a departed holder revokes it for good (forGood): it cannot
// know the epoch the holder asks at.
func (n *seatNode) fence(holder run, epoch uint64, margin time.Duration) *seatFence {
	f := &seatFence{rev: newSeatRevocation(holder, epoch, n.acc.cfg, margin)}
	n.fences = append(n.fences, f)
	return f
}

// rehold replaces a holder revoked for good (seatHolder.revoked) with a
// new one, self: the node goes on serving, once it has reconciled, as a
// holder no fencer has revoked. Its acceptor is the seat's, and goes on:
// a revocation takes a holder's grants, not a seat's state.
func (n *seatNode) rehold(self run) {
	h := newSeatHolder(self, n.acc.cfg, n.hold.lease)
	h.number, h.ring = n.acc.number, n.ring
	n.hold = h
}

// unfence gives up the unfinished revocation of holder: its run is back
// in the node's ring, and no partition waits for it any more.
func (n *seatNode) unfence(holder run) {
	n.fences = slices.DeleteFunc(n.fences, func(f *seatFence) bool { return !f.done && f.rev.holder == holder })
}

// holdAs makes r the run the node's holder asks as: a node whose seats
// guard its leases holds as its ring run, so that a fencer, which knows
// only that, revokes every run of the process at once.
func (n *seatNode) holdAs(r run) { n.hold.self = r }

// renewNow returns the holder's asks for grants, to every seat of its
// config, at once: a request found the holder not live (the gate's rule
// 6). It asks nothing before its run has recovered.
func (n *seatNode) renewNow(now time.Duration) []seatOut {
	if !n.acc.recovered || n.hold.cfg.Version == 0 {
		return nil
	}
	if n.askedRing == n.ring && n.asked > 0 && now-n.asked < n.timing.renew/5 {
		return nil // a round under this ring is already on its way
	}
	n.renewAt = now + n.timing.renew
	return n.holderAsks(now)
}

// newestConfig returns the newest config the node knows: its acceptor's,
// or the one a seat's answer named to its holder, whichever is later.
func (n *seatNode) newestConfig() seatConfig {
	if n.acc.cfg.Version > n.hold.cfg.Version {
		return n.acc.cfg
	}
	return n.hold.cfg
}

// holderAsks returns the holder's asks for grants to every seat of the
// newest config the node knows, and notes when and under which ring it
// asked. A decision that reached the node's acceptor before any seat's
// answer named it is the holder's config too: otherwise a holder that
// asked nothing while the config grew (a node idle, holding no seat)
// asks the seats of the config before, and, once they have died, never
// hears of the config that holds it (TestTwoNodesAndAWitnessSurviveACrash:
// B's holder asked only the founder, killed 30 ms after the config of
// three was decided).
func (n *seatNode) holderAsks(now time.Duration) []seatOut {
	n.asked, n.askedRing = now, n.ring
	if c := n.newestConfig(); c.Cluster == n.hold.cfg.Cluster {
		n.hold.cfg = c
	}
	ask := n.hold.ask()
	ask.Known = n.acc.cfg.Version
	return toSeats(n.hold.cfg, ask)
}

// renewing reports whether the holder renews its grants by itself at
// now: while the node serves, or, idle, while it holds a seat that a
// member holding none asked for a grant within the last lease.
func (n *seatNode) renewing(now time.Duration) bool {
	return !n.idle || n.acc.cfg.holds(n.self.name) && n.demanded > 0 && now-n.demanded <= n.hold.lease
}

// wake returns the holder's asks for grants, at once, when a member
// that holds no seat found this seat not live (woken): idle, it had let
// its own grants lapse, and grants such members again once it holds
// them.
func (n *seatNode) wake(now time.Duration) []seatOut {
	if !n.woken {
		return nil
	}
	n.woken = false
	return n.renewNow(now)
}

// setRing records the fingerprint of the ring the node serves by, from
// when it installs it: grants made under another ring stop counting for
// its holder, and as a seat it grants only under this one.
func (n *seatNode) setRing(fp uint64) {
	n.ring, n.hold.ring = fp, fp
}

// toAll addresses body to every member but this node.
func (n *seatNode) toAll(members []string, body any) []seatOut {
	var out []seatOut
	for _, m := range members {
		if m != n.self.name {
			out = append(out, seatOut{to: run{name: m}, body: body})
		}
	}
	return out
}

// toSeats addresses body to every seat of cfg, this node's included.
func toSeats(cfg seatConfig, body any) []seatOut {
	out := make([]seatOut, 0, len(cfg.Seats))
	for _, s := range cfg.Seats {
		out = append(out, seatOut{to: run{name: s}, body: body})
	}
	return out
}

// tick is what the run does by itself at now, with members the names it
// knows: a recovering run asks everyone for their state; a recovered one
// renews its grants from its config's seats and asks them to record its
// unfinished fences, every renew; and a seat starts a ballot when it has
// been sealed too long (to finish the instance) or when propose, asked
// with its config, wants a change. A superseded run (a later run of its
// node is known) asks for nothing more: the caller restarts the node, or
// ends an earlier run.
func (n *seatNode) tick(now time.Duration, members []string, propose func(cur seatConfig) (seatConfig, bool)) (out []seatOut) {
	a := n.acc
	if !a.recovered {
		if now >= n.renewAt {
			n.renewAt = now + n.timing.recover
			return n.toAll(members, seatStateAsk{Cluster: n.cluster(), From: n.self, Number: a.number})
		}
		return nil
	}
	if now >= n.renewAt {
		n.renewAt = now + n.timing.renew
		if n.renewing(now) {
			out = append(out, n.holderAsks(now)...)
		}
		for _, f := range n.fences {
			if !f.done {
				out = append(out, toSeats(f.rev.cfg, f.rev.ask())...)
			}
		}
	}
	if a.superseded() {
		return out
	}
	if n.prop != nil && (n.prop.failed || now-n.propAt > n.timing.giveUp) {
		// Give up, and back off for a random while: proposers that keep
		// outbidding each other decide nothing.
		n.round = max(n.round, n.prop.highest.Round)
		n.prop = nil
		n.backoff = now + time.Duration(n.rng.Int64N(int64(n.timing.backoff)))
	}
	if n.prop != nil || now < n.backoff {
		return out
	}
	var want seatConfig
	switch {
	case a.stuck(n.timing.stuck, now):
		// Finish the instance: a ballot proposes the value a majority's
		// promises name, if any; this no-op otherwise.
		want = a.cfg.next(slices.Clone(a.cfg.Seats))
	case a.seat(now) && !a.sealed && propose != nil:
		next, ok := propose(a.cfg)
		if !ok {
			return out
		}
		want = next
		want.Cluster = a.cfg.Cluster
	default:
		return out
	}
	n.round = max(n.round, a.promised.Round) + 1
	var prep seatPrepare
	n.prop, prep = newSeatProposer(n.self.name, a.cfg, want, n.round)
	n.propAt = now
	return append(out, toSeats(a.cfg, prep)...)
}

// serve answers a request another run sent: nil for a decision, which
// has no answer.
func (n *seatNode) serve(body any, now time.Duration) any {
	if c := askCluster(body); !n.counts(c, now) && n.acc.cfg.Version > 0 {
		return n.refusal(body)
	}
	a := n.acc // after counts: a run that switched the cluster it joins has a new acceptor
	switch b := body.(type) {
	case seatGrantAsk:
		if b.Ring != n.ring {
			// The asker serves by another ring than this seat: no grant
			// (a refusal at the asker's own epoch, which tells it
			// nothing else).
			return seatGrantAnswer{Seat: a.self, Config: a.cfg, Number: a.number, Numbers: a.numbersCopy(), Epoch: b.Epoch, Ring: n.ring}
		}
		live := n.hold.live(now)
		if !a.cfg.holds(b.Holder.name) && a.seat(now) {
			n.demanded = now
			n.woken = n.woken || !live
		}
		ans := a.grantLease(b, now, live)
		ans.Ring = n.ring
		if b.Known < a.cfg.Version {
			if d, ok := n.decision(now); ok {
				ans.Decision = &d // the asker's acceptor is behind: catch it up
			}
		}
		return ans
	case seatRevokeAsk:
		return a.revoke(b, now)
	case seatPrepare:
		return a.prepare(b, now)
	case seatAccept:
		return a.accept(b, now)
	case seatDecide:
		a.decide(b, now)
	case seatStateAsk:
		st := a.state(b, now)
		st.Cluster = n.cluster()
		return st
	}
	return nil
}

// askCluster returns the cluster a request names: its asker's.
func askCluster(body any) run {
	switch b := body.(type) {
	case seatGrantAsk:
		return b.Cluster
	case seatRevokeAsk:
		return b.Cluster
	case seatPrepare:
		return b.Cluster
	case seatAccept:
		return b.Proposal.Config.Cluster
	case seatDecide:
		return b.Config.Cluster
	case seatStateAsk:
		return b.Cluster
	}
	return run{}
}

// answerCluster returns the cluster an answer names: its answerer's.
func answerCluster(answer any) run {
	switch b := answer.(type) {
	case seatGrantAnswer:
		return b.Config.Cluster
	case seatRevokeAnswer:
		return b.Config.Cluster
	case seatPromise:
		return b.Config.Cluster
	case seatAccepted:
		return b.Config.Cluster
	case seatState:
		return b.Cluster
	}
	return run{}
}

// cluster returns the run's cluster: its config's; none while it knows
// no config. What a run sends names it, so only a run of a cluster ever
// names one: a blank run's messages name none, and make no one join or
// leave a cluster that may have no run left.
func (n *seatNode) cluster() run { return n.acc.cfg.Cluster }

// counts reports whether a message that names cluster c counts at this
// run at now, and learns from it (LEASES-AT-SCALE.md §6.2). A message
// that names no cluster counts, and so does one of the run's own.
//
// A run that knows no config recovers into the earliest cluster it has
// heard of lately (joining): a message of an earlier one makes the run
// start its recovery afresh (the states, and the run numbers, it
// gathered of the other go); one of a later cluster
// counts for nothing. A cluster not heard of for two leases (its runs
// all left or died) is forgotten, and the next one heard of is joined.
//
// At a run of a cluster, a message of another counts for nothing, and
// when that cluster is the earlier, this run leaves its own (leaving): of
// two clusters that meet, the earlier stays.
func (n *seatNode) counts(c run, now time.Duration) bool {
	own := n.cluster()
	if c == (run{}) || c == own {
		return true
	}
	if n.acc.cfg.Version == 0 {
		if n.joining != (run{}) && c != n.joining && now-n.joinedAt > 12*n.timing.renew {
			n.joining = run{} // quiet for two leases: gone
		}
		if n.joining == (run{}) || clusterBefore(c, n.joining) {
			if n.joining != (run{}) {
				// What the run gathered of the other cluster goes,
				// the run numbers it learnt there too: a number of
				// that cluster's would outnumber, here, the seat it
				// names (a review's schedule: the run never recovered,
				// and reported a healthy config lost).
				n.acc = newSeatAcceptor(n.self, seatConfig{}, n.acc.grant, n.acc.settle, now)
				n.hold = newSeatHolder(n.hold.self, seatConfig{}, n.hold.lease)
				n.announced = false
			}
			n.joining = c
			for name, st := range n.states {
				if st.Cluster != (run{}) && st.Cluster != c {
					delete(n.states, name)
				}
			}
		}
		if c != n.joining {
			return false
		}
		n.joinedAt = now
		return true
	}
	if own != (run{}) && clusterBefore(c, own) && (n.leave == (run{}) || clusterBefore(c, n.leave)) {
		n.leave = c
	}
	return own == (run{}) // a config of no cluster: the tests' own
}

// leaving reports whether the run heard of an earlier cluster than its
// own: the caller starts a new run, blank, in its place.
func (n *seatNode) leaving() bool { return n.leave != (run{}) }

// refusal is how a run of a cluster answers a request of another: the
// answer of the request's kind that says only who answers and under which
// config, so that the asker counts it for nothing and learns of this
// cluster. A decision of another cluster has no answer.
func (n *seatNode) refusal(body any) any {
	a := n.acc
	ballot := seatBallotAnswer{Seat: n.self, Config: a.cfg}
	switch body.(type) {
	case seatGrantAsk:
		return seatGrantAnswer{Seat: n.self, Config: a.cfg}
	case seatRevokeAsk:
		return seatRevokeAnswer{Seat: n.self, Config: a.cfg, Retry: true}
	case seatPrepare:
		return seatPromise{seatBallotAnswer: ballot}
	case seatAccept:
		return seatAccepted{seatBallotAnswer: ballot}
	case seatStateAsk:
		return seatState{Seat: n.self, Cluster: n.cluster(), Known: a.cfg.Version}
	}
	return nil
}

// probe returns the state asks a proposer sends the other members of
// targets, at most once every every, to learn which are ready
// (seatPolicy) and whether any is of another cluster (counts): at most
// N − 1 asks a round, at one node. It returns nothing when targets is
// empty (the node is no proposer).
func (n *seatNode) probe(now time.Duration, targets []string, every time.Duration) []seatOut {
	if len(targets) == 0 || n.probed > 0 && now-n.probed < every {
		return nil
	}
	n.probed = now
	return n.toAll(targets, seatStateAsk{Cluster: n.cluster(), From: n.self})
}

// answered takes the answer to req, a request this run sent at sent,
// with members the names it knows: it returns what to send next, and
// what happened. An answer from a run under an older config than the
// one this run knows is caught up: this run sends it its decision
// (catchUp).
func (n *seatNode) answered(req, answer any, sent, now time.Duration, members []string) (out []seatOut, ev seatEvents) {
	if c := answerCluster(answer); !n.counts(c, now) {
		ev.other = c
		return nil, ev
	}
	a := n.acc // after counts: a run that switched the cluster it joins has a new acceptor
	switch b := answer.(type) {
	case seatGrantAnswer:
		a.heardOf(b.Numbers)
		if d := b.Decision; d != nil && a.recovered && d.Config.Version > a.cfg.Version {
			a.decide(*d, now)
			ev.adopted = d
		}
		if ask, ok := req.(seatGrantAsk); ok && ask.Holder == n.hold.self {
			// Only the holder that asked counts the grant: one asked by
			// a holder since revoked and replaced (rehold) is not the
			// new holder's (explorer seed 139).
			n.hold.record(sent, b)
		}
		out = n.catchUp(b.Seat, b.Config, now)
	case seatRevokeAnswer:
		a.heardOf(b.Numbers)
		out = n.catchUp(b.Seat, b.Config, now)
		ask, _ := req.(seatRevokeAsk)
		for _, f := range n.fences {
			if f.done || f.rev.ask() != ask {
				continue
			}
			f.rev.record(now, b)
			if end, ok := f.rev.ends(); ok {
				f.done, f.end = true, end
				ev.fenced = append(ev.fenced, f)
			}
		}
	case seatPromise:
		a.heardOf(b.Numbers)
		out = n.catchUp(b.Seat, b.Config, now)
		if n.prop != nil {
			if acc := n.prop.promise(b); acc != nil {
				out = append(out, toSeats(n.prop.base, *acc)...)
			}
		}
	case seatAccepted:
		a.heardOf(b.Numbers)
		out = n.catchUp(b.Seat, b.Config, now)
		if n.prop != nil {
			if d := n.prop.accepted(b); d != nil {
				a.decide(*d, now)
				ev.decided = d
				out = append(out, n.toAll(members, *d)...)
				n.prop = nil
			}
		}
	case seatState:
		if b.Active {
			out = n.catchUp(b.Seat, b.Config, now)
		}
		if a.recovered {
			break
		}
		n.states[b.Seat.name] = b
		states := make([]seatState, 0, len(n.states))
		for _, st := range n.states {
			states = append(states, st)
		}
		slices.SortFunc(states, func(x, y seatState) int { return strings.Compare(x.Seat.name, y.Seat.name) })
		announce, done := a.recover(states, now)
		if done {
			ev.recovered, ev.config, ev.number = true, a.cfg, a.number
			n.hold.cfg, n.hold.number = a.cfg, a.number
			break
		}
		if announce > 0 && !n.announced {
			n.announced = true
			out = append(out, n.toAll(members, seatStateAsk{Cluster: n.cluster(), From: n.self, Number: announce})...)
		}
	}
	return out, ev
}

// decision returns the decision a run that knows a config passes on to
// a run behind it: the config, every revocation it keeps and the run
// numbers it knows; ok is false while the run knows no decided config (a
// recovering run that adopted one, recovering again under it, does).
func (n *seatNode) decision(now time.Duration) (seatDecide, bool) {
	a := n.acc
	if !a.active(now) && (a.recovered || a.cfg.Version == 0) {
		return seatDecide{}, false
	}
	return seatDecide{Config: a.cfg, Revoked: maps.Clone(a.revoked), Numbers: a.numbersCopy()}, true
}

// catchUp returns the decision to send to seat, a run that answered
// under cfg, if this run knows a newer decided config: a seat that
// accepted a value but never heard the outcome stays sealed under the
// config before, and a run recovering again under a config it adopted
// may be the only one that learnt it. (A run behind that asks for grants
// gets the decision with the answer instead: seatGrantAsk.Known.)
func (n *seatNode) catchUp(seat run, cfg seatConfig, now time.Duration) []seatOut {
	if cfg.Version >= n.acc.cfg.Version {
		return nil
	}
	d, ok := n.decision(now)
	if !ok {
		return nil
	}
	return []seatOut{{to: seat, body: d}}
}
