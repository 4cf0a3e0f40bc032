package replica

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-io/tandem/ring"
)

// ownership is everything a node knows that decides whether it may serve a
// partition now: the ring it serves by and the one before, the partitions
// being handed to it, fences, displaced owners, how often each member left
// its ring, the leases it granted and holds, the partitions lost with both
// owners, and its pause quarantine.
//
// It does no I/O and reads no clock: every transition takes the time (on
// the node's monotonic clock, a time.Duration since it started) as an
// argument and returns what the caller must do, so every rule of
// docs/ARCHITECTURE.md "Fencing" is tested as a table (ownership_test.go).
// The gate (gate.go) reads it without locks: transitions build a new
// immutable state and publish it whole.
type ownership struct {
	self          string
	partitions    int
	minMembers    int
	allowMinority bool          // serve in any ring of minMembers, not only a majority of the members known
	lease         time.Duration // LeaseDuration
	handoff       time.Duration // HandoffTimeout

	// mu serialises transitions. The gate never takes it. Lock order: a
	// node installing a ring holds every partition of its store, then mu
	// (SetTable); nothing holds mu while it takes a store lock.
	mu         sync.Mutex
	state      atomic.Pointer[ownState]
	held       atomic.Pointer[map[string]heldLease] // leases this node holds; replaced whole under mu
	granted    map[string]time.Duration             // until when each member may rely on this node's lease
	departures map[run]uint64                       // how often each run of a member left this node's ring
	seen       map[string]seenDepartures            // each member's departure count of this node's run, as last reported
	lost       LostPartitions                       // the latest partitions lost with both owners
	known      map[string]bool                      // the members: of every ring installed, until they leave gracefully
	left       map[string]string                    // the members that left gracefully, and the run that did: a later ring listing that run does not make it known again
	run        string                               // this node's run (incarnation), as the last ring listing it named it
	released   map[string]map[int]bool              // members that gave their leases back (a complete drain), until they appear again: the partitions each held whole
	pushed     map[string]map[int]bool              // the partitions each leaving member pushed here, until it appears again
	leaving    map[string]bool                      // members that said they are leaving and are still alive: their drains are under way (setLeaving)

	quarantine atomic.Int64 // until when the node recovers from a pause; 0 if not
	// unconfirmedSince is when the node found it had been paused, on its
	// monotonic clock, until every other member of its ring has granted
	// it a lease asked since (confirm); 0 when it knows whether it was
	// declared dead meanwhile.
	unconfirmedSince atomic.Int64

	// started is when this run of the node installed its first ring (on
	// its monotonic clock), or -1 before (young).
	started atomic.Int64
	// pastKnown: a member granted this run a lease and said the cluster
	// had served before (leaseReply.Past): see knowsPast.
	pastKnown atomic.Bool

	// leftUnheld: the partitions the node owned, under the last ring that
	// had it, and did not hold whole (unheldOwned). Set under mu.
	leftUnheld []int

	// seated: the seats guard the leases (Config.Seats; seatgate.go).
	// seatHold is what the node's holder holds, and seatFences when
	// each departed run revoked for good can no longer be live; both
	// replaced whole (seatFences under mu).
	seated     bool
	seatHold   atomic.Pointer[seatHold]
	seatFences atomic.Pointer[map[run]time.Duration]
}

// ownState is one published state of ownership. It is never changed once
// published.
type ownState struct {
	tab, prev *ring.Table   // the ring served by, and the one before
	installed time.Duration // when tab was installed
	parts     []partState   // per partition
	// need is the smallest ring the node serves in: a majority of the
	// members it knows (see quorum), and at least MinMembers.
	need int
	// seats are the members it holds leases from to serve, under tab.
	seats leaseSeats
}

// partState is what ownership knows of one partition.
type partState struct {
	// transfer is the partition's hand-off or reconciliation still to be
	// done; nil when the node holds it.
	transfer *transfer
	// fence: no write to the partition is acknowledged before then.
	fence time.Duration
	// fencedBy names the departed owners the fence waits for: their
	// grants' lapse, or their giving the leases back (release).
	fencedBy []string
	// departed lists the partition's departed owners whose leases from
	// the other members writes wait out too (fenceWait): until those
	// members have moved on to a ring without them, or the departed owner
	// gives its leases back.
	departed []departure
	// displaced lists previous owners not yet known to have moved to tab.
	displaced []string
	// distrusted: the node was declared dead and has not caught up on
	// the partition since, owner or not: its copies of it are no new
	// owner's to build on (transfer.distrust).
	distrusted bool
	// held: the node's copies of the partition are the partition, as of
	// when it last owned it: it owned it from the cluster's start, took
	// it over from a node that held it, had it pushed by a leaver, or
	// rebuilt it after a reported loss. Only a node that holds a
	// partition completes another's hand-off of it. A node taking a
	// partition over does not hold it until its hand-off is done, so a
	// chain of restarted owners, each taking it over from the last,
	// cannot pass an empty partition on as held: the hand-off times out
	// and the loss is reported (chaos finding F13). It ends when the
	// node drops its copies. A node declared dead still holds what it
	// held, but distrusts it (distrusted): only another node declared
	// dead takes its copies, as the two sides of a healed cut do.
	held bool
	// unvouched: the node's copies of the partition may include some no
	// owner vouches for: it had copies when it stopped owning the
	// partition, or merged copies from a source whose copies were
	// unvouched, and has not caught up since (a hand-off completed, or a
	// leaver pushed it whole). If the partition is lost with both owners
	// before the hand-off ends, those copies may be older than what the
	// cluster acknowledged since they were written: the node drops them
	// rather than rebuild the partition from them (lostCopiesGo; chaos
	// finding F17). Copies written or fetched from a holder during the
	// hand-off are current, but are not told apart from the others: they
	// go too, and the loss is reported. A node that begins to take a
	// partition over drops what it had of it (ringChange.superseded), so
	// its own old copies are never among them.
	unvouched bool
	// successors: the owners this node stopped owning the partition in
	// favour of, as the runs they were then (name and incarnation). Its
	// hold is the partition as of then: only their hand-offs may end on
	// it (vouches). Once they have taken it over they write where this
	// node does not, and a run that replaced one of them (a restart, its
	// memory gone) taking it over from this node's copies would serve
	// them rewound, the writes acknowledged since silently lost (chaos
	// finding F17): such a hand-off waits for a current owner, or is
	// given up and the loss reported.
	successors []ring.Member
	// stoppedIn is the epoch of the ring in which the node stopped owning
	// the partition (with successors); zero if it never did.
	stoppedIn uint64
	// reportedLost: the node reported the partition lost while it owned
	// it (a hand-off given up, or both owners gone from its ring), and
	// owns it still. What it held then is the partition; what a node
	// that does not own it kept from before (a former owner's copies,
	// even a hold it vouches for) is what the loss took, and no pull or
	// fetch merges it (sourceAsk.afterLoss). A buddy's own copies went
	// as unvouched when it gave its hand-off up, and a reconciliation
	// brought the same session back from a former owner that had pulled
	// it from the buddy before: the primary answered not-found, and the
	// next run of it took the old copy from the buddy (chaos finding
	// F17, session 246 of the 60-minute run at 9efd854). A primary that
	// rebuilds raises a floor that refuses such copies; a buddy has no
	// floor until the primary's push brings one.
	reportedLost bool
	// adopted: the loss report is the other owner's, taken from its reply
	// (adoptLoss), and this node has not pushed its copies to the buddy
	// since: as primary it does once its hand-off completes
	// (finishHandoff's push).
	adopted bool
	// stoppedWith is the hand-off the node still had of the partition
	// when the ring it stopped owning it in was installed (stoppedIn); a
	// pull for it that completes under the ring before, its copies all
	// merged then, makes the node hold the partition as of that ring
	// (finishTransfer). Without it a ring that flapped (the node's own
	// returning hand-off completing 29 ms after the next ring took the
	// partition away, and the ring after giving it back) left the node
	// not holding what it had, so the third ring dropped its copies as
	// an earlier ownership's, an acknowledged write among them (chaos
	// finding F17, session 510-r0001 of the 60-minute run at 9efd854).
	stoppedWith *transfer
}

// vouches reports whether self's hold of partition p may end the hand-off
// of member m (a run of it, by incarnation) in s's ring: self holds p
// (partState.held) and owns it, or stopped owning it in favour of m's very
// run (partState.successors). An empty m (a peer too old to name itself)
// is vouched for as before successors were kept.
func (s *ownState) vouches(self string, p int, m ring.Member) bool {
	part := s.parts[p]
	if !part.held {
		return false
	}
	if m.Name == "" || s.tab == nil || owns(s.tab.Owners(p), self) {
		return true
	}
	return slices.ContainsFunc(part.successors, func(x ring.Member) bool { return x.Name == m.Name && x.Incarnation == m.Incarnation })
}

// lostCopiesGo reports whether, when partition part is lost with both
// owners, this node's copies of it must be dropped rather than rebuilt
// from: they may be older than what was acknowledged elsewhere, because
// the node was declared dead since (distrusted) or had them from before
// it last took the partition over (unvouched). Rebuilding from such a
// copy would serve a session rewound to an older version, which is not
// the loss the guarantees allow (a session gone, reported).
func lostCopiesGo(part partState) bool { return part.distrusted || part.unvouched }

