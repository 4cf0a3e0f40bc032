package replica

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/tandem-io/tandem/ring"
)

// methodSeat carries one message of the seat protocol (seatwire.go); the
// reply is its answer, or nil for a decision.
const methodSeat = "seat"

// seatRunner is this node's part in the seat protocol when Config.Seats is
// set (docs/design/LEASES-AT-SCALE.md, step 5): a seatNode driven over the
// peer wire, with the seat policy choosing changes and a founding rule
// giving a new cluster its first config. Its holder's grants are the
// node's leases (the gate's rule 6, seatgate.go), and its fences revoke
// departed runs for good (rule 7): the node asks no member but its seats
// for leases while it serves. What it agrees on shows in seatStatus. The founding run
// names the cluster (seatConfig.Cluster); of two clusters that meet, the
// earlier stays and the other's runs leave theirs (seatNode.counts). Not
// yet built: a report of a recovery that waits on a seat that never
// answers.
type seatRunner struct {
	mu       sync.Mutex
	node     *seatNode // the current run; nil until the node has a ring
	first    run       // the process's first run: its ring incarnation, and the run every holder of the process asks as
	restarts int       // runs started in this process after the first
	// fencing: the departed runs this node revokes for good at the
	// seats (a fence of partitions it took over), until the revocation
	// completes; a run started again takes them up.
	fencing map[run]bool
	ticks   uint64 // heartbeats so far
	policy  seatPolicy
	expect  int // Config.BootstrapExpect: the smallest ring founding happens in
	rng     *rand.Rand
	seen    map[string]seatSeen      // what each member's latest state answer showed
	missing map[string]time.Duration // seats of the config missing from the ring, since when
	leaving map[string]bool          // members draining, as ownership last knew (their seats are vacated at once)
	// draining: this node drains (Drain), out of the ring it serves by:
	// its run goes on, as a seat, until its seat is handed over
	// (Node.handOverSeat).
	draining bool
	// waitLogged, lostLogged and revokedLogged: when the runner last
	// logged that founding waits, that the seats' state is lost, and
	// that this node's holder was revoked (seatLogEvery).
	waitLogged, lostLogged, revokedLogged time.Duration
}

// seatLogEvery is how often the runner repeats a warning that lasts.
const seatLogEvery = 10 * time.Second

// seatSeen is what a member's latest answer to a state ask showed.
type seatSeen struct {
	sent, at  time.Duration // when the ask went, and when the answer arrived
	asker     run           // this node's run that asked
	answerer  run           // the member's run that answered
	active    bool          // an active run: recovered and answering
	version   uint64        // its config's version, if active
	cluster   run           // its cluster (seatState.Cluster)
	hasConfig bool          // it knows a config: active under one, or recovering under one it adopted (seatState.Known)
}

// seenOf is what a state answer st, to asker's ask sent at sent, shows
// when it arrives at now.
func seenOf(st seatState, asker run, sent, now time.Duration) seatSeen {
	return seatSeen{sent: sent, at: now, asker: asker, answerer: st.Seat, active: st.Active,
		version: st.Config.Version, cluster: st.Cluster, hasConfig: st.Active && st.Config.Version > 0 || st.Known > 0}
}

// newSeatRunner returns the runner of a node configured for seats.
func newSeatRunner(cfg Config) *seatRunner {
	return &seatRunner{
		policy:  seatPolicy{Seats: cfg.Seats, DeadFor: 10 * cfg.LeaseDuration},
		expect:  cfg.BootstrapExpect,
		rng:     rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x5ea7)),
		seen:    map[string]seatSeen{},
		missing: map[string]time.Duration{},
		fencing: map[run]bool{},
	}
}

// seatStatus is what the node's run of the seat protocol knows.
type seatStatus struct {
	Active  bool       // recovered, settled, answering
	Config  seatConfig // the newest config it knows
	Sealed  bool       // it promised or accepted the next version
	Lost    bool       // a recovering run that found too many seats recovering (seatAcceptor.lost)
	LostAt  uint64     // the version of the config it found so, 0 if none was known
	Live    bool       // it holds grants from a majority of its config's seats
	Number  uint64     // its run's number
	Running bool       // the node runs the seat protocol at all
	Joining run        // knowing no config, the cluster it recovers into (none heard of yet: zero)
	Revoked bool       // its holder was revoked for good: the node serves nothing more
	Settled bool       // its config holds the seats the policy keeps for the ring's members (seatRunner.settled)
}

