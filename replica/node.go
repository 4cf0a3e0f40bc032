// Package replica is where the bytes go: it stores this node's copies of
// sessions, runs the write path (apply on the primary, replicate to the
// buddy, acknowledge), the read path (the primary, else the buddy), forwards
// requests that land on a node that owns nothing of the session, moves copies
// when the ring changes, and expires sessions.
//
// It promises that a write is acknowledged only once the primary and the
// buddy both hold it, that versions of a session grow by one per write and a
// replica never goes back to an older one, and that no read returns a
// deleted or expired session. It talks to other nodes only through a
// peer.Caller and knows nothing of how membership is decided: the caller
// hands it ring tables.
package replica

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-io/tandem/replica/peer"
	"github.com/tandem-io/tandem/ring"
)

// Config configures a Node.
type Config struct {
	// Name is this node's name in the ring.
	Name string
	// Caller reaches other nodes. Tests wrap it to inject faults.
	Caller peer.Caller
	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger
	// Now is the wall clock; nil means time.Now. Expiry and last-access
	// times come from it, so a step of it moves them.
	Now func() time.Time
	// Clock measures elapsed time: leases, fences, hand-off time-outs,
	// call time-outs, retry back-off and the node's periodic work run on
	// it, never on the wall clock. Nil means the system's monotonic clock;
	// tests pass a peer.ManualClock (moved by a peer.Autopilot) to run
	// those waits in virtual time.
	Clock peer.Clock

	// MaxSessionBytes bounds a session's encoded size; larger writes fail
	// with ErrTooLarge. Zero means 1 MiB.
	MaxSessionBytes int
	// MaxAttributes bounds how many attributes a session holds; a write
	// that would leave more fails with ErrTooLarge. Zero means 1024.
	MaxAttributes int
	// MaxAttributeNameBytes bounds an attribute's name; a write naming a
	// longer one fails with ErrInvalid. Zero means 256.
	MaxAttributeNameBytes int
	// IdleTimeout and AbsoluteTimeout are used by puts that name none.
	// Zero means 30 minutes and 12 hours.
	IdleTimeout, AbsoluteTimeout time.Duration

	// CallTimeout bounds each call to another node, so a hung node costs at
	// most this much before a read falls back to the buddy. Zero means 1s.
	CallTimeout time.Duration
	// TouchInterval is how often batched last-access times go to buddies:
	// the staleness bound of a buddy's idle deadline. Zero means 1s.
	TouchInterval time.Duration
	// SweepInterval is how often expired copies and old tombstones are
	// removed. Zero means 1s.
	SweepInterval time.Duration
	// BuddyExpiryGrace is how long after its own idea of a session's
	// expiry a buddy keeps a buddy copy, waiting for the primary (whose
	// last-access times are fresher) to expire it. Zero means 1 minute.
	BuddyExpiryGrace time.Duration
	// TombstoneTTL is how long a deleted session's tombstone is kept so
	// that older copies cannot bring it back. Zero means 5 minutes.
	TombstoneTTL time.Duration
	// HandoffTimeout bounds how long a new owner keeps trying to pull a
	// partition from previous owners that do not answer before serving it
	// from what it holds; until then it fetches each session it is asked
	// for. A previous owner that answers it serves by another ring restarts
	// the wait: it may still serve the partition (the gate's hand-off rule, gate.go). Old owners
	// drop partitions they no longer own once the ring has been stable this
	// long. Zero means 10s.
	HandoffTimeout time.Duration
	// HandoffBytes is about how many bytes of sessions go in one hand-off
	// message. Zero means 1 MiB.
	HandoffBytes int
	// PauseThreshold is how long the node may go without running (a
	// SIGSTOP, a stall) before it assumes it may have been declared dead
	// and reconciles its partitions before serving them. It should be
	// shorter than the failure detector's time to declare a node dead.
	// Zero means 500ms.
	PauseThreshold time.Duration
	// PauseQuarantine is how long a node that found it was paused serves
	// nothing from its copies while membership settles and it reconciles.
	// It should exceed the failure detector's time to declare a node dead
	// and take it back. Zero means 3s.
	PauseQuarantine time.Duration
	// Partitions is the ring's partition count; every table given to
	// SetTable must have it. Zero means ring.DefaultPartitions.
	Partitions int
	// LeaseDuration is how long a lease from another member lets this
	// node serve from its copies (see lease.go): a node cut off from the
	// others stops serving this long after it last heard from them, and a
	// node taking over from a departed member waits until its grant to it
	// has lapsed before it acknowledges writes. Shorter than the failure
	// detector's time to declare a node dead, it costs a failover nothing;
	// reads that fall back to a dead primary's buddy wait from when the
	// buddy's lease lapses until it is promoted. Zero means 600ms.
	LeaseDuration time.Duration
	// Seats, above zero, makes the seats guard the leases
	// (docs/design/LEASES-AT-SCALE.md; experimental): the node takes
	// part in agreeing on a config of that many seats (odd above two,
	// at most the members), founding the first when it is the lowest
	// name of a ring whose members know none, and serves only while it
	// holds grants from a majority of them under its ring, asking no
	// other member for leases. A departed owner's run is revoked at the
	// seats for good before its partitions are written again: a node
	// taken for departed serves again only once restarted. Zero, the
	// default, leases from every other member but one.
	Seats int
	// BootstrapExpect, with Seats, is how many members a ring must hold
	// before its lowest-named node founds the seats' first config: an
	// operator who starts that many nodes at once says so, and a start
	// under a network cut then founds on one side at most (as Consul's
	// flag of that name does). Zero or one founds in a ring of any size:
	// a node started alone is a cluster. It matters only until the
	// cluster has a config; a node that joins one never founds.
	BootstrapExpect int
	// AllowMinority lets the node serve in a ring of MinMembers however
	// many members it knows, trading safety for availability: both sides
	// of a network cut then acknowledge writes, and after the heal the
	// losing side's are gone (each counted and logged as a conflict). By
	// default a node serves only in a ring holding a majority of the
	// members it knows (every member of every ring it installed, less
	// those that left gracefully), so at most one side of a cut serves.
	AllowMinority bool
	// MinMembers is a floor under the smallest ring this node serves in,
	// beside the majority of the members it knows (see AllowMinority). A
	// node that sees fewer members answers nothing, grants no lease and is
	// not ready. Zero or one adds nothing to the majority.
	MinMembers int
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Clock == nil {
		c.Clock = peer.SystemClock()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.MaxSessionBytes == 0 {
		c.MaxSessionBytes = 1 << 20
	}
	if c.MaxAttributes == 0 {
		c.MaxAttributes = 1024
	}
	if c.MaxAttributeNameBytes == 0 {
		c.MaxAttributeNameBytes = 256
	}
	def(&c.IdleTimeout, 30*time.Minute)
	def(&c.AbsoluteTimeout, 12*time.Hour)
	def(&c.CallTimeout, time.Second)
	def(&c.TouchInterval, time.Second)
	def(&c.SweepInterval, time.Second)
	def(&c.TombstoneTTL, 5*time.Minute)
	def(&c.BuddyExpiryGrace, time.Minute)
	def(&c.PauseThreshold, 500*time.Millisecond)
	def(&c.PauseQuarantine, 3*time.Second)
	def(&c.HandoffTimeout, 10*time.Second)
	if c.HandoffBytes == 0 {
		c.HandoffBytes = 1 << 20
	}
	if c.Partitions == 0 {
		c.Partitions = ring.DefaultPartitions
	}
	def(&c.LeaseDuration, 600*time.Millisecond)
	c.MinMembers = max(c.MinMembers, 1)
	return c
}

// limits returns the settings apply needs.
func (c Config) limits() limits {
	return limits{maxBytes: c.MaxSessionBytes, maxAttributes: c.MaxAttributes, maxNameBytes: c.MaxAttributeNameBytes,
		idleTimeout: c.IdleTimeout, absoluteTimeout: c.AbsoluteTimeout}
}

// Node is one node's store and replication engine. Its state lives in
// parts that each guard themselves: ownership (who may serve what, behind
// the gate), the store (copies, per partition and per session), the lease
// renewals in flight, the hybrid logical clock and the counters. No lock
// spans the node.
type Node struct {
	cfg    Config
	log    *slog.Logger
	lim    limits
	own    *ownership
	store  *store
	clock  hlc
	expiry expiryClock // the wall clock, kept from steps (wallclock.go)
	stats  Stats

	renewals renewals         // lease requests in flight, one per member
	seats    *seatRunner      // the seat protocol's run, if Config.Seats (seatrun.go); nil otherwise
	doubts   doubts           // sessions whose last replication went unanswered (doubt.go)
	confirms *confirmQueue    // confirmations of stored writes, yet to reach the buddies (confirm.go)
	watch    unconfirmedWatch // the copies held unconfirmed at the last look (unconfirmed.go); reportUnconfirmed's alone

	changed chan struct{} // signalled when the ring changes or transfers are due
	started time.Time     // origin of the monotonic clock (mono)
	beat    atomic.Int64  // when the node last ran, on mono's clock

	stop chan struct{}
	done sync.WaitGroup
}

// New returns a node that serves nothing until SetTable gives it a ring.
// Its background work (hand-offs, batched touches, expiry) runs until Close.
func New(cfg Config) *Node {
	cfg = cfg.withDefaults()
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.Name),
		lim:      cfg.limits(),
		own:      newOwnership(cfg),
		store:    newStore(cfg.Partitions),
		confirms: newConfirmQueue(),
		changed:  make(chan struct{}, 1),
		stop:     make(chan struct{}),
		started:  cfg.Clock.Now(),
	}
	n.renewals.calls = map[string]chan struct{}{}
	n.done.Add(8)
	// The heartbeat: often enough to notice a pause, and the end of a
	// quarantine, within a tenth of their length.
	go n.every(min(cfg.PauseThreshold, cfg.PauseQuarantine)/10, n.checkPause)
	go n.every(cfg.LeaseDuration/6, n.renewLeases)
	go n.transferLoop()
	go n.every(cfg.TouchInterval, n.sendTouches)
	go n.every(cfg.SweepInterval, n.sweep)
	go n.every(cfg.TouchInterval, n.settleDoubts)
	go n.confirmLoop()
	go n.every(cfg.TouchInterval, n.reportUnconfirmed)
	if cfg.Seats > 0 {
		n.seats = newSeatRunner(cfg)
		n.done.Add(1)
		go n.every(cfg.LeaseDuration/6, n.tickSeats)
	}
	return n
}