// transfer is a partition this node owns whose copies it must first get
// from other members. Never changed once published.
type transfer struct {
	sources []string      // previous owners and reappeared members still in the ring
	since   time.Duration // when it began, or a source last answered
	// tried is when the latest pull for it that failed began. It is
	// given up for time only once a pull begun past its timeout has
	// failed: a round of pulls slowed by a source out of reach (four at
	// a time, each waiting out its calls) could pass the timeout before
	// its pull was even tried, and the hand-off was given up, its loss
	// reported, while the partition's other owner held every session
	// (chaos finding F17, session 386-r0001 of the 65-minute run at
	// 17b8a20).
	tried time.Duration
	// reconcile marks a partition the node already held and merges with
	// members that reappeared: it does not make the node unready, and
	// reads from the buddy need not wait for it.
	reconcile bool
	// gates marks a hand-off that keeps the node unready: one of a node
	// that joins (its first ring) or was declared dead (it distrusts its
	// copies). A partition a running node takes over when the ring changes
	// is handed over too, but does not turn a ready node unready: it
	// serves meanwhile by fetching first, and balancers' health checks do
	// not flap on every membership change.
	gates bool
	// awaits names previous owners that left gracefully, their drain
	// still under way when they left the ring: each may yet push the
	// partition here whole and say so in its release (endHandedOver).
	// Until then, a hand-off whose other sources have all gone too is no
	// loss: it waits for them, and the node serves none of the partition
	// meanwhile (it has nowhere to fetch from). An awaited leaver that
	// releases without it, or dies, is dropped from the list; with no
	// source and no one awaited, the hand-off is given up and the loss
	// reported (dueTransfers).
	awaits []string
	// returning marks the hand-off of a node that held the partition when
	// the previous ring took it away, and owns it again in the very next
	// one: what it holds is the partition up to that ring, and its
	// successors, the previous ring's owners, hold every write
	// acknowledged since. Once every source has answered, merging their
	// copies into its own makes the partition whole, even if none of them
	// holds it yet: they may still be taking it over from this node, and
	// without it the two would wait on each other until the loss was
	// reported (chaos finding F17, session 446: rings that flapped while
	// a restarted node joined).
	returning bool
	// distrust marks the hand-off of a node that was declared dead: its
	// own copies may be older than what the cluster acknowledged since.
	// Until it ends, the node vouches for none of them (it answers that
	// it does not hold the partition, and sends no copies to a new
	// owner), and it ends only on a source that is settled.
	distrust bool
	// declared counts the times the node learnt, while this transfer was
	// pending, that it had been declared dead (reconcile with distrust):
	// each may mean writes acknowledged without it since a pull in
	// flight began, so a pull begun before one does not complete the
	// transfer (covers).
	declared int
}

// covers reports whether a pull that completed transfer t completes cur,
// the partition's transfer now: cur is t, or a copy of it made while the
// pull ran that asks for nothing the pull did not do — the same kind
// (reconciliation, distrust, returning), no source and no awaited leaver
// t lacked, and no news since that the node was declared dead (declared). A member that sees this node appear tells it to reconcile
// (tellAppeared), which copies every pending transfer, usually naming
// sources it already had: when that landed while a restarted node's
// hand-off pulls were in flight, their completion was thrown away, the
// next round came after HandoffTimeout had passed behind other pulls
// waiting on an unreachable source, and the hand-off was given up and
// its copies dropped as a loss, although every holder had answered
// (chaos finding F17, session 302 of the 30-minute run at 803bf8d).
func (t *transfer) covers(cur *transfer) bool {
	if cur == t {
		return true
	}
	return cur.reconcile == t.reconcile && cur.distrust == t.distrust && cur.returning == t.returning &&
		cur.declared == t.declared && subset(cur.sources, t.sources) && subset(cur.awaits, t.awaits)
}

// subset reports whether every name in a is in b.
func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// settled reports whether self holds partition p in s as an owner whose
// copies are the partition's: it owns p and is taking it over from no one
// (a declared-dead node's own hand-off aside, which other such nodes
// accept, as two sides of a healed cut do).
func (s *ownState) settled(self string, p int) bool {
	if s.tab == nil || !owns(s.tab.Owners(p), self) {
		return false
	}
	t := s.parts[p].transfer
	return t == nil || t.reconcile || t.distrust
}

// distrusts reports whether the node distrusts its copies of partition p
// (partState.distrusted).
func (s *ownState) distrusts(p int) bool { return s.parts[p].distrusted }

// heldLease is a lease this node holds from a member.
type heldLease struct {
	until       time.Duration // when it lapses
	fingerprint uint64        // the granter's ring
	asked       time.Duration // when the request was sent
	// since is when the first of the granter's replies under fingerprint
	// in a row arrived, of those to requests sent after the node installed
	// its ring: the granter had that ring by then (departedWait). Zero
	// until one arrives. A reply to an earlier request does not count, even
	// under the same fingerprint: a ring whose member left and came back
	// has the fingerprint it had before, and the granter, asked nothing in
	// between, may have granted the departed member leases meanwhile.
	since time.Duration
}

// newOwnership returns the ownership of a node that has no ring yet.
func newOwnership(cfg Config) *ownership {
	o := &ownership{
		self: cfg.Name, partitions: cfg.Partitions, minMembers: cfg.MinMembers, allowMinority: cfg.AllowMinority,
		lease: cfg.LeaseDuration, handoff: cfg.HandoffTimeout,
		granted: map[string]time.Duration{}, departures: map[run]uint64{}, seen: map[string]seenDepartures{},
		known: map[string]bool{cfg.Name: true}, left: map[string]string{}, released: map[string]map[int]bool{}, pushed: map[string]map[int]bool{},
		leaving: map[string]bool{},
	}
	o.state.Store(&ownState{parts: make([]partState, cfg.Partitions), need: o.quorum()})
	o.started.Store(-1)
	o.held.Store(&map[string]heldLease{})
	o.seated = cfg.Seats > 0
	o.seatHold.Store(&seatHold{})
	o.seatFences.Store(&map[run]time.Duration{})
	return o
}

// load returns the published state.
func (o *ownership) load() *ownState { return o.state.Load() }

// table returns the ring the node serves by, or nil.
func (o *ownership) table() *ring.Table { return o.state.Load().tab }

// edit publishes a copy of the state changed by f. The caller holds mu.
func (o *ownership) edit(f func(s *ownState)) {
	s := *o.state.Load()
	s.parts = slices.Clone(s.parts)
	f(&s)
	o.state.Store(&s)
}

// margin is how much longer than the holder a granter keeps a lease in
// mind, for clocks that run at slightly different rates.
func (o *ownership) margin() time.Duration { return o.lease/10 + 5*time.Millisecond }

// run is one run of a member: its name and its incarnation
// (ring.Member.Incarnation, the boot id). Departures are counted per run: a
// node restarted under its name is a new run that has never been declared
// dead, whatever the runs before it went through. Counted per name, the
// old run's leaving (a drain, a crash) reached the new run in a lease
// reply as news that it had been declared dead, and it distrusted every
// partition it had just taken over (chaos finding F19, the rolling restart).
type run struct{ name, incarnation string }

// String names the run as logs show it: name/incarnation.
func (r run) String() string { return r.name + "/" + r.incarnation }

// runOf returns the run of member name in tab; its incarnation is empty
// if tab lacks it.
func runOf(tab *ring.Table, name string) run {
	m, _ := tab.Member(name)
	return run{name: name, incarnation: m.Incarnation}
}

// seenDepartures is a granter's count of this node's departures as its
// last lease reply reported it, and the granter run that counted them: a
// restarted granter counts afresh.
type seenDepartures struct {
	granter  string // the granter's incarnation
	departed uint64
}

// departure is a member that left the ring from, as a partition's fence
// remembers it (partState.departed).
type departure struct {
	name string
	from *ring.Table
}

// ringChange is what installing a ring changed, for the caller to log,
// count and act on.
type ringChange struct {
	stale      bool     // tab is not newer than the ring served by: nothing changed
	appeared   []string // members new to the node's ring: ask them to reconcile
	departed   []string // members that left it
	lost       []int    // partitions whose owners both left at once
	wiped      []int    // of lost, those this node owns whose copies it drops first (lostCopiesGo)
	superseded []int    // partitions this node takes over afresh: its copies from an earlier ownership, and its floor, go (store.forgetLocked)
	rebuilt    []int    // of lost, those rebuilt under a new generation: the ring holds a majority of the members known
	fenced     int      // partitions fenced until the departed members' leases lapse
	fenceFor   time.Duration
	revoke     []run // departed runs whose partitions this node fences: with seats, revoked for good at them
	transfers  int   // partitions to get from other members
}

