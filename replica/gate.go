package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tandem-io/tandem/ring"
)

// The gate answers one question for every request that would serve from
// this node's copies or change them: may this node serve partition p now,
// in this role? Every entry point asks it (a routed request served here,
// an op or a read from a peer, a replica write, a lease request, a
// hand-off fetch or pull); none checks any part of it on its own.
//
// The gate asks, in this order, and stops at the first rule that refuses
// (a request this node only routes, serving or forwarding it, is asked
// rules 1 and 3):
//
//  1. Ring: the node has a ring; a write or replica was routed by the ring
//     the node serves by now (else ErrNotOwner: the caller retries by the
//     new ring).
//  2. Hand-off ring: a new owner fetching or pulling from this node is on
//     the node's ring (else the answer is OtherRing: it retries).
//  3. Members: the ring has a majority of the members the node knows,
//     and at least MinMembers (ownership.quorum; else
//     ErrUnavailable, cut off).
//  4. Quarantine: the node is not recovering from a pause (else
//     ErrUnavailable).
//  5. Role: the node is the partition's primary (a read or a write), its
//     buddy (a read whose primary cannot be reached), the buddy of the
//     sender as primary (a replica), or the asker is another member of its
//     ring (a lease) (else ErrNotOwner).
//  6. Leases: the node holds live leases under its ring from all its
//     ring's other members but one (reads and writes; else it asks for
//     them, once). With seats (Config.Seats), its holder holds live
//     grants under its ring from a majority of its seats instead, and was
//     never revoked for good (seatgate.go).
//  7. Fence: the partition is not fenced while a departed owner's leases
//     lapse, this node's and the other members' (ownership.fenceWait;
//     writes wait it out; replicas are refused). With seats, until the
//     departed owner's run is revoked for good at a majority of the seats
//     and its last grant from them has lapsed.
//  8. Displaced owners: every previous owner still in the ring has moved
//     to the node's ring (writes; else it asks them, once).
//  9. Copy: if the partition is still being handed to the node, the
//     session is first fetched from the previous owners (reads and
//     writes as primary; reads as buddy only for a hand-off).
//
// ownership.admit decides, without I/O; Node.admit does what a verdict
// asks (asks for leases, waits out a fence, asks displaced owners) and
// asks again.

// entry says how a request reached the gate.
type entry uint8

const (
	entryRoute     entry = iota + 1 // a request this node routes (serves or forwards)
	entryRead                       // a get or touch served from the primary copy
	entryWrite                      // a put, patch or delete applied as primary
	entryBuddyRead                  // a get answered by the buddy, the primary unreachable
	entryReplica                    // a write replicated here by its primary
	entryTransfer                   // a new owner's fetch or pull
	entryLease                      // another member asking for a lease
)

// admission is one question to the gate.
type admission struct {
	entry entry
	tab   *ring.Table // the ring the request was routed by
	p     int
	from  string // replica: the sending primary; lease: the asker
	id    string // the session read or written, to fetch first (rule 9)
	ring  uint64 // transfer: the requester's ring fingerprint; zero asks for no check

	// What the node already did for this request: asked for leases
	// (reporting how many members could not be reached), asked displaced
	// owners, waited for a fence.
	askedLeases    bool
	unreachable    int
	askedDisplaced bool
	fenced         bool
}

// verdict is the gate's answer: a refusal, work to do before asking
// again, or leave to serve (after fetching the session, if fetch is set).
type verdict struct {
	err       error
	otherRing bool          // a transfer from another ring: answer OtherRing
	leases    []string      // ask these members for leases, then ask again
	spare     int           // how many of leases may stay missing
	seats     bool          // renew the holder's grants from the seats, then ask again (seatgate.go)
	fence     time.Duration // wait this long, then ask again
	displaced []string      // ask these displaced owners, then ask again
	confirmed bool          // the displaced owners have all moved: forget them
	fetch     *fetchPlan    // fetch the session from previous owners, then serve
}

// fetchPlan says where to fetch a session from before serving it.
type fetchPlan struct {
	sources   []string
	ring      uint64 // the fingerprint to send (a hand-off), or zero
	distrust  bool   // the node was declared dead (transfer.distrust): it takes copies from sources that were too
	afterLoss bool   // the node reported the partition lost (partState.reportedLost): it takes owners' copies only
}