// every runs f every d, on the node's clock, until the node is closed.
func (n *Node) every(d time.Duration, f func()) {
	defer n.done.Done()
	for {
		t := n.cfg.Clock.NewTimer(d)
		select {
		case <-n.stop:
			t.Stop()
			return
		case <-t.Chan():
			f()
		}
	}
}

// sleep waits d on the node's clock, or until ctx ends; it reports whether
// the whole wait passed.
func (n *Node) sleep(ctx context.Context, d time.Duration) bool {
	t := n.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.Chan():
		return true
	}
}

// withTimeout returns a context that ends d from now on the node's clock.
func (n *Node) withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return peer.WithTimeout(ctx, n.cfg.Clock, d)
}

// wake tells the transfer loop there is work now.
func (n *Node) wake() {
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

// Close stops the background work. It does not hand anything off; the
// caller drains first if it wants to.
func (n *Node) Close() {
	select {
	case <-n.stop:
	default:
		close(n.stop)
	}
	n.done.Wait()
}

// closed reports whether Close has been called.
func (n *Node) closed() bool {
	select {
	case <-n.stop:
		return true
	default:
		return false
	}
}

// mono returns the node's monotonic clock: the time since it started.
// Leases, fences and hand-off timeouts use it, never the wall clock (which
// the Now setting may skew).
func (n *Node) mono() time.Duration { return n.cfg.Clock.Now().Sub(n.started) }

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Limits returns the bounds the node puts on a session as its primary,
// defaults filled in.
func (n *Node) Limits() Limits {
	return Limits{MaxSessionBytes: n.cfg.MaxSessionBytes, MaxAttributes: n.cfg.MaxAttributes, MaxAttributeNameBytes: n.cfg.MaxAttributeNameBytes}
}

// Table returns the ring the node currently serves by, or nil before the
// first SetTable.
func (n *Node) Table() *ring.Table { return n.own.table() }

// Ready reports whether the node holds every partition it owns: it has a
// ring of at least MinMembers and no hand-off to it is outstanding.
func (n *Node) Ready() bool { return n.Readiness().Ready() }

// Readiness is what Ready decides by, read from one state, so a caller
// can say why a node is not ready.
type Readiness struct {
	// HasRing is false before the first SetTable.
	HasRing bool
	// Members counts the ring's members; MinMembers is the smallest ring
	// the node serves in now: a majority of the members it knows, and at
	// least Config.MinMembers.
	Members, MinMembers int
	// Handoffs counts owned partitions still to be handed to the node
	// that keep it unready: those of a node that joins or was declared
	// dead (a partition a running node takes over does not; see
	// transfer.gates).
	Handoffs int
	// Seated says the seats guard the node's leases (Config.Seats), and
	// SeatsLive whether its holder has held live grants from a majority
	// of them under its ring since it installed it (an idle node lets
	// them lapse, and asks again on its next request): a node that
	// could not yet serve is not ready. SeatsRevoked: its grants were
	// revoked for good (seatgate.go).
	Seated, SeatsLive, SeatsRevoked bool
}

// Ready reports whether r is a ready node's.
func (r Readiness) Ready() bool {
	return r.HasRing && r.Members >= r.MinMembers && r.Handoffs == 0 && (!r.Seated || r.SeatsLive)
}

// Readiness returns what Ready decides by.
func (n *Node) Readiness() Readiness {
	s := n.own.load()
	r := Readiness{HasRing: s.tab != nil, MinMembers: s.need, Handoffs: s.gating(), Seated: n.own.seated}
	if s.tab != nil {
		r.Members = len(s.tab.Members())
		h := *n.own.seatHold.Load()
		r.SeatsLive = !h.revoked && h.granted == s.tab.Fingerprint()
		r.SeatsRevoked = h.revoked
	}
	return r
}