// install makes tab the ring the node serves by, at now. Partitions the
// node owns in tab but did not own before become hand-offs from their
// previous owners; every owned partition is reconciled with members that
// appeared; partitions a departed member owned are fenced until the node's
// grant to it lapses; previous owners that stay members are displaced
// until they confirm tab. The caller holds every store partition, so that
// no write routed by the old ring is stored once tab is published.
// hasCopies reports whether the node's store has copies of a partition
// (nil: it may have copies of any).
func (o *ownership) install(tab *ring.Table, now time.Duration, hasCopies func(p int) bool) (ringChange, error) {
	if tab.Partitions() != o.partitions {
		return ringChange{}, fmt.Errorf("%w: table has %d partitions, node has %d", ErrInvalid, tab.Partitions(), o.partitions)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	cur := o.load()
	prev := cur.tab
	if prev != nil && prev.Epoch() >= tab.Epoch() {
		return ringChange{stale: true}, nil // an older or repeated view
	}
	var ch ringChange
	if prev == nil {
		o.started.Store(int64(now))
	}
	if prev != nil {
		ch.appeared = membersMissing(tab, prev)
		ch.departed = membersMissing(prev, tab)
	}
	for _, m := range tab.Members() {
		if o.stillLeft(m, ch.appeared) {
			continue
		}
		delete(o.left, m.Name)
		o.known[m.Name] = true
		if m.Name == o.self {
			o.run = m.Incarnation
		}
	}
	for _, name := range ch.appeared {
		delete(o.released, name) // back, as a new run or after a cut: it holds what it holds
		delete(o.pushed, name)
	}
	next := &ownState{tab: tab, prev: prev, installed: now, parts: slices.Clone(cur.parts), need: o.quorum(), seats: leaseSeatsOf(tab, o.self)}
	o.fence(next, prev, ch.departed, now, &ch)
	o.displace(next, prev)
	o.transfers(next, prev, ch.appeared, ch.departed, now, hasCopies, &ch)
	o.state.Store(next)
	if len(tab.Members()) < next.need {
		// A ring below the quorum is the smaller side of a cut: owners it
		// lacks are out of reach, not gone, and the node serves nothing
		// until the cut heals and it reconciles. Reporting them lost would
		// raise a false alarm.
		ch.lost = nil
	}
	if len(ch.lost) > 0 {
		o.recordLosses(tab, next, &ch)
	}
	for _, p := range next.parts {
		if p.transfer != nil {
			ch.transfers++
		}
	}
	return ch, nil
}

// recordLosses records ch.lost, the partitions tab lost with both owners
// (sorted here), as the latest loss, and fills in what this node does of
// them: those it owns whose copies no owner vouches for are wiped first
// (ch.wiped, lostCopiesGo), and those it is the primary of in a ring
// holding a majority are rebuilt (ch.rebuilt). Called with mu held.
func (o *ownership) recordLosses(tab *ring.Table, next *ownState, ch *ringChange) {
	slices.Sort(ch.lost)
	o.lost = LostPartitions{Epoch: tab.Epoch(), Partitions: ch.lost}
	for _, p := range ch.lost {
		if owns(tab.Owners(p), o.self) && lostCopiesGo(next.parts[p]) {
			ch.wiped = append(ch.wiped, p)
		}
	}
	if len(ch.wiped) > 0 {
		o.edit(func(s *ownState) {
			for _, p := range ch.wiped {
				s.parts[p].distrusted, s.parts[p].unvouched = false, false
			}
		})
	}
	if o.majority(tab) {
		// Rebuilt from nothing by the side that goes on: a new
		// generation (Session.Gen). A side below a majority (with
		// AllowMinority) keeps the old one, so that after the heal
		// the side that kept the sessions is not outranked by one
		// that started over. Only the new primary rebuilds, and
		// pushes what it holds with the floor to the buddy: a floor
		// another member made up on its own could be above its own
		// and would drop what it holds wherever it spread.
		for _, p := range ch.lost {
			if tab.Owners(p).Primary == o.self {
				ch.rebuilt = append(ch.rebuilt, p)
			}
		}
		if len(ch.rebuilt) > 0 {
			// Rebuilt from nothing: no copy left to distrust.
			o.edit(func(s *ownState) {
				for _, p := range ch.rebuilt {
					s.parts[p].distrusted = false
				}
			})
		}
	}
}

// membersMissing returns the members of a that b lacks, as the same
// incarnation: a member restarted under its name between a and b is
// missing from b (and b's incarnation of it from a), for it remembers
// nothing of what a's held.
func membersMissing(a, b *ring.Table) []string {
	var out []string
	for _, m := range a.Members() {
		if !b.Holds(m) {
			out = append(out, m.Name)
		}
	}
	return out
}

// fence fences every partition this node owns in next that one of the
// departed members owned in prev: until this node's grants to them have
// lapsed (partState.fence), and until the other members of prev have
// moved on too (partState.departed, fenceWait). A departure counts (a
// lease reply tells the departed member it was declared dead) only when
// next holds a majority of the members the node knows: on the smaller
// side of a cut, the members out of reach are the ones that went on, and
// their copies are the partition's, not copies to distrust.
//
// This node's own grant is not enough, nor the other new owner's: a new
// owner that joined as the departed one was cut off from it granted it
// nothing, this node's grant may have lapsed in the cut, and the departed
// owner still held every lease it needed from the others and served its
// old copy while the new owners acknowledged writes (docs/ARCHITECTURE.md,
// "Why the node's own grant is not enough").
func (o *ownership) fence(next *ownState, prev *ring.Table, departed []string, now time.Duration, ch *ringChange) {
	cur := o.load()
	until := time.Duration(0)
	declares := o.majority(next.tab)
	for _, d := range departed {
		if declares {
			o.departures[runOf(prev, d)]++
		}
		until = max(until, o.granted[d])
	}
	for p := range next.parts {
		part := &next.parts[p]
		if part.fence <= now {
			part.fencedBy = nil
		}
		if len(part.departed) > 0 && cur.tab != nil {
			// Waited out under the ring before, or back in the ring (a
			// departed owner that returned is a displaced one, rule 8).
			part.departed = slices.DeleteFunc(slices.Clone(part.departed), func(d departure) bool {
				return o.returned(next.tab, d) || o.waitedOut(cur, d, now)
			})
		}
		if prev == nil {
			continue
		}
		old := prev.Owners(p)
		if !owns(next.tab.Owners(p), o.self) || !slices.Contains(departed, old.Primary) && !slices.Contains(departed, old.Buddy) {
			continue
		}
		for _, x := range []string{old.Primary, old.Buddy} {
			if !slices.Contains(departed, x) {
				continue
			}
			if until > now && !slices.Contains(part.fencedBy, x) {
				part.fencedBy = append(slices.Clone(part.fencedBy), x)
			}
			if _, gaveBack := o.released[x]; !gaveBack {
				// A member that gave its leases back drained and serves
				// nothing more (release).
				part.departed = append(slices.Clone(part.departed), departure{name: x, from: prev})
			}
		}
		part.fence = max(part.fence, until)
		if part.fence > now || len(part.departed) > 0 {
			ch.fenced++
		}
	}
	ch.fenceFor = max(until-now, 0)
	if !declares {
		// The smaller side of a cut: the members out of its reach went
		// on, and revoking them would stop the side that serves.
		return
	}
	for _, part := range next.parts {
		for _, d := range part.departed {
			// Departures still fenced, this ring's and those an earlier
			// one left without a majority to declare them.
			if r := runOf(d.from, d.name); !slices.Contains(ch.revoke, r) {
				ch.revoke = append(ch.revoke, r)
			}
		}
	}
}

// returned reports whether departed owner d is in tab again, which ends
// its fence: by name with the leases (a departed owner back in the ring
// is a displaced one, rule 8); with seats, only as the same run, since a
// new run of its name does not stop the old one from serving on the
// grants it holds until the revocation ends them.
func (o *ownership) returned(tab *ring.Table, d departure) bool {
	if !o.seated {
		return tab.Has(d.name)
	}
	m, ok := d.from.Member(d.name)
	return ok && tab.Holds(m)
}

// fenceWait is how long partition part, in state s, must still refuse
// writes at now: until this node's grants to its departed owners lapse
// (partState.fence), and until the leases each departed owner may hold
// from the other members of its ring have (departedWait).
func (o *ownership) fenceWait(s *ownState, part partState, now time.Duration) time.Duration {
	wait := part.fence - now
	for _, d := range part.departed {
		if !o.returned(s.tab, d) {
			wait = max(wait, o.ownerWait(s, d, now))
		}
	}
	return wait
}

// ownerWait is how long, at now, departed owner d may still serve: by
// the leases of the other members (departedWait), or, with seats, by the
// seats' grants (seatFenceWait).
func (o *ownership) ownerWait(s *ownState, d departure, now time.Duration) time.Duration {
	if o.seated {
		return o.seatFenceWait(d, now)
	}
	return o.departedWait(s, d, now)
}

// waitedOut reports whether, in state s at now, departed owner d can no
// longer serve (ownerWait).
func (o *ownership) waitedOut(s *ownState, d departure, now time.Duration) bool {
	return o.ownerWait(s, d, now) <= 0
}

// departedWait is how long, at now, departed owner d may still hold the
// leases it needs from the members of the ring it departed from, other
// than this node. It serves only while it holds live leases from all the
// other members of its ring but one (leaseQuorum). A member stops granting
// it once the member's ring no longer has it: a lease reply from the
// member under this node's ring (which has not) shows that as of its
// arrival (heldLease.since), and a lease it granted before lapses
// LeaseDuration after, plus the margin for clocks (whatever ring it was
// granted under: the member had moved past them all). The wait ends once
// all of those members still in this node's ring but one (and at least
// one) have moved on for that long, as many as leaseQuorum asks of d:
// with this node's grant lapsed too (the partition's fence), d lacks at
// least two of the leases its ring needs, if that ring is prev. (A ring
// of d's smaller than prev — one that never had a member that joined
// just before d was cut off — can need fewer; that window is open, see
// docs/ARCHITECTURE.md.) Until enough have answered, the wait is a sixth
// of a lease, to look again: the node asks every member for leases while
// it serves, or is asked to store replicas of a fenced partition
// (storeReplica). With no other member of that ring left in this node's
// ring, this node's grant was the last: nothing more to wait for.
func (o *ownership) departedWait(s *ownState, d departure, now time.Duration) time.Duration {
	held, fp := *o.held.Load(), s.tab.Fingerprint()
	var ends []time.Duration // when each member's grants to d have lapsed, of those that moved on
	others := 0
	for _, m := range d.from.Members() {
		if m.Name == o.self || m.Name == d.name || !s.tab.Has(m.Name) {
			continue
		}
		others++
		if l := held[m.Name]; l.fingerprint == fp && l.since > 0 {
			ends = append(ends, l.since+o.lease+o.margin())
		}
	}
	need := leaseQuorum(others)
	if need == 0 {
		return 0
	}
	if len(ends) < need {
		return max(o.lease/6, time.Millisecond)
	}
	slices.Sort(ends)
	return max(ends[need-1]-now, 0)
}

// displace records, for every partition this node owns in next, the
// members that owned it in prev (or were still waiting to be confirmed
// from earlier changes) and own it no more.
func (o *ownership) displace(next *ownState, prev *ring.Table) {
	tab := next.tab
	for p := range next.parts {
		ow := tab.Owners(p)
		candidates := next.parts[p].displaced
		next.parts[p].displaced = nil
		if !owns(ow, o.self) {
			continue
		}
		if prev != nil {
			old := prev.Owners(p)
			candidates = append(slices.Clone(candidates), old.Primary, old.Buddy)
		}
		var names []string
		for _, x := range candidates {
			if x != "" && x != o.self && tab.Has(x) && !owns(ow, x) && !slices.Contains(names, x) {
				names = append(names, x)
			}
		}
		next.parts[p].displaced = names
	}
}

// transfers updates the partitions to get from other members: new ones
// for partitions that move to this node, reconciliations with appeared
// members, and losses where every member that held a partition is gone.
// A departed member is no source, even when it is back as a new
// incarnation (it is then among appeared too): what it held is gone.
func (o *ownership) transfers(next *ownState, prev *ring.Table, appeared, departed []string, now time.Duration, hasCopies func(int) bool, ch *ringChange) {
	tab := next.tab
	before := prev
	if before == nil {
		// A node joining (or rejoining with empty memory) takes over from
		// the owners the ring had without it.
		before = tableWithout(tab, o.self)
	}
	d := departures{o: o, tab: tab, departed: departed}
	copies := func(p int) bool { return hasCopies == nil || hasCopies(p) }
	// A ring below the quorum is the smaller side of a cut: owners it
	// lacks are out of reach, not gone. Nothing is lost by it, and a
	// partition being taken over stays so, sources or not, until the cut
	// heals and the members that appear are asked (withSources). Taken
	// for a loss the report was suppressed, but the partition was held,
	// empty: a restarted node then took it over from that hold and the
	// sessions were gone with no loss reported (chaos finding F17, the
	// 30-minute run at 61d35d9, 910 s).
	below := len(tab.Members()) < next.need
	// Members back from the other side of a cut (appeared, same run) may
	// hold what a hand-off waits for; restarted ones (appeared and
	// departed: a new run) hold nothing.
	returned := slices.ContainsFunc(appeared, func(x string) bool { return !slices.Contains(departed, x) })
	for p := range next.parts {
		t := next.parts[p].transfer
		drained := t != nil && slices.ContainsFunc(t.sources, func(x string) bool { return d.handedOver(x, p) })
		t = d.pruned(t)
		if prev != nil && !below && d.lost(prev.Owners(p), p) {
			ch.lost = append(ch.lost, p)
		}
		if t != nil && !t.reconcile && drained {
			// A source left gracefully and pushed the partition here
			// whole: the hand-off is done.
			t = handedOverTransfer(t)
			next.parts[p].held, next.parts[p].unvouched = true, false
		}
		if t != nil && !t.reconcile && len(t.sources) == 0 && len(t.awaits) == 0 && !slices.Contains(ch.lost, p) && !below && !returned {
			// Still waiting for a hand-off, and every node that held the
			// partition has left: its sessions are gone. (A member that
			// reappeared, a source too, may hold old copies of the
			// partition: one declared dead says so, and no hand-off
			// completes on it (pull), so the hand-off is given up for
			// time and the loss reported then. Members back from a cut
			// become its sources below, and it waits for them.)
			ch.lost = append(ch.lost, p)
			t = nil
		}
		if !owns(tab.Owners(p), o.self) {
			notOwned(&next.parts[p], o.self, tab, prev, p, copies(p))
			continue
		}
		first := prev == nil && before == nil // no other server in this node's first ring
		if slices.Contains(ch.lost, p) || first && len(tab.Members()) == 1 {
			// Lost with both owners, and reported; or the cluster's first
			// node: what this node has of it is the partition from now on.
			next.parts[p].held = true
			next.parts[p].reportedLost = next.parts[p].reportedLost || slices.Contains(ch.lost, p)
		}
		if t == nil && first && len(tab.Members()) > 1 {
			t = o.fromWitnesses(tab, now)
		}
		if t == nil && before != nil && !owns(before.Owners(p), o.self) && !slices.Contains(ch.lost, p) {
			t = o.takeOver(next, prev, d, before.Owners(p), p, now, copies(p), ch)
		}
		if len(appeared) > 0 {
			t = o.withSources(t, tab, now, appeared)
		}
		if t != nil && len(t.sources) == 0 && (t.reconcile || len(t.awaits) == 0 && !below) {
			t = nil
		}
		if next.parts[p].distrusted && (t == nil || t.reconcile) {
			t = distrustedTakeOver(t, tab, o.self, now)
		}
		next.parts[p].transfer, next.parts[p].stoppedWith = t, nil
	}
	o.noteLeaving(next, prev)
}

// distrustedTakeOver returns the transfer of a partition this node owns in
// tab and distrusts (it was told it had been declared dead while another
// node owned the partition: reconcile), when the ring change gave it
// none, or only a reconciliation (t): a hand-off from every other member
// that ends, as reconcile's does, only on a settled owner. Without it the
// partition stayed distrusted with nothing to end it: the node refused
// every request for it and answered every pull distrusting, and the other
// owner, unable to take the partition from it, gave its hand-off up and
// reported the loss of sessions this node held (the explorer, schedule 83).
func distrustedTakeOver(t *transfer, tab *ring.Table, self string, now time.Duration) *transfer {
	u := transfer{since: now}
	if t != nil {
		u = *t
	}
	var everyone []string
	for _, m := range tab.Members() {
		everyone = append(everyone, m.Name)
	}
	u.sources = sourcesIn(tab, self, append(slices.Clone(u.sources), everyone...)...)
	u.reconcile, u.gates, u.distrust = false, true, true
	return &u
}

// notOwned updates part, partition p's state in a ring tab that does not
// give p to this node (self): no transfer, no loss mark; and if prev gave it
// (the node stops owning p now), the hand-off still pending
// (partState.stoppedWith), its copies unvouched, and the owners it
// stops in favour of.
func notOwned(part *partState, self string, tab, prev *ring.Table, p int, hasCopies bool) {
	stopping := prev != nil && owns(prev.Owners(p), self)
	part.stoppedWith = nil
	if cur := part.transfer; stopping && cur != nil && !cur.reconcile {
		part.stoppedWith = cur
	}
	part.transfer, part.reportedLost, part.adopted = nil, false, false
	if stopping {
		if hasCopies {
			// No longer kept current: the owners write elsewhere.
			part.unvouched = true
		}
		part.successors, part.stoppedIn = successorsOf(tab, p), tab.Epoch()
	}
}

// takeOver starts the hand-off of partition p, which this node owns in
// next and did not own in the ring before (where from owned it), and
// decides what becomes of the copies it has (hasCopies) from an earlier
// ownership: kept unvouched, or dropped before the ring is served
// (ringChange.superseded).
func (o *ownership) takeOver(next *ownState, prev *ring.Table, d departures, from ring.Owners, p int, now time.Duration, hasCopies bool, ch *ringChange) *transfer {
	t := d.handOff(from, p, now, prev == nil)
	part := &next.parts[p]
	t.returning = !t.reconcile && prev != nil && part.held && !part.distrusted && part.stoppedIn == prev.Epoch()
	part.held, part.unvouched = t.reconcile, false
	switch {
	case t.reconcile:
	case (t.returning || o.allowMinority || d.pushed(p)) && !hasCopies:
	case t.returning || o.allowMinority || d.pushed(p):
		// Copies that are, or may be, the partition's: a
		// returning node's own (the partition up to the ring
		// before, transfer.returning), a leaver's push that came
		// before this ring, or, with AllowMinority, writes
		// acknowledged on this node's side of a cut. Kept and
		// merged, but vouched for by no one until the hand-off
		// completes: if the partition is lost first, they may
		// lack what was acknowledged since, and go
		// (lostCopiesGo).
		part.unvouched = true
	default:
		// The copies left from when this node last owned the
		// partition go before the ring is served: its owners
		// wrote elsewhere since, and the hand-off brings the
		// partition from a holder, or is given up and the loss
		// reported. Merged with a holder's, they came back —
		// sessions the holder lost or deleted long ago (chaos
		// finding F17, session 512); kept through a loss, they
		// were rebuilt rewound. The partition's floor goes with
		// them, copies or not (store.forgetLocked): the hand-off
		// brings the holders'.
		ch.superseded = append(ch.superseded, p)
	}
	return t
}

// departures judges, for transfers, the members that left tab's ring.
type departures struct {
	o        *ownership
	tab      *ring.Table
	departed []string
}

// stays reports whether name is a member of the ring that did not depart.
func (d departures) stays(name string) bool {
	return d.tab.Has(name) && !slices.Contains(d.departed, name)
}

// lost reports whether both of old's owners of partition p left the
// ring, neither handing it over (drained, or still draining): the
// partition is lost with them.
func (d departures) lost(old ring.Owners, p int) bool {
	return !d.stays(old.Primary) && (old.Buddy == "" || !d.stays(old.Buddy)) &&
		!d.handedOver(old.Primary, p) && !d.handedOver(old.Buddy, p) && !d.draining(old.Primary) && !d.draining(old.Buddy)
}

// handedOver reports whether name left gracefully, its drain complete (it
// gave its leases back), it held partition p whole, and pushed it here:
// this node has what it held of p, and nothing of it is lost. A partition
// it did not say it held (its ring may not have given it p), or did not
// push here, is not handed over: CHAOS.md F13.
func (d departures) handedOver(name string, p int) bool {
	return name != "" && !d.stays(name) && d.o.released[name][p] && d.o.pushed[name][p]
}

// pushed reports whether a leaver pushed partition p here (its drain may
// reach this node before the ring without it does, and by a ring this
// node never saw).
func (d departures) pushed(p int) bool {
	for _, parts := range d.o.pushed {
		if parts[p] {
			return true
		}
	}
	return false
}

// draining reports whether name left gracefully and its drain is still
// under way (transfer.awaits).
func (d departures) draining(name string) bool { return d.o.drainingLeaver(d.tab, name) }

// pruned returns transfer t (nil if nil) without the sources that left
// (those still draining awaited instead) and without awaited members no
// longer draining; t itself when nothing changes.
func (d departures) pruned(t *transfer) *transfer {
	gone := func(x string) bool { return !d.stays(x) }
	done := func(x string) bool { return !d.draining(x) }
	if t == nil || !slices.ContainsFunc(t.sources, gone) && !slices.ContainsFunc(t.awaits, done) {
		return t
	}
	u := *t
	u.sources = slices.DeleteFunc(slices.Clone(t.sources), gone)
	u.awaits = slices.Clone(t.awaits)
	for _, x := range t.sources {
		if gone(x) && d.draining(x) && !slices.Contains(u.awaits, x) {
			u.awaits = append(u.awaits, x)
		}
	}
	u.awaits = slices.DeleteFunc(u.awaits, done)
	return &u
}

// handOff is the transfer of partition p, new to this node, from its
// previous owners old, at now (gating readiness on a node's first ring).
// A previous owner that left gracefully and pushed its copies here before
// it gave its leases back hands the partition over: the transfer is then
// a reconciliation with the other one. Otherwise it pulls from the
// previous owners that stay, and awaits those still draining.
func (d departures) handOff(old ring.Owners, p int, now time.Duration, firstRing bool) *transfer {
	from := slices.DeleteFunc([]string{old.Primary, old.Buddy}, func(x string) bool { return !d.stays(x) })
	pushed := d.handedOver(old.Primary, p) || d.handedOver(old.Buddy, p)
	t := &transfer{since: now, sources: sourcesIn(d.tab, d.o.self, from...), gates: firstRing && !pushed, reconcile: pushed}
	if !pushed {
		t.awaits = slices.DeleteFunc([]string{old.Primary, old.Buddy}, func(x string) bool { return !d.draining(x) })
	}
	return t
}

// fromWitnesses is the hand-off of a partition owned by the only server of
// tab, beside witnesses. The cluster is new only if the witnesses are as
// young (Node.blank: the pull finds every member blank and takes the
// partition as new); a witness that has served knows the partition had
// owners, and this node, restarted while the other server is down, must
// not serve it empty as if nothing were lost: the hand-off waits for a
// holder, and gives up and reports the loss after HandoffTimeout.
func (o *ownership) fromWitnesses(tab *ring.Table, now time.Duration) *transfer {
	return &transfer{since: now, sources: sourcesIn(tab, o.self, memberNames(tab)...), gates: true}
}

// noteLeaving records, when next is the first ring without this node after
// prev had it (its own view drops it first, then Drain installs the ring
// without it again), what it owned under prev and did not hold whole
// (unheldOwned); a ring that has the node again forgets it. Called with
// mu held.
func (o *ownership) noteLeaving(next *ownState, prev *ring.Table) {
	switch {
	case next.tab.Has(o.self):
		o.leftUnheld = nil
	case prev != nil && prev.Has(o.self):
		o.leftUnheld = nil
		for p := range next.parts {
			if owns(prev.Owners(p), o.self) && (!next.parts[p].held || next.parts[p].distrusted) {
				o.leftUnheld = append(o.leftUnheld, p)
			}
		}
	}
}

// withSources returns transfer t (a reconciliation begun at now, if nil)
// with the members in names of tab added to its sources.
func (o *ownership) withSources(t *transfer, tab *ring.Table, now time.Duration, names []string) *transfer {
	u := transfer{since: now, reconcile: true}
	if t != nil {
		u = *t
	}
	u.sources = sourcesIn(tab, o.self, append(slices.Clone(u.sources), names...)...)
	return &u
}

// sourcesIn returns the distinct names among names that are members of tab
// other than self.
func sourcesIn(tab *ring.Table, self string, names ...string) []string {
	var out []string
	for _, s := range names {
		if s != "" && s != self && tab.Has(s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// tableWithout returns tab's ring without member name, or nil if name is
// its only member.
func tableWithout(tab *ring.Table, name string) *ring.Table {
	var rest []ring.Member
	for _, m := range tab.Members() {
		if m.Name != name {
			rest = append(rest, m)
		}
	}
	t, err := ring.New(tab.Config(), 0, rest)
	if err != nil {
		return nil
	}
	return t
}

// drainingLeaver reports whether member name, not in tab, said it is
// leaving and is still alive, and has not yet given its leases back: its
// drain is under way (transfer.awaits). Called with mu held.
func (o *ownership) drainingLeaver(tab *ring.Table, name string) bool {
	return name != "" && name != o.self && !tab.Has(name) && o.leaving[name] && o.released[name] == nil
}

// leavers returns the members that said they are leaving and are still
// alive (setLeaving), as a copy.
func (o *ownership) leavers() map[string]bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.leaving)
}

// setLeaving records the members that said they are leaving and are still
// alive (membership's view): a hand-off that awaits one no longer in the
// list (it died, or gave up leaving) awaits it no more (transfer.awaits).
func (o *ownership) setLeaving(names []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.leaving = map[string]bool{}
	for _, n := range names {
		o.leaving[n] = true
	}
	o.dropAwaited()
}

// dropAwaited drops from every hand-off's awaits the members no longer
// draining. Called with mu held.
func (o *ownership) dropAwaited() {
	s := o.load()
	if s.tab == nil {
		return
	}
	stale := func(x string) bool { return !o.drainingLeaver(s.tab, x) }
	var ps []int
	for p, part := range s.parts {
		if t := part.transfer; t != nil && slices.ContainsFunc(t.awaits, stale) {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return
	}
	o.edit(func(s *ownState) {
		for _, p := range ps {
			u := *s.parts[p].transfer
			u.awaits = slices.DeleteFunc(slices.Clone(u.awaits), stale)
			s.parts[p].transfer = &u
		}
	})
}

// memberNames returns the names of tab's members.
func memberNames(tab *ring.Table) []string {
	var out []string
	for _, m := range tab.Members() {
		out = append(out, m.Name)
	}
	return out
}

// owns reports whether name is one of o's owners.
func owns(o ring.Owners, name string) bool { return o.Primary == name || o.Buddy == name }

// successorsOf returns partition p's owners in tab as the runs they are
// (partState.successors).
func successorsOf(tab *ring.Table, p int) []ring.Member {
	var out []ring.Member
	for _, name := range []string{tab.Owners(p).Primary, tab.Owners(p).Buddy} {
		if m, ok := tab.Member(name); ok {
			out = append(out, m)
		}
	}
	return out
}

// reconcile marks every partition the node owns for reconciliation with
// sources (every other member, when nil), at now. With distrust, the
// node's own copies may be stale (it was declared dead): each partition is
// handed over again, so that until it has pulled it the node fetches each
// session from the others before answering, as primary or as buddy, and
// it is not ready. It reports whether there is anything to do.
func (o *ownership) reconcile(sources []string, distrust bool, now time.Duration) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	tab := o.load().tab
	if tab == nil {
		return false
	}
	if sources == nil {
		for _, m := range tab.Members() {
			sources = append(sources, m.Name)
		}
	}
	o.edit(func(s *ownState) {
		for p := range s.parts {
			if !owns(tab.Owners(p), o.self) {
				if distrust {
					s.parts[p].distrusted = true // as a source to others
					// A pull still finishing under the ring before no
					// longer makes the copies held: the node may have
					// been declared dead after it (finishTransfer).
					s.parts[p].stoppedWith = nil
				}
				continue
			}
			t := transfer{since: now, reconcile: true}
			if cur := s.parts[p].transfer; cur != nil {
				t = *cur
			}
			t.sources = sourcesIn(tab, o.self, append(slices.Clone(t.sources), sources...)...)
			if distrust {
				// Its own copies may be stale: any member that holds the
				// partition is a source to take it from.
				t.reconcile, t.gates, t.distrust = false, true, true
				t.declared++
			}
			if distrust {
				// A loss this node reported is no guide any more: the
				// members that declared it dead may have rebuilt the
				// partition since and acknowledged writes to it, and
				// a former owner that vouches for this node's run
				// holds them. Kept, it made the node take nothing
				// from such a source (sourceAsk.afterLoss), and two
				// owners each cut off and declared dead completed
				// their hand-offs on each other's copies, the writes
				// made without them gone with no loss reported (the
				// explorer, TestExploreHandOffs).
				s.parts[p].reportedLost, s.parts[p].adopted = false, false
			}
			if len(t.sources) > 0 {
				s.parts[p].transfer = &t
				s.parts[p].distrusted = s.parts[p].distrusted || distrust
			}
		}
	})
	return true
}

// transferJob is one partition to pull from its sources.
type transferJob struct {
	p       int
	sources []string
	handoff bool // a hand-off (not a reconciliation): sources must be on the node's ring
	// distrust: the node was declared dead; only a settled owner ends the
	// hand-off (transfer.distrust).
	distrust bool
	// returning: every source answering ends the hand-off
	// (transfer.returning).
	returning bool
	// afterLoss: the node reported the partition lost and owns it still
	// (partState.reportedLost): only owners' copies are merged.
	afterLoss bool
	// transfer is the transfer the job is for: only a pull for it ends it,
	// not one begun before the partition was marked again (a distrust).
	transfer *transfer
}

// dueTransfers returns the transfers to work on under tab at now, after
// giving up those whose sources have all left and those that waited longer
// than HandoffTimeout, once a pull begun past it has failed (transfer.tried;
// returned as gaveUp, for the caller to log). A
// hand-off given up for time is a loss the guarantees allow only if it is
// reported: no previous owner answered, so whatever they held that this
// node lacks is gone (a member restarted empty under its name while the
// other owner was paused past the failure detector); those partitions are
// returned as lost and recorded as the latest loss. If tab is no longer
// the ring it returns nothing: a ring installed since the caller read tab
// brought transfers whose sources tab may lack, and judging them by tab
// would give them up.
func (o *ownership) dueTransfers(tab *ring.Table, now time.Duration) (jobs []transferJob, gaveUp []string, lost, drop []int) {
	jobs, gaveUp, lost, drop, _ = o.due(tab, now, true)
	return jobs, gaveUp, lost, drop
}

// due is dueTransfers, giving hand-offs up only with giveUp: without it,
// one due to be given up is left as it is and reported as pending, for the
// caller to give it up while it holds the store (Node.pullDue), so that no
// request reads the copies the loss is about to drop.
func (o *ownership) due(tab *ring.Table, now time.Duration, giveUp bool) (jobs []transferJob, gaveUp []string, lost, drop []int, pending bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.load().tab != tab {
		return nil, nil, nil, nil, false // the ring moved on; the next round works by the new one
	}
	if !slices.ContainsFunc(o.load().parts, func(ps partState) bool { return ps.transfer != nil }) {
		// Nothing to hand over: the round changes nothing, and copies
		// no state (an idle node runs this ten times a second).
		return nil, nil, nil, nil, false
	}
	below := len(tab.Members()) < o.load().need // the smaller side of a cut: nothing is given up (transfers)
	o.edit(func(s *ownState) {
		for p := range s.parts {
			t := s.parts[p].transfer
			if t == nil {
				continue
			}
			sources := slices.DeleteFunc(slices.Clone(t.sources), func(x string) bool { return !tab.Has(x) })
			overdue := now-t.since > o.handoff && t.tried-t.since > o.handoff // a pull begun past the timeout failed
			switch {
			case below && !t.reconcile:
				if len(sources) > 0 {
					jobs = append(jobs, transferJob{p: p, sources: sources, handoff: true, distrust: t.distrust, returning: t.returning, afterLoss: s.parts[p].reportedLost, transfer: t})
				}
			case len(sources) == 0 && len(t.awaits) > 0 && now-t.since <= o.handoff:
				// Nothing to pull: a leaver's push and release end it.
			case len(sources) == 0 && t.reconcile:
				s.parts[p].transfer = nil
			case (len(sources) == 0 || overdue) && !giveUp:
				pending = true
			case len(sources) == 0 || overdue:
				gaveUp = append(gaveUp, fmt.Sprintf("partition %d: hand-off from %v (leavers awaited %v) timed out or left none to take it from; serving own copies", p, t.sources, t.awaits))
				s.parts[p].transfer = nil
				if !t.reconcile {
					lost = append(lost, p)
					s.parts[p].reportedLost = true
					if lostCopiesGo(s.parts[p]) {
						// This node's own copies are suspect (it was
						// declared dead, or had them from before it took
						// the partition over) and no owner vouched for
						// them since: they go.
						drop = append(drop, p)
					}
				}
				s.parts[p].distrusted, s.parts[p].unvouched = false, false
				s.parts[p].held = true // what it has is the partition now, its loss reported
			default:
				jobs = append(jobs, transferJob{p: p, sources: sources, handoff: !t.reconcile, distrust: t.distrust && !t.reconcile, returning: t.returning && !t.reconcile, afterLoss: s.parts[p].reportedLost, transfer: t})
			}
		}
	})
	if len(lost) > 0 {
		o.lost = LostPartitions{Epoch: tab.Epoch(), Partitions: lost}
	}
	return jobs, gaveUp, lost, drop, pending
}

// endHandoff ends partition p's hand-off, if any: owner from rebuilt the
// partition after a loss (its floor reached this node), so what it holds
// is the partition, and what the hand-off would bring is below its floor.
// It reports whether it ended one.
func (o *ownership) endHandoff(p int, from string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.load()
	t := s.parts[p].transfer
	if t == nil || t.reconcile || s.tab == nil || !owns(s.tab.Owners(p), from) {
		return false
	}
	o.edit(func(s *ownState) {
		s.parts[p].transfer = nil
		s.parts[p].distrusted, s.parts[p].unvouched = false, false
		s.parts[p].held = true // the owner's pushes and pulls bring what it rebuilt
	})
	return true
}

// takeNew ends partition p's hand-off, if tab is still the ring and p is
// being handed over (not reconciled, and not to a node declared dead): its
// sources and this node were all blank (Node.blank), so the partition is
// new, and the node holds it. It reports whether it ended one.
func (o *ownership) takeNew(tab *ring.Table, p int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	cur := o.load()
	t := cur.parts[p].transfer
	if cur.tab != tab || t == nil || t.reconcile || t.distrust {
		return false
	}
	o.edit(func(s *ownState) {
		s.parts[p].transfer = nil
		s.parts[p].held, s.parts[p].unvouched = true, false
	})
	return true
}

// transferTried records that a pull for partition p's transfer t, begun
// at began, failed, if t is still p's transfer: once one begun past the
// hand-off timeout has failed, the hand-off is given up (due).
func (o *ownership) transferTried(p int, t *transfer, began time.Duration) {
	o.editTransfer(p, t, func(u *transfer) { u.tried = max(u.tried, began) })
}

// transferAnswered restarts partition p's hand-off timeout at now, if t
// is still p's transfer: a source answered, serving by another ring, or
// the partition's other owner is on the ring but out of reach.
func (o *ownership) transferAnswered(p int, t *transfer, now time.Duration) {
	o.editTransfer(p, t, func(u *transfer) { u.since = now })
}

// editTransfer publishes a changed copy of partition p's transfer, if t
// is still p's transfer (a published transfer is never changed).
func (o *ownership) editTransfer(p int, t *transfer, change func(*transfer)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cur := o.load().parts[p].transfer; cur == nil || cur != t {
		return
	}
	o.edit(func(s *ownState) {
		u := *s.parts[p].transfer
		change(&u)
		s.parts[p].transfer = &u
	})
}

// finishTransfer ends partition p's transfer t, if tab is still the ring
// and t still p's transfer, and reports whether it ended the last
// hand-off.
func (o *ownership) finishTransfer(tab *ring.Table, p int, t *transfer) (last bool) {
	last, _ = o.finishHandoff(tab, p, t)
	return last
}

// finishHandoff is finishTransfer, reporting also whether the node must
// push its copies of p to the buddy (push): it completed a hand-off of p
// as its primary, taking the partition from the other owner's hold after
// that owner reported it lost (adoptLoss). That owner, giving its own
// hand-off up, dropped the copies it had merged from this node while
// this node did not hold the partition yet; this node keeps them, and
// without the push is their only holder, so that its next crash loses
// them with no loss reported (chaos finding F17, session 346-r0000 of
// the 65-minute run at 8f7cbdd). The push merges, newer over older, and
// raises no floor: rebuilding the partition under a new floor here
// instead made buddies drop acknowledged copies (the run at d40dcf0).
func (o *ownership) finishHandoff(tab *ring.Table, p int, t *transfer) (last, push bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	cur := o.load()
	if cur.tab != tab && cur.prev == tab && cur.parts[p].stoppedWith != nil && t.covers(cur.parts[p].stoppedWith) {
		// The ring after tab took p away while the pull was finishing:
		// its copies were all merged under tab (Node.merge refuses them
		// once the ring moves on), so the node held p as of then.
		o.edit(func(s *ownState) {
			s.parts[p].stoppedWith = nil
			s.parts[p].distrusted, s.parts[p].held = false, true
		})
		return false, false
	}
	if cur.tab != tab || cur.parts[p].transfer == nil || !t.covers(cur.parts[p].transfer) {
		return false, false // the ring moved on, or p was marked again since for more: the next round decides
	}
	handoff := !cur.parts[p].transfer.reconcile
	push = handoff && cur.parts[p].adopted && tab.Owners(p).Primary == o.self
	o.edit(func(s *ownState) {
		s.parts[p].transfer = nil
		if handoff {
			s.parts[p].distrusted, s.parts[p].unvouched = false, false // caught up from a source that vouches for its copies
			s.parts[p].held = true
			s.parts[p].adopted = false
		}
	})
	return handoff && o.load().transfers(false) == 0, push
}

// transfers counts the partitions still to get from other members; without
// reconciling, only hand-offs.
func (s *ownState) transfers(reconciling bool) int {
	c := 0
	for _, p := range s.parts {
		if p.transfer != nil && (reconciling || !p.transfer.reconcile) {
			c++
		}
	}
	return c
}

// gating counts the hand-offs that keep the node unready (transfer.gates).
func (s *ownState) gating() int {
	c := 0
	for _, p := range s.parts {
		if p.transfer != nil && p.transfer.gates && !p.transfer.reconcile {
			c++
		}
	}
	return c
}

// holds reports whether this node holds partition p (partState.held).
func (s *ownState) holds(p int) bool { return s.parts[p].held }

// endHandedOver ends this node's pending hand-offs of the partitions
// member from, leaving, held whole and pushed here: the node holds them
// now, any other source only to reconcile with. Members usually install
// the ring without a leaver as soon as it says it is leaving, before its
// pushes and release arrive, so install alone would not see them. Called
// with mu held.
func (o *ownership) endHandedOver(from string) {
	s := o.load()
	if s.tab == nil || s.tab.Has(from) {
		return
	}
	var ends []int
	for p, part := range s.parts {
		if t := part.transfer; t != nil && !t.reconcile && !t.distrust && owns(s.tab.Owners(p), o.self) && o.released[from][p] && o.pushed[from][p] {
			ends = append(ends, p)
		}
	}
	if len(ends) > 0 {
		o.edit(func(s *ownState) {
			for _, p := range ends {
				s.parts[p].transfer = handedOverTransfer(s.parts[p].transfer)
				s.parts[p].held, s.parts[p].unvouched = true, false
			}
		})
	}
	// Its drain is over: hand-offs that awaited it and were not handed
	// over await it no more.
	o.dropAwaited()
}

// handedOverTransfer is hand-off t once a graceful leaver has pushed the
// partition here whole: any source left is only to reconcile with (nil
// when none is).
func handedOverTransfer(t *transfer) *transfer {
	if len(t.sources) == 0 {
		return nil
	}
	u := *t
	u.reconcile, u.gates, u.awaits = true, false, nil
	return &u
}

// markUnvouched records that this node, not holding partition p, merged
// copies of it from a source whose copies are unvouched (it had them from
// before it last took the partition over, and has not caught up): until
// a hand-off completes, this node's are unvouched too (lostCopiesGo), and
// a loss drops them rather than rebuild the partition from them (chaos
// finding F13, seed 3: a restarted owner pulled a former owner's old
// copy, then rebuilt the lost partition from it).
func (o *ownership) markUnvouched(p int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if part := o.load().parts[p]; part.held || part.unvouched {
		return
	}
	o.edit(func(s *ownState) { s.parts[p].unvouched = true })
}

// adoptLoss records that this node took copies of partition p from an
// owner that reported it lost (a pull or raw read reply's Lost), if it
// owns p in tab, still the ring: its copies are that owner's hold after
// the loss, and from now on it takes nothing of p from a non-owner
// either (partState.reportedLost), so the two owners agree on what the
// loss took. Without it the other owner, declared dead, merged a former
// owner's copy the loss had taken, served it, and lost it again when it
// replaced its copies with the reporting owner's, with no loss reported
// then (chaos finding F17, session 909 of the 60-minute run at 9efd854).
// It reports whether the report is adopted now (Node.adoptLoss).
func (o *ownership) adoptLoss(tab *ring.Table, p int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.load()
	if s.tab != tab || !owns(tab.Owners(p), o.self) || s.parts[p].reportedLost {
		return false
	}
	o.edit(func(s *ownState) { s.parts[p].reportedLost, s.parts[p].adopted = true, true })
	return true
}

// reportedLost reports whether this node reported partition p lost, or
// adopted an owner's report of it, while owning it (partState.reportedLost).
func (o *ownership) reportedLost(p int) bool { return o.load().parts[p].reportedLost }

// notePush records that member from, leaving, pushed partition p here
// (Drain), at now: with its release naming p, its leaving hands p over. A
// hand-off of p that awaits from starts its timeout again: the drain is
// under way.
func (o *ownership) notePush(from string, p int, now time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.pushed[from] == nil {
		o.pushed[from] = map[int]bool{}
	}
	o.pushed[from][p] = true
	if t := o.load().parts[p].transfer; t != nil && slices.Contains(t.awaits, from) {
		o.edit(func(s *ownState) {
			u := *s.parts[p].transfer
			u.since = now
			s.parts[p].transfer = &u
		})
	}
}

// trustedHeld returns the partitions the node holds and does not
// distrust: what a leaver pushed whole (leaseRequest.Held).
func (o *ownership) trustedHeld() []int {
	s := o.load()
	var out []int
	for p, part := range s.parts {
		if part.held && !part.distrusted {
			out = append(out, p)
		}
	}
	return out
}

// unheldOwned returns the partitions the node owned under the last ring
// that had it and did not hold whole, or distrusted: a draining node
// (whose ring no longer has it) was still being handed them, or was
// declared dead and had not caught up.
func (o *ownership) unheldOwned() []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.leftUnheld)
}