// errFenced marks a replica refused while its partition is fenced.
var errFenced = errors.New("partition fenced")

// errDisplaced marks a write refused because previous owners have not yet
// moved to the node's ring.
var errDisplaced = errors.New("previous owners have not yet moved to this ring")

// admit is the gate: it decides whether this node may serve a at now, in
// the order documented above.
func (o *ownership) admit(a admission, now time.Duration) verdict {
	s := o.load()
	if v, done := o.admitRing(s, a); done {
		return v
	}
	tab := s.tab
	if a.entry != entryReplica && a.entry != entryTransfer {
		if m := len(tab.Members()); m < s.need {
			return refuse(fmt.Errorf("%w: %w: %s sees %d members, fewer than the %d it needs to serve (a majority of the members it knows, or MinMembers)", ErrUnavailable, errCutOff, o.self, m, s.need))
		}
		if a.entry == entryRoute {
			return verdict{} // routing needs no more: whoever serves asks again
		}
		if o.quarantined() {
			return refuse(fmt.Errorf("%w: %s is recovering from a pause", ErrUnavailable, o.self))
		}
	}
	if err := o.admitRole(tab, a); err != nil {
		return refuse(err)
	}
	part := s.parts[a.p]
	switch a.entry {
	case entryRead, entryWrite, entryBuddyRead:
		if part.distrusted {
			// Declared dead: its copies may be older than what was
			// acknowledged since. It serves the partition again once it
			// has caught up from an owner that vouches for its copies,
			// or found that none is left (a loss, rebuilt from nothing).
			return refuse(fmt.Errorf("%w: %s was declared dead and is catching up on partition %d", ErrUnavailable, o.self, a.p))
		}
		if t := part.transfer; t != nil && !t.reconcile && len(t.awaits) > 0 && !slices.ContainsFunc(t.sources, tab.Has) {
			// Both previous owners are gone, one of them gracefully and
			// still pushing the partition here: until its release, this
			// node has nothing to serve the partition from, and nowhere
			// to fetch it from (transfer.awaits).
			return refuse(fmt.Errorf("%w: partition %d is being handed to %s by %v, leaving", ErrUnavailable, a.p, o.self, t.awaits))
		}
		if v, done := o.admitLeases(tab, a, now); done {
			return v
		}
	case entryReplica:
		if part.distrusted {
			// It is about to replace its copies with an owner's
			// (pull): a write stored now could go with them.
			return refuse(fmt.Errorf("%w: %s was declared dead and is catching up on partition %d", ErrUnavailable, o.self, a.p))
		}
		if wait := o.fenceWait(s, part, now); wait > 0 {
			return refuse(fmt.Errorf("%w: %w: %s fences partition %d for %v while a departed owner's lease lapses", ErrUnavailable, errFenced, o.self, a.p, wait))
		}
	}
	if a.entry == entryWrite {
		if wait := o.fenceWait(s, part, now); wait > 0 {
			return verdict{fence: wait}
		}
		if v, done := o.admitDisplaced(s, part, a); done {
			return v
		}
	}
	return verdict{fetch: fetchFirst(part, tab, a.entry)}
}

// refuse is a verdict that refuses with err.
func refuse(err error) verdict { return verdict{err: err} }

// admitRing applies rules 1 and 2 and reports whether they decide.
func (o *ownership) admitRing(s *ownState, a admission) (verdict, bool) {
	switch {
	case s.tab == nil:
		return refuse(fmt.Errorf("%w: %s has no ring yet", ErrNotOwner, o.self)), true
	case a.tab != nil && a.tab != s.tab && (a.entry == entryWrite || a.entry == entryReplica):
		return refuse(fmt.Errorf("%w: %s's ring changed (epoch %d to %d) while it served a request", ErrNotOwner, o.self, a.tab.Epoch(), s.tab.Epoch())), true
	case a.entry == entryTransfer:
		return verdict{otherRing: a.ring != 0 && a.ring != s.tab.Fingerprint()}, true
	}
	return verdict{}, false
}