// seatStatus returns what the node's run of the seat protocol knows.
func (n *Node) seatStatus() seatStatus {
	r := n.seats
	if r == nil {
		return seatStatus{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.node == nil {
		return seatStatus{Running: true}
	}
	a, now := r.node.acc, n.mono()
	lostAt, lost := a.lost()
	tab := n.own.table()
	return seatStatus{Active: a.active(now), Config: a.cfg, Sealed: a.sealed, Lost: lost, LostAt: lostAt, Live: r.node.hold.live(now), Number: a.number, Running: true, Joining: r.node.joining,
		Revoked: n.own.seatHold.Load().revoked, Settled: tab != nil && r.settled(tab, now)}
}

// SeatStatus is what a node's run of the seat protocol knows
// (Config.Seats; docs/design/LEASES-AT-SCALE.md), for operators.
type SeatStatus struct {
	// Running says whether the node runs the seat protocol at all.
	Running bool
	// Cluster names the seats' cluster: the run that founded it, as
	// name/incarnation; "" while the node knows no config.
	Cluster string
	// Version is the newest config the node knows; 0 for none.
	Version uint64
	// Seats are that config's seats.
	Seats []string
	// Active says whether the node's run has recovered its state and
	// answers.
	Active bool
	// Live says whether the node's holder has been granted by a
	// majority of the seats under the ring the node serves by, and is
	// not revoked: what readiness asks of the seats (Readiness.SeatsLive).
	// An idle node lets its grants lapse and asks again on its next
	// request (seatNode.idle), and stays live; a node not yet granted
	// under a new ring, or found paused, is not, until a majority grants
	// it again.
	Live bool
	// Sealed says whether the node, a seat, has promised or accepted the
	// next version: a change of seats is under way.
	Sealed bool
	// Lost says whether the node's run, recovering, found so many of
	// the seats of config LostVersion recovering too that their state
	// cannot be recovered without disk: an operator's call.
	Lost bool
	// LostVersion is that config's version; 0 when no member knew one.
	LostVersion uint64
	// Number is the node's run's number in the cluster.
	Number uint64
	// Joining, while the node knows no config, names the cluster it
	// recovers into; "" if it has heard of none.
	Joining string
	// Revoked says the node was taken for departed and its grants were
	// revoked for good by the seats: it serves nothing more, and only a
	// new run of the process (a restart) is granted again.
	Revoked bool
	// Settled says the node's config holds the seats the policy keeps
	// for the members of its ring: a young cluster's seats grow one at a
	// time, and until they have grown a crash of one may leave the
	// others without a majority of seats (tandem.WaitConverged waits for
	// it).
	Settled bool
}

// SeatStatus returns what the node's run of the seat protocol knows.
func (n *Node) SeatStatus() SeatStatus {
	st := n.seatStatus()
	out := SeatStatus{Running: st.Running, Version: st.Config.Version, Seats: slices.Clone(st.Config.Seats), Active: st.Active, Live: n.Readiness().SeatsLive,
		Sealed: st.Sealed, Lost: st.Lost, LostVersion: st.LostAt, Number: st.Number, Revoked: st.Revoked, Settled: st.Settled}
	if st.Config.Version > 0 {
		out.Cluster = st.Config.Cluster.String()
	}
	if st.Joining != (run{}) {
		out.Joining = st.Joining.String()
	}
	return out
}

// tickSeats is the runner's heartbeat, every LeaseDuration/6: it starts
// the node's run once it has a ring, founds the cluster's first config
// when the founding rule says so, and sends what the run asks to send.
func (n *Node) tickSeats() {
	tab := n.own.table()
	if tab == nil {
		return
	}
	now, members := n.mono(), memberNames(tab)
	r := n.seats
	r.mu.Lock()
	if !tab.Has(n.cfg.Name) {
		// Draining, out of the ring: the run goes on only to hand its
		// seat over (handOverSeat), and starts nothing new.
		if !r.draining || r.node == nil || !r.node.acc.recovered {
			r.mu.Unlock()
			return
		}
	} else {
		r.tickMember(n, tab, now)
	}
	r.noteMissing(tab, now)
	r.leaving = n.own.leavers()
	r.startFences(n.own.margin())
	node := r.node
	node.setRing(tab.Fingerprint())
	// Idle once granted under the ring it serves by: a node not yet
	// granted under it is not ready (Readiness.SeatsLive), and asks.
	node.idle = !n.renewals.renewing(now, n.cfg.LeaseDuration) && n.own.seatHold.Load().granted == tab.Fingerprint()
	n.publishSeatHold(node, now)
	out := node.tick(now, members, func(cur seatConfig) (seatConfig, bool) { return r.propose(tab, cur, now) })
	r.ticks++
	if r.proposing(tab, now) {
		out = append(out, node.probe(now, members, r.probeEvery(tab, now))...)
	}
	r.mu.Unlock()
	for _, o := range out {
		n.sendSeat(tab, node, members, o)
	}
}

// tickMember is the part of the heartbeat of a node in the ring it
// serves by: it starts the node's run, or a new one, and founds the
// cluster's first config when the founding rule says so. The caller
// holds r's lock.
func (r *seatRunner) tickMember(n *Node, tab *ring.Table, now time.Duration) {
	switch {
	case r.node == nil || r.node.acc.recovered && r.node.acc.superseded():
		// The first run, or a run that learnt of a later one of this
		// node's: it picked its number at the same time as another
		// (a tie it lost), and starts again.
		r.start(runOf(tab, n.cfg.Name), false, n.cfg.LeaseDuration, n.own.margin(), now)
	case r.node.hold.revoked && (r.revokedLogged == 0 || now-r.revokedLogged >= seatLogEvery):
		// A fencer took this node for departed and revoked its ring run
		// for good: the others may have acknowledged writes without it,
		// and it serves nothing more. Only a new run of the process (a
		// restart, with a new boot id) is granted again.
		r.revokedLogged = now
		n.log.Error("this node was taken for departed and its seat grants revoked for good: it serves nothing more until it is restarted", "run", r.node.hold.self.String())
	case r.node.leaving():
		n.log.Warn("leaving this node's seat cluster for an earlier one it met; starting again, blank",
			"cluster", r.node.acc.cfg.Cluster.String(), "earlier", r.node.leave.String())
		r.start(r.node.self, false, n.cfg.LeaseDuration, n.own.margin(), now)
	}
	found, waiting := r.founding(tab, now)
	switch {
	case found:
		r.start(r.node.self, true, n.cfg.LeaseDuration, n.own.margin(), now)
		n.log.Info("founding a seat cluster: no member knows a config, and this node has the lowest name", "cluster", r.node.self.String())
	case len(waiting) > 0 && (r.waitLogged == 0 || now-r.waitLogged >= seatLogEvery):
		r.waitLogged = now
		n.log.Warn("seat founding waits: this node has the lowest name of a ring that knows no config, and these members have not answered (do they run with seats?)", "members", waiting)
	}
	if lostAt, lost := r.node.acc.lost(); lost && lostAt > 0 && (r.lostLogged == 0 || now-r.lostLogged >= seatLogEvery) {
		// (Lost under no config is a cluster starting blank: the
		// founding rule goes on from there, and nothing is lost.)
		r.lostLogged = now
		n.log.Error("seat state lost: too many seats of the config restarted at once for this node's run to recover from the others; without disk only an operator can go on", "version", lostAt)
	} else if !lost {
		r.lostLogged = 0
	}
}

// start begins a run of self: founding a cluster, whose first config it
// makes (foundingConfig); else recovering. A run after the first in this
// process is told apart from it by a suffix to its incarnation.
func (r *seatRunner) start(self run, found bool, lease, margin, now time.Duration) {
	if r.node == nil {
		r.first = self
	} else {
		r.restarts++
		self = run{name: r.first.name, incarnation: r.first.incarnation + "." + strconv.Itoa(r.restarts)}
	}
	var cfg seatConfig
	if found {
		cfg = foundingConfig(self)
	}
	r.node = newSeatNode(self, cfg, lease, margin, r.rng, now)
	r.node.holdAs(r.first)
}

// startFences starts, at the current run, the revocations of r.fencing
// it does not run yet, once the run has recovered a config to revoke
// under: a revocation begun under no config would ask no seat, and never
// end (a run started again takes them up too).
func (r *seatRunner) startFences(margin time.Duration) {
	a := r.node.acc
	if !a.recovered || a.cfg.Version == 0 {
		return
	}
	for d := range r.fencing {
		if !slices.ContainsFunc(r.node.fences, func(f *seatFence) bool { return f.rev.holder == d }) {
			r.node.fence(d, forGood, margin)
		}
	}
}

// founds applies the founding rule (LEASES-AT-SCALE.md §6.2): a run that
// knows no config founds the first when every other member of its ring
// has answered this run's state asks lately (within two rounds), none
// knows a config, and this node has the lowest name among them. An older
// answer does not count: the member may have founded since, under a ring
// that lacked this node (a review's schedule).
func (r *seatRunner) founds(tab *ring.Table, now time.Duration) bool {
	found, _ := r.founding(tab, now)
	return found
}

// founding applies the founding rule, in a ring of at least
// Config.BootstrapExpect members, and, when this node has the lowest
// name of a blank ring, says which members it still waits to hear from
// (a member that runs no seats never answers: the operator is told,
// tickSeats).
func (r *seatRunner) founding(tab *ring.Table, now time.Duration) (found bool, waiting []string) {
	a := r.node.acc
	if a.recovered || a.cfg.Version > 0 || len(tab.Members()) < r.expect {
		return false, nil
	}
	self := r.node.self.name
	for _, m := range tab.Members() {
		if m.Name == self {
			continue
		}
		s, ok := r.seen[m.Name]
		if m.Name < self || ok && s.hasConfig && now-s.at <= 2*r.node.timing.recover {
			return false, nil // not the founder, or the cluster has a config
		}
		if !ok || s.asker != r.node.self || now-s.at > 2*r.node.timing.recover || s.hasConfig {
			waiting = append(waiting, m.Name)
		}
	}
	return len(waiting) == 0, waiting
}

// noteMissing records since when each seat of the run's config has been
// missing from the ring (the policy vacates one missing for DeadFor).
func (r *seatRunner) noteMissing(tab *ring.Table, now time.Duration) {
	cfg := r.node.acc.cfg
	for name := range r.missing {
		if tab.Has(name) || !cfg.holds(name) {
			delete(r.missing, name)
		}
	}
	for _, name := range cfg.Seats {
		if _, ok := r.missing[name]; !ok && !tab.Has(name) && name != r.node.self.name { // a node draining is no missing seat (members)
			r.missing[name] = now
		}
	}
}

// members returns what the seat policy knows of the ring's members and
// of the config's seats missing from it.
func (r *seatRunner) members(tab *ring.Table, cur seatConfig, now time.Duration) []seatMember {
	self := r.node.self.name
	fresh := 12 * r.node.timing.renew // the proposer asks once a lease (tickSeats): two rounds
	var out []seatMember
	for _, m := range tab.Members() {
		sm := seatMember{Name: m.Name, Witness: m.Witness, Leaving: r.leaving[m.Name]}
		if m.Name == self {
			sm.Ready = r.node.acc.active(now) && !r.node.acc.unsure
		} else if s, ok := r.seen[m.Name]; ok && now-s.at <= fresh && runOfIncarnation(s.answerer, m.Incarnation) {
			// Ready on an answer of the member's current run only: a
			// restarted member's new run has recovered nothing (a review).
			sm.Ready = s.active && s.version == cur.Version && s.cluster == cur.Cluster
		}
		out = append(out, sm)
	}
	for name, since := range r.missing {
		out = append(out, seatMember{Name: name, Absent: max(now-since, time.Nanosecond), Leaving: r.leaving[name]})
	}
	if r.draining && !tab.Has(self) {
		// Out of the ring it drains to, this node is a member only as
		// a leaver that hands its seat over (handOverSeat).
		out = append(out, seatMember{Name: self, Leaving: true, Ready: r.node.acc.active(now) && !r.node.acc.unsure})
	}
	return out
}

// runOfIncarnation reports whether r is a run of the process whose ring
// incarnation is inc: inc itself, or a run it started again (inc.N).
func runOfIncarnation(r run, inc string) bool {
	return r.incarnation == inc || strings.HasPrefix(r.incarnation, inc+".")
}

// probeIdle is how many leases apart a proposer asks every member for
// its state while the policy wants no member that holds no seat: to
// meet a run of another cluster (seatNode.counts).
const probeIdle = 10

// probeEvery returns how often the node's run, the policy's proposer,
// asks every member for its state (seatNode.probe): once a lease while
// the policy could want a member that holds no seat (a seat to fill or
// replace, were every present member ready), to learn which are ready;
// once in probeIdle leases otherwise. A cluster whose seats are full,
// idle or not, sends (N − 1) / probeIdle state asks a lease.
func (r *seatRunner) probeEvery(tab *ring.Table, now time.Duration) time.Duration {
	lease := 6 * r.node.timing.renew
	if !r.settled(tab, now) {
		return lease
	}
	return probeIdle * lease
}

// settled reports whether the run's config holds the seats the policy
// keeps for tab's members: it would propose no change were every present
// member that holds no seat ready. A run that knows no config is not
// settled, nor are a young cluster's seats while they grow one at a
// time, nor seats replacing one that left.
func (r *seatRunner) settled(tab *ring.Table, now time.Duration) bool {
	a := r.node.acc
	if a.cfg.Version == 0 {
		return false
	}
	all := r.members(tab, a.cfg, now)
	for i := range all {
		all[i].Ready = all[i].Ready || all[i].Absent == 0 && !a.cfg.holds(all[i].Name)
	}
	_, change := r.policy.next(a.cfg, all)
	return !change
}

// proposing reports whether this node's run is the policy's proposer of
// its config's next change.
func (r *seatRunner) proposing(tab *ring.Table, now time.Duration) bool {
	a := r.node.acc
	return a.seat(now) && r.policy.proposer(a.cfg, r.members(tab, a.cfg, now)) == r.node.self.name
}

// propose returns the policy's next config after cur, when this node is
// its proposer.
func (r *seatRunner) propose(tab *ring.Table, cur seatConfig, now time.Duration) (seatConfig, bool) {
	members := r.members(tab, cur, now)
	if r.policy.proposer(cur, members) != r.node.self.name {
		return seatConfig{}, false
	}
	return r.policy.next(cur, members)
}

// sendSeat sends o for node, the run that asked, and gives it the answer,
// unless the node has started another run meanwhile. A message to this
// node itself is served here, without the wire.
func (n *Node) sendSeat(tab *ring.Table, node *seatNode, members []string, o seatOut) {
	r := n.seats
	if n.closed() {
		return // a closed node's run sends nothing more
	}
	if o.to.name == n.cfg.Name {
		r.mu.Lock()
		var out []seatOut
		var ev seatEvents
		if r.node == node {
			now := n.mono()
			if answer := node.serve(o.body, now); answer != nil {
				out, ev = node.answered(o.body, answer, now, now, members)
			}
			n.publishSeatHold(node, now)
		}
		r.mu.Unlock()
		n.seatEvents(ev)
		for _, next := range out {
			n.sendSeat(tab, node, members, next)
		}
		return
	}
	go func() {
		b, err := encodeSeat(o.body)
		if err != nil {
			n.log.Error("cannot encode a seat message", "err", err)
			return
		}
		sent := n.mono()
		var reply msgpack.RawMessage
		if err := n.call(context.Background(), tab, o.to.name, methodSeat, msgpack.RawMessage(b), &reply); err != nil {
			n.log.Debug("seat message not answered", "member", o.to.name, "err", err)
			return
		}
		if len(reply) == 0 || reply[0] == msgpcode.Nil || n.closed() {
			return // a decision: no answer; or the node closed meanwhile
		}
		answer, err := decodeSeat(reply)
		if err != nil {
			n.log.Warn("a seat answer did not decode", "member", o.to.name, "err", err)
			return
		}
		r.mu.Lock()
		var out []seatOut
		var ev seatEvents
		if r.node == node {
			now := n.mono()
			if st, ok := answer.(seatState); ok && sent >= r.seen[o.to.name].sent {
				r.seen[o.to.name] = seenOf(st, node.self, sent, now)
			}
			out, ev = node.answered(o.body, answer, sent, now, members)
			n.publishSeatHold(node, now)
		}
		r.mu.Unlock()
		n.seatEvents(ev)
		for _, next := range out {
			n.sendSeat(tab, node, members, next)
		}
	}()
}

// publishSeatHold tells the gate what node's holder holds at now
// (ownership.setSeatHold). The caller holds the runner's lock, and node
// is its current run.
func (n *Node) publishSeatHold(node *seatNode, now time.Duration) {
	h := seatHold{ring: node.hold.ring, until: node.hold.liveUntil(now), revoked: node.hold.revoked}
	if prev := *n.own.seatHold.Load(); h.until > now {
		h.granted = h.ring
	} else if prev.granted == h.ring {
		h.granted = prev.granted
	}
	n.own.setSeatHold(h)
}

// renewSeats asks the seats for the holder's grants at once and waits,
// for at most a third of a lease, until the gate finds the holder live
// under tab: a request found it not live (rule 6).
func (n *Node) renewSeats(ctx context.Context, tab *ring.Table) {
	if !n.askSeats(tab) {
		return
	}
	deadline := n.mono() + n.cfg.LeaseDuration/3
	for tries := 1; ; tries++ {
		h := *n.own.seatHold.Load()
		if h.revoked || h.ring == tab.Fingerprint() && n.mono() < h.until || n.mono() >= deadline {
			return
		}
		if !n.sleep(ctx, n.cfg.LeaseDuration/60) {
			return
		}
		if tries%3 == 0 {
			// Ask again: a seat that had let its own grants lapse, idle,
			// refused the first ask, and asked its seats (seatNode.wake).
			n.askSeats(tab)
		}
	}
}

// askSeats sends the holder's asks for grants under tab to its seats,
// unless a round under it is already on its way (seatNode.renewNow). It
// reports false when the node has no seat run yet.
func (n *Node) askSeats(tab *ring.Table) bool {
	r := n.seats
	r.mu.Lock()
	node := r.node
	var out []seatOut
	if node != nil {
		if tab == n.own.table() {
			// The ring the node serves by now: its run may not have heard
			// of it yet (it does at each heartbeat), and asking under the
			// ring before would earn grants the gate does not count.
			node.setRing(tab.Fingerprint())
		}
		if node.ring == tab.Fingerprint() {
			out = node.renewNow(n.mono())
		}
	}
	r.mu.Unlock()
	if node == nil {
		return false
	}
	members := memberNames(tab)
	for _, o := range out {
		n.sendSeat(tab, node, members, o)
	}
	return true
}

// handOverSeat is a draining node's last part in the seats: while its
// node holds a seat of the newest config it knows, its run goes on out of
// the ring (tickSeats), voting, and, if no seat that stays can, proposing
// the change that vacates its seat (seatPolicy.proposer: a replacement
// first when fewer than two seats would be left). It returns once the
// node holds no seat, or ctx ends. A seat that left without handing its
// seat over is gone to the seats as a crashed one is: with another seat
// down, or if it was the only one, no majority of the config is left to
// change it, and the seats' state is lost for good (TestExploreHandOffsSeated:
// in seed 4 the founder, still the only seat, drained half a second in;
// in seed 83 a seat of four drained a second after another crashed).
func (n *Node) handOverSeat(ctx context.Context, tab *ring.Table) error {
	r := n.seats
	if r == nil || len(tab.Members()) == 0 {
		return nil // no seats, or no member left to hand the seat to
	}
	r.mu.Lock()
	r.draining = true
	r.mu.Unlock()
	for {
		r.mu.Lock()
		seated := false
		if node := r.node; node != nil && node.acc.recovered {
			seated = node.newestConfig().holds(n.cfg.Name)
		}
		r.mu.Unlock()
		if !seated {
			return nil
		}
		// Its holder asks the seats for grants: their answers name their
		// config, and so tell it of the change that vacated its seat.
		n.askSeats(tab)
		if !n.sleep(ctx, n.cfg.LeaseDuration/6) {
			return fmt.Errorf("%s still holds a seat: %w", n.cfg.Name, ctx.Err())
		}
	}
}

// unfenceReturned gives up the unfinished revocations of runs that are
// members of tab again: no partition waits for them (ownership.returned),
// and as none completed, nothing was acknowledged without them. (A seat
// that recorded one already refuses the run for good: the cost of a
// departure the ring then took back.)
func (n *Node) unfenceReturned(tab *ring.Table) {
	r := n.seats
	r.mu.Lock()
	defer r.mu.Unlock()
	for d := range r.fencing {
		if m, ok := tab.Member(d.name); ok && m.Incarnation == d.incarnation {
			delete(r.fencing, d)
			if r.node != nil {
				r.node.unfence(d)
			}
		}
	}
}

// fenceSeats starts revoking departed runs for good at the seats: this
// node fences partitions it took over from them (ringChange.revoke), and
// the fence lifts once a revocation has completed and the run's last
// grant has lapsed (ownership.seatFenceWait).
func (n *Node) fenceSeats(runs []run) {
	r := n.seats
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range runs {
		if _, done := n.own.seatFenceEnd(d); done || r.fencing[d] {
			continue
		}
		r.fencing[d] = true
	}
	if r.node != nil {
		r.startFences(n.own.margin())
	}
}

// seatEvents logs what an answer made happen, from the event's own
// copies: the run may change as soon as the lock is let go.
func (n *Node) seatEvents(ev seatEvents) {
	for _, f := range ev.fenced {
		n.own.seatFenced(f.rev.holder, f.end)
		n.seats.mu.Lock()
		delete(n.seats.fencing, f.rev.holder)
		n.seats.mu.Unlock()
		n.log.Info("a departed run's seat grants are revoked for good", "run", f.rev.holder.String(), "lapsed_in", max(f.end-n.mono(), 0))
	}
	if d := ev.decided; d != nil {
		n.log.Info("seat config chosen", "version", d.Config.Version, "seats", d.Config.Seats)
	}
	if d := ev.adopted; d != nil {
		n.log.Info("seat config adopted", "version", d.Config.Version, "seats", d.Config.Seats)
	}
	if ev.recovered {
		n.log.Info("seat state recovered", "version", ev.config.Version, "seats", ev.config.Seats, "number", ev.number)
	}
}

// serveSeat answers methodSeat: the node's run serves the message.
func (n *Node) serveSeat(_ context.Context, _ *ring.Table, body msgpack.RawMessage) (any, error) {
	r := n.seats
	if r == nil {
		return nil, fmt.Errorf("%w: %s runs no seat protocol", ErrUnavailable, n.cfg.Name)
	}
	m, err := decodeSeat(body)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	node := r.node
	var answer any
	var wake []seatOut
	if node != nil {
		if tab := n.own.table(); tab != nil {
			node.setRing(tab.Fingerprint()) // a seat grants under the ring it serves by now
		}
		answer = node.serve(m, n.mono())
		wake = node.wake(n.mono())
	}
	r.mu.Unlock()
	if node == nil {
		return nil, fmt.Errorf("%w: %s has not started its seat run", ErrUnavailable, n.cfg.Name)
	}
	if tab := n.own.table(); len(wake) > 0 && tab != nil {
		// The seat's own holder asks its seats, as a request does
		// (askSeats): the asker that woke it asks again shortly.
		members := memberNames(tab)
		for _, o := range wake {
			n.sendSeat(tab, node, members, o)
		}
	}
	if d, ok := m.(seatDecide); ok {
		n.log.Debug("seat decision received", "version", d.Config.Version)
	}
	if answer == nil {
		return nil, nil
	}
	b, err := encodeSeat(answer)
	if err != nil {
		return nil, err
	}
	return msgpack.RawMessage(b), nil
}