// young reports whether this run of the node installed its first ring
// less than HandoffTimeout before now (or none yet). A cluster is new
// when every member is young and none holds a partition: its members,
// all started at once, take their partitions over from each other, and
// none has anything to give. A hand-off that finds every source young
// and none holding the partition takes it as new; one that finds a
// source that is not young waits for a holder, and is given up, its
// loss reported, after HandoffTimeout (a member that has run that long
// has seen the cluster serve, so a partition no one holds had owners
// that are gone: chaos finding F13).
func (o *ownership) young(now time.Duration) bool {
	s := o.started.Load()
	return s < 0 || now-time.Duration(s) < o.handoff
}

// knowsPast reports whether this run learned from a member's lease that
// the cluster served before it: the member was not young, or had learned
// it in turn. A young node that knows the past is not blank (Node.blank):
// the older runs it saw served, and a partition no member holds was lost
// with them, not never had. Without it, a cluster whose every member
// restarted within HandoffTimeout, each run starting while an older one
// still served, takes as new the partitions it lost (chaos finding F22).
func (o *ownership) knowsPast() bool { return o.pastKnown.Load() }

// learningPast reports whether this run is young, has not learned that
// the cluster served before it, and has yet to hear from some member of
// tab's run: it asks the members for leases even while idle
// (renewLeases), since a lease reply is how it learns (leaseReply.Past),
// and a run that asked none while the older runs it joined still served
// would take a cluster restarted run by run for a new one (chaos
// finding F22). One grant from each run is enough: it says all there is.
func (o *ownership) learningPast(tab *ring.Table, now time.Duration) bool {
	if !o.young(now) || o.knowsPast() {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, m := range tab.Members() {
		if seen, ok := o.seen[m.Name]; m.Name != o.self && (!ok || seen.granter != m.Incarnation) {
			return true
		}
	}
	return false
}

// past reports whether this node tells a member it grants a lease that
// the cluster served before now: it is not young, or knows the past.
func (o *ownership) past(now time.Duration) bool { return !o.young(now) || o.knowsPast() }

// forget records that the node is about to drop its copies of partition
// p, which it does not own in tab: it holds it no more, and vouches for
// nothing. It reports whether the node may drop them: not if tab is no
// longer the ring, or gives the node p.
func (o *ownership) forget(tab *ring.Table, p int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.load()
	if s.tab != tab || owns(tab.Owners(p), o.self) {
		return false
	}
	if s.parts[p].held || s.parts[p].unvouched {
		o.edit(func(s *ownState) { s.parts[p].held, s.parts[p].unvouched = false, false })
	}
	return true
}

// confirmDisplaced forgets partition p's displaced owners, if tab is still
// the ring: each has answered under it, and serves p by the old ring no
// more.
func (o *ownership) confirmDisplaced(tab *ring.Table, p int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if cur := o.load(); cur.tab != tab || len(cur.parts[p].displaced) == 0 {
		return
	}
	o.edit(func(s *ownState) { s.parts[p].displaced = nil })
}

// grant grants a lease to member from at now, if the gate admits it, and
// returns the reply. It runs under mu, as install fences under mu: a grant
// is either seen by the fence of the ring that drops from, or refused by
// it.
// The reply counts the departures of the run that asks (incarnation),
// or, when a node of an older version names none, of the run of from in
// this node's ring.
func (o *ownership) grant(from, incarnation string, now time.Duration) (leaseReply, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := o.load()
	if v := o.admit(admission{entry: entryLease, tab: s.tab, from: from}, now); v.err != nil {
		return leaseReply{}, v.err
	}
	o.granted[from] = max(o.granted[from], now+o.lease+o.margin())
	asker := run{name: from, incarnation: incarnation}
	if incarnation == "" {
		asker = runOf(s.tab, from)
	}
	return leaseReply{Fingerprint: s.tab.Fingerprint(), Departed: o.departures[asker], Incarnation: runOf(s.tab, o.self).incarnation, Past: o.past(now)}, nil
}

// incarnation returns this node's run, as the last ring listing it named
// it: what its release names (Node.releaseLeases).
func (o *ownership) incarnation() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.run
}