// admitRole applies rule 5.
func (o *ownership) admitRole(tab *ring.Table, a admission) error {
	switch a.entry {
	case entryLease:
		if !tab.Has(a.from) || a.from == o.self {
			return fmt.Errorf("%w: %s does not see %s in its ring", ErrNotOwner, o.self, a.from)
		}
		return nil
	case entryRead, entryWrite:
		if tab.Owners(a.p).Primary != o.self {
			return fmt.Errorf("%w: %s is not primary of partition %d (epoch %d)", ErrNotOwner, o.self, a.p, tab.Epoch())
		}
	case entryBuddyRead:
		if tab.Owners(a.p).Buddy != o.self {
			return fmt.Errorf("%w: %s does not own partition %d (epoch %d)", ErrNotOwner, o.self, a.p, tab.Epoch())
		}
	case entryReplica:
		if ow := tab.Owners(a.p); ow.Primary != a.from || ow.Buddy != o.self {
			return fmt.Errorf("%w: %s sees partition %d owned by %+v at epoch %d, not primary %s", ErrNotOwner, o.self, a.p, ow, tab.Epoch(), a.from)
		}
	}
	return nil
}

// leaseQuorum is how many of its ring's other members a node must hold
// live leases from to serve from its copies: all but one, so that a single
// member's crash costs no reads, and at least one.
//
// A write acknowledged under new owners of a partition needs both of
// them, and each fences the partition until its own grant to the departed
// owner has lapsed and all but one of the other members have moved on for
// a lease's time (ownership.fenceWait): the departed owner then lacks two
// of the leases it needs, and has stopped serving before either
// acknowledges. A node cut off from everyone holds none.
func leaseQuorum(others int) int {
	if others <= 0 {
		return 0
	}
	return max(1, others-1)
}

// leaseSeats are the members a node holds leases from to serve from its
// copies, and how many of their leases it needs: what the seat protocol
// calls its seats (docs/design/LEASES-AT-SCALE.md). Until that protocol
// is wired in, they are every other member of the node's ring, and it
// needs all of them but one (leaseQuorum). Everything that asks for,
// counts or renews the leases a node serves by takes them from here
// (admitLeases, missingLeases, renewLeases, confirm), so that the seats
// can come from an agreed config in one place.
type leaseSeats struct {
	names []string // the seats other than this node, in ring order
	need  int      // how many of them it must hold live leases from
}

// spare returns how many of the seats' leases the node may lack.
func (l leaseSeats) spare() int { return len(l.names) - l.need }

// leaseSeatsOf returns the lease seats of node self under tab: every
// other member of tab, all but one needed.
func leaseSeatsOf(tab *ring.Table, self string) leaseSeats {
	var l leaseSeats
	for _, m := range tab.Members() {
		if m.Name != self {
			l.names = append(l.names, m.Name)
		}
	}
	l.need = leaseQuorum(len(l.names))
	return l
}

// seats returns this node's lease seats under tab: those installed with
// it, or, for another table, derived afresh.
func (o *ownership) seats(tab *ring.Table) leaseSeats {
	if s := o.load(); s.tab == tab {
		return s.seats
	}
	return leaseSeatsOf(tab, o.self)
}

// admitLeases applies rule 6 and reports whether it decides.
func (o *ownership) admitLeases(tab *ring.Table, a admission, now time.Duration) (verdict, bool) {
	if o.seated {
		return o.admitSeatLease(tab, a, now)
	}
	seats := o.seats(tab)
	spare := seats.spare()
	missing := o.missingLeases(tab, now)
	if len(missing) <= spare {
		return verdict{}, false
	}
	if !a.askedLeases {
		return verdict{leases: missing, spare: spare}, true
	}
	err := fmt.Errorf("%w: %s holds leases from %d of the %d other members it needs, under its ring (epoch %d); lacking %v",
		ErrUnavailable, o.self, len(seats.names)-len(missing), seats.need, tab.Epoch(), missing)
	if a.unreachable > spare && a.unreachable >= 2 {
		// Several members unreachable, not merely of another view: cut
		// off. (One unreachable partner in a two-node ring is as likely
		// dead; the caller waits for the ring to drop it.)
		err = fmt.Errorf("%w: %w", errCutOff, err)
	}
	return refuse(err), true
}

// admitDisplaced applies rule 8 and reports whether it decides.
func (o *ownership) admitDisplaced(s *ownState, part partState, a admission) (verdict, bool) {
	if len(part.displaced) == 0 {
		return verdict{}, false
	}
	var behind []string
	for _, x := range part.displaced {
		if !o.onRing(x, s.tab, s.installed) {
			behind = append(behind, x)
		}
	}
	switch {
	case len(behind) == 0:
		return verdict{confirmed: true, fetch: fetchFirst(part, s.tab, a.entry)}, true
	case !a.askedDisplaced:
		return verdict{displaced: behind}, true
	}
	return refuse(fmt.Errorf("%w: %w: partition %d's previous owners %v have not yet moved to %s's ring (epoch %d)",
		ErrUnavailable, errDisplaced, a.p, behind, o.self, s.tab.Epoch())), true
}

// fetchFirst applies rule 9: where to fetch a session of partition part
// (its transfer) before serving it through entry e, or nil.
func fetchFirst(part partState, tab *ring.Table, e entry) *fetchPlan {
	t := part.transfer
	if t == nil || e == entryBuddyRead && t.reconcile {
		return nil
	}
	plan := &fetchPlan{afterLoss: part.reportedLost}
	for _, x := range t.sources {
		if tab.Has(x) {
			plan.sources = append(plan.sources, x)
		}
	}
	if !t.reconcile {
		// A previous owner answers only once it has left its old ring.
		plan.ring = tab.Fingerprint()
		plan.distrust = t.distrust
	}
	return plan
}

// admit asks the gate whether this node may serve a, doing first what the
// gate asks (asking members for leases, waiting out a fence, asking
// displaced owners) and asking again; once admitted, it fetches a.id from
// the partition's sources if the gate says so (rule 9).
func (n *Node) admit(ctx context.Context, a admission) error {
	if a.entry == entryRead || a.entry == entryWrite || a.entry == entryBuddyRead {
		n.renewals.markLeaseUse(n.mono(), n.cfg.LeaseDuration/6)
	}
	for {
		v := n.own.admit(a, n.mono())
		switch {
		case v.err != nil:
			if errors.Is(v.err, errDisplaced) {
				n.stats.DisplacedWaits.Add(1)
			}
			return v.err
		case v.otherRing:
			n.stats.HandoffRefusals.Add(1)
			return errOtherRing
		case len(v.leases) > 0:
			n.stats.LeaseMisses.Add(1)
			a.askedLeases, a.unreachable = true, n.askLeases(ctx, a.tab, v.leases, v.spare)
		case v.seats:
			n.stats.LeaseMisses.Add(1)
			n.renewSeats(ctx, n.own.table())
			a.askedLeases = true
		case v.fence > 0:
			if !a.fenced {
				n.stats.FenceWaits.Add(1)
				a.fenced = true
			}
			if err := n.waitFence(ctx, a.p, v.fence); err != nil {
				return err
			}
		case len(v.displaced) > 0:
			n.askDisplaced(ctx, a.tab, v.displaced)
			a.askedDisplaced = true
		default:
			if v.confirmed {
				n.own.confirmDisplaced(a.tab, a.p)
			}
			return n.fetch(ctx, a.tab, a.p, a.id, v.fetch)
		}
	}
}