// stillLeft reports whether ring member m is a run that left gracefully,
// listed by a ring built before the membership heard of its leave: it is
// not counted among the members known again. A new run of it is, and, when
// runs are not named (incarnation ""), a member that appears in a ring
// after it was missing from the last one. Called with mu held.
func (o *ownership) stillLeft(m ring.Member, appeared []string) bool {
	incarnation, ok := o.left[m.Name]
	if !ok {
		return false
	}
	if incarnation != "" || m.Incarnation != "" {
		return incarnation == m.Incarnation
	}
	return !slices.Contains(appeared, m.Name)
}

// release ends the lease member from holds, at now: it left gracefully,
// so it is no longer counted among the members the quorum is a majority
// of (until a ring has a new run of it, see stillLeft), and partitions it
// held whole (held) were pushed to their owners. incarnation names the
// run that left; "" means the run the node's ring lists.
func (o *ownership) release(from, incarnation string, now time.Duration, held []int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.granted[from] > now {
		o.granted[from] = now
	}
	o.liftFences(from, incarnation, now)
	if from != o.self {
		set := map[int]bool{}
		for _, p := range held {
			set[p] = true
		}
		o.released[from] = set
		o.endHandedOver(from)
	}
	if from == o.self {
		return
	}
	if tab := o.load().tab; incarnation == "" && tab != nil {
		incarnation = runOf(tab, from).incarnation
	}
	o.left[from] = incarnation
	if o.known[from] {
		delete(o.known, from)
		o.edit(func(s *ownState) { s.need = o.quorum() })
	}
}

// liftFences shortens the fences that wait for member from, which gave
// its leases back at now: each such partition now waits only for its
// other departed owners. Called with mu held.
func (o *ownership) liftFences(from, incarnation string, now time.Duration) {
	s := o.load()
	released := func(d departure) bool {
		// With seats, only the run that drained: another run of the name
		// may still serve on its grants until its revocation ends.
		return d.name == from && (!o.seated || incarnation == "" || runOf(d.from, d.name).incarnation == incarnation)
	}
	waitsFor := func(part partState) bool {
		return part.fence > now && slices.Contains(part.fencedBy, from) ||
			slices.ContainsFunc(part.departed, released)
	}
	if !slices.ContainsFunc(s.parts, waitsFor) {
		return
	}
	o.edit(func(s *ownState) {
		for p := range s.parts {
			part := &s.parts[p]
			if !waitsFor(*part) {
				continue
			}
			part.departed = slices.DeleteFunc(slices.Clone(part.departed), released)
			if part.fence <= now || !slices.Contains(part.fencedBy, from) {
				continue
			}
			until := time.Duration(0)
			for _, x := range part.fencedBy {
				until = max(until, o.granted[x])
			}
			part.fence = min(part.fence, until)
		}
	})
}

// majority reports whether tab holds more than half of the members the
// node knows. Called with mu held.
func (o *ownership) majority(tab *ring.Table) bool { return 2*len(tab.Members()) > len(o.known) }