// fetch makes sure this node holds the latest copy of session id before it
// serves it, when the gate says the partition is still being handed over
// or reconciled (plan not nil): it fetches the session from plan's sources
// and keeps the newest.
func (n *Node) fetch(ctx context.Context, tab *ring.Table, p int, id string, plan *fetchPlan) error {
	if plan == nil {
		return nil
	}
	req := ReadRequest{Partition: p, ID: id, Raw: true, Ring: plan.ring, From: n.cfg.Name}
	held, blank := false, n.blank(p)
	serving := n.own.table() // copies merge only while it is still the ring (merge)
	for _, src := range ownersFirst(tab, p, plan.sources) {
		var reply ReadReply
		if err := n.call(ctx, tab, src, methodRead, req, &reply); err != nil {
			return fmt.Errorf("fetch %s from previous owner %s: %w", id, src, err)
		}
		v := judgeSource(tab, p, src, reply.answer(), sourceAsk{handoff: plan.ring != 0, distrust: plan.distrust, allowMinority: n.cfg.AllowMinority, afterLoss: plan.afterLoss || n.own.reportedLost(p)})
		if v.err != nil {
			return fmt.Errorf("%w: %w: fetch %s from %s", ErrUnavailable, v.err, id, src)
		}
		n.learnFloor(p, reply.Floor, src, false)
		blank = blank && v.blank
		if v.sinceLoss {
			if g := n.store.lossGeneration(p); g > 0 && reply.Session != nil && reply.Session.ID == id && reply.Session.Gen >= g {
				if err := n.merge(p, reply.Session, serving); err != nil {
					return fmt.Errorf("fetch %s from %s: %w", id, src, err)
				}
			}
			continue
		}
		if !v.take {
			continue
		}
		held = held || reply.Holds
		if reply.Lost && owns(tab.Owners(p), src) {
			n.adoptLoss(tab, p, src, reply.LostGen)
		}
		if reply.Session != nil && reply.Session.ID == id {
			if err := n.merge(p, reply.Session, serving); err != nil {
				return fmt.Errorf("fetch %s from %s: %w", id, src, err)
			}
			if reply.Unvouched {
				n.own.markUnvouched(p)
			}
		}
	}
	if plan.ring != 0 && len(plan.sources) > 0 && !held && (!blank || !n.allBlank(ctx, tab, p, plan.sources)) {
		// None of the sources holds the partition: each is taking it over
		// itself, or this node's ring is not yet the whole cluster's (a
		// view still arriving after a restart), so "no copy" means
		// nothing yet. (While this node and every source are blank, the
		// cluster is new: no copy is the answer; Node.blank.)
		return fmt.Errorf("%w: none of %v holds partition %d yet", ErrUnavailable, plan.sources, p)
	}
	if plan.ring != 0 && len(plan.sources) > 0 && !held && !plan.distrust && n.own.takeNew(tab, p) {
		// All blank: the partition is new, and this node holds it from now
		// on, before it stores the write it fetched for (a copy would make
		// it look as if the partition had a past).
		n.log.Debug("partition taken as new: the cluster is starting", "partition", p, "sources", plan.sources)
	}
	return nil
}

// waitFence waits out partition p's fence, or until ctx ends.
func (n *Node) waitFence(ctx context.Context, p int, wait time.Duration) error {
	// In steps, for the gate to look again: the departed owner may give
	// its leases back (a graceful leave) and lift the fence early.
	if !n.sleep(ctx, min(wait, n.cfg.LeaseDuration/20)) {
		return fmt.Errorf("%w: partition %d is fenced for %v while a departed owner's lease lapses", ErrUnavailable, p, wait)
	}
	return nil
}

// askLeases asks the members in missing for leases, all at once, and
// returns once all but spare have granted one or more than spare have
// failed. It returns how many could not be reached (refusals, from members
// of another view, are not counted).
func (n *Node) askLeases(ctx context.Context, tab *ring.Table, missing []string, spare int) (unreachable int) {
	results := make(chan error, len(missing))
	for _, m := range missing {
		go func() { results <- n.renewLease(ctx, tab, m) }()
	}
	failed := 0
	for need := len(missing) - spare; need > 0 && failed <= spare; {
		if err := <-results; err != nil {
			failed++
			if !errors.Is(err, ErrNotOwner) {
				unreachable++
			}
			n.log.Debug("lease not granted", "err", err)
		} else {
			need--
		}
	}
	return unreachable
}

// askDisplaced asks each displaced owner in names for a lease, all at once:
// its answer says which ring it serves by.
func (n *Node) askDisplaced(ctx context.Context, tab *ring.Table, names []string) {
	var wg sync.WaitGroup
	for _, x := range names {
		wg.Go(func() {
			if err := n.renewLease(ctx, tab, x); err != nil {
				n.log.Debug("displaced owner did not answer", "member", x, "err", err)
			}
		})
	}
	wg.Wait()
}