// holdsMajority is majority, taking mu.
func (o *ownership) holdsMajority(tab *ring.Table) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.majority(tab)
}

// quorum returns the smallest ring the node may serve in: more than half
// of the members it knows — every member of every ring it installed,
// crashed ones included, less those that left gracefully — so that of two
// sides of any cut at most one serves, however the failure detectors have
// shrunk their rings. A cluster grown from 3 to 7 members needs 4; a
// member's crash never lowers it, a graceful leave does. MinMembers raises
// it; AllowMinority drops the majority, leaving MinMembers alone. Called
// with mu held.
func (o *ownership) quorum() int {
	if o.allowMinority {
		return o.minMembers
	}
	return max(o.minMembers, len(o.known)/2+1)
}

// recordLease records a lease member name granted in reply to a request
// sent at sent, its reply arriving at answered. It reports whether the
// member saw this node leave its ring since it last asked: the node was
// declared dead meanwhile. Such a
// lease is not recorded: the caller first marks its partitions for a
// hand-off (reconcile), so that no request is served from its copies
// between the lease and the marking, and then records it again.
func (o *ownership) recordLease(name string, reply leaseReply, sent, answered time.Duration) (declaredDead bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if reply.Past {
		o.pastKnown.Store(true)
	}
	seen, known := o.seen[name]
	known = known && seen.granter == reply.Incarnation
	o.seen[name] = seenDepartures{granter: reply.Incarnation, departed: reply.Departed}
	if known && reply.Departed > seen.departed || !known && reply.Departed > 0 && o.unconfirmed() {
		// Unconfirmed after a pause, a first grant from a member that
		// ever saw it leave counts as one: nothing tells when it did.
		return true
	}
	held := *o.held.Load()
	if l := held[name]; sent+o.lease > l.until {
		next := make(map[string]heldLease, len(held)+1)
		for k, v := range held {
			next[k] = v
		}
		since := time.Duration(0)
		if installed := o.load().installed; sent > installed {
			since = answered
			if l.fingerprint == reply.Fingerprint && l.asked > installed && l.since > 0 {
				since = l.since
			}
		}
		next[name] = heldLease{until: sent + o.lease, fingerprint: reply.Fingerprint, asked: sent, since: since}
		o.held.Store(&next)
		o.settleDeparted(answered)
	}
	return false
}

// departuresOf returns how often this node saw the run of member name in
// tab leave its ring, and this node's run, which counted them: what a
// lease reply to that run would say (grant).
func (o *ownership) departuresOf(tab *ring.Table, name string) (uint64, string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.departures[runOf(tab, name)], runOf(tab, o.self).incarnation
}

// learnDepartures records a count of this node's departures that member
// name's run granter reported outside a lease reply (pullRequest.Departed)
// and reports whether it is news, by recordLease's rule: the member saw
// this node leave its ring since it last said. The caller marks the
// node's partitions, as renewLease does.
func (o *ownership) learnDepartures(name, granter string, departed uint64) bool {
	if name == "" || name == o.self {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	seen, known := o.seen[name]
	known = known && seen.granter == granter
	if known && departed <= seen.departed || !known && (departed == 0 || !o.unconfirmed()) {
		if !known {
			o.seen[name] = seenDepartures{granter: granter, departed: departed}
		}
		return false
	}
	o.seen[name] = seenDepartures{granter: granter, departed: departed}
	return true
}

// settleDeparted forgets, at now, the departed owners whose leases no
// partition's fence need wait for any more (departedWait), so that a
// fence waited out stays so when a later ring resets the members'
// answers (heldLease.since). Called with mu held.
func (o *ownership) settleDeparted(now time.Duration) {
	s := o.load()
	if s.tab == nil {
		return
	}
	settled := func(d departure) bool { return s.tab.Has(d.name) || o.waitedOut(s, d, now) }
	if !slices.ContainsFunc(s.parts, func(part partState) bool { return slices.ContainsFunc(part.departed, settled) }) {
		return
	}
	o.edit(func(s *ownState) {
		for p := range s.parts {
			if slices.ContainsFunc(s.parts[p].departed, settled) {
				s.parts[p].departed = slices.DeleteFunc(slices.Clone(s.parts[p].departed), settled)
			}
		}
	})
}

// dropLeases forgets every lease this node holds: it stops serving.
func (o *ownership) dropLeases() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.held.Store(&map[string]heldLease{})
}

// missingLeases returns the lease seats of tab (leaseSeats) this node
// holds no live lease from at now, granted under tab's ring. A lease
// granted under another ring does not count: a node whose view is not
// yet the cluster's (one that sees only part of the cluster after a cut
// heals) must not serve by it.
func (o *ownership) missingLeases(tab *ring.Table, now time.Duration) []string {
	held, fp := *o.held.Load(), tab.Fingerprint()
	var out []string
	for _, name := range o.seats(tab).names {
		if l := held[name]; l.until <= now || l.fingerprint != fp {
			out = append(out, name)
		}
	}
	return out
}

// onRing reports whether member name has answered a lease request sent
// since tab was installed (since) under tab's ring: it had moved to tab by
// then. An older answer does not count, even under the same fingerprint:
// a ring whose members left and came back has the fingerprint it had
// before, and the member may have moved in between. Nor does one asked at
// the very instant tab was installed: on a coarse clock that request may
// have gone out just before.
func (o *ownership) onRing(name string, tab *ring.Table, since time.Duration) bool {
	l := (*o.held.Load())[name]
	return l.fingerprint == tab.Fingerprint() && l.asked > since
}

// setQuarantine makes the node serve nothing from its copies until until
// (zero ends the quarantine).
func (o *ownership) setQuarantine(until time.Duration) { o.quarantine.Store(int64(until)) }

// quarantined reports whether the node is recovering from a pause.
func (o *ownership) quarantined() bool { return o.quarantine.Load() != 0 }

// startUnconfirmed records that the node found at now that it had been
// paused: until confirm, it does not know whether it was declared dead
// meanwhile.
func (o *ownership) startUnconfirmed(now time.Duration) { o.unconfirmedSince.Store(int64(max(now, 1))) }

// unconfirmed reports whether the node resumed after a pause and does not
// know yet whether it was declared dead meanwhile: its copies may hold
// sessions whose loss the cluster reported while it was stopped, so it
// gives none to another node (servePull, serveRead) until it knows.
func (o *ownership) unconfirmed() bool { return o.unconfirmedSince.Load() != 0 }

// confirm ends the node's unconfirmed time once every lease seat of tab
// (today every other member) has granted it a lease asked after it
// began: a member that saw it leave
// its ring says so in its grant (recordLease), and the node has marked
// every owned partition distrusted before the grant is recorded. A member
// that does not see it in its ring grants none, so the time lasts until
// the members take the node back or the ring drops them; and it lasts
// while tab is below the quorum. It reports whether it ended the time
// now.
func (o *ownership) confirm(tab *ring.Table) bool {
	since := o.unconfirmedSince.Load()
	if since == 0 || tab == nil || len(tab.Members()) < o.load().need {
		// Below the quorum the ring is not the cluster: just after a
		// pause the node may suspect everyone, and a ring of itself
		// alone has no member left to tell it anything.
		return false
	}
	held := *o.held.Load()
	for _, name := range o.seats(tab).names {
		if held[name].asked <= time.Duration(since) {
			return false
		}
	}
	return o.unconfirmedSince.CompareAndSwap(since, 0)
}

// lostPartitions returns the latest loss of partitions seen.
func (o *ownership) lostPartitions() LostPartitions {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.lost
}
