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
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

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
	// Now is the clock; nil means time.Now. Expiry and last-access times
	// come from it.
	Now func() time.Time

	// MaxSessionBytes bounds a session's encoded size; larger writes fail
	// with ErrTooLarge. Zero means 1 MiB.
	MaxSessionBytes int
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
	// BackupExpiryGrace is how long after its own idea of a session's
	// expiry a buddy keeps a backup copy, waiting for the primary (whose
	// last-access times are fresher) to expire it. Zero means 1 minute.
	BackupExpiryGrace time.Duration
	// TombstoneTTL is how long a deleted session's tombstone is kept so
	// that older copies cannot bring it back. Zero means 5 minutes.
	TombstoneTTL time.Duration
	// HandoffTimeout bounds how long a new owner keeps trying to pull a
	// partition from previous owners that do not answer before serving it
	// from what it holds; until then it fetches each session it is asked
	// for. A previous owner that answers it serves by another ring restarts
	// the wait: it may still serve the partition (handover.go). Old owners
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
	// MinMembers is the smallest ring this node serves in. A node that
	// sees fewer members (the minority side of a network cut) answers
	// nothing, grants no lease and is not ready, so the two sides of a cut
	// never both acknowledge writes. Set it to a majority of the cluster
	// for split-brain protection; zero or one serves alone.
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
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.MaxSessionBytes == 0 {
		c.MaxSessionBytes = 1 << 20
	}
	def(&c.IdleTimeout, 30*time.Minute)
	def(&c.AbsoluteTimeout, 12*time.Hour)
	def(&c.CallTimeout, time.Second)
	def(&c.TouchInterval, time.Second)
	def(&c.SweepInterval, time.Second)
	def(&c.TombstoneTTL, 5*time.Minute)
	def(&c.BackupExpiryGrace, time.Minute)
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

// Node is one node's store and replication engine.
type Node struct {
	cfg   Config
	log   *slog.Logger
	lim   limits
	table atomic.Pointer[ring.Table]
	prev  atomic.Pointer[ring.Table] // the ring before table
	// ringMu is held for reading while a write is stored by the current
	// table, and for writing while SetTable replaces it (handover.go).
	ringMu sync.RWMutex
	clock  hlc

	mu      sync.Mutex
	store   *store
	pending map[int]*pendingPartition // partitions this node owns but has not been handed yet
	touches map[string][]touchItem    // last accesses waiting to go to each buddy
	changed chan struct{}             // signalled when the table changes
	lost    LostPartitions            // the latest partitions lost with both owners

	granted    map[string]time.Duration // until when (mono) each member may rely on this node's lease
	departures map[string]uint64        // how often each member left this node's ring
	fence      []time.Duration          // per partition: no write acknowledged before (mono)
	displaced  map[int][]string         // per partition: previous owners not yet known to have left its old ring
	installed  time.Duration            // when (mono) the current table was installed
	leases     struct {
		mu       sync.Mutex
		held     map[string]heldLease     // leases from each member
		seen     map[string]uint64        // each member's departure count of this node, as last reported
		renewing map[string]chan struct{} // renewals in flight
	}

	stats Stats

	started    time.Time    // monotonic origin of beat
	beat       atomic.Int64 // when the node last ran, since started
	quarantine atomic.Int64 // until when, since started, the node recovers from a pause; 0 if not

	stop chan struct{}
	done sync.WaitGroup
}

// pendingPartition is a partition this node became an owner of and whose
// previous owners have not yet handed it over.
type pendingPartition struct {
	sources []string // previous owners and newly seen members still in the ring
	since   time.Time
	// reconcile marks a partition the node already held and is merging
	// with newly seen members; it does not make the node unready.
	reconcile bool
}

// New returns a node that serves nothing until SetTable gives it a ring.
// Its background work (hand-offs, batched touches, expiry) runs until Close.
func New(cfg Config) *Node {
	cfg = cfg.withDefaults()
	n := &Node{
		cfg:     cfg,
		log:     cfg.Logger.With("node", cfg.Name),
		lim:     limits{maxBytes: cfg.MaxSessionBytes, idleTimeout: cfg.IdleTimeout, absoluteTimeout: cfg.AbsoluteTimeout},
		store:   newStore(cfg.Partitions),
		pending: map[int]*pendingPartition{},
		touches: map[string][]touchItem{},
		changed: make(chan struct{}, 1),
		stop:    make(chan struct{}),
		started: time.Now(),

		granted:    map[string]time.Duration{},
		departures: map[string]uint64{},
		fence:      make([]time.Duration, cfg.Partitions),
		displaced:  map[int][]string{},
	}
	n.leases.held = map[string]heldLease{}
	n.leases.seen = map[string]uint64{}
	n.leases.renewing = map[string]chan struct{}{}
	n.done.Add(5)
	go n.every(cfg.PauseThreshold/10, n.checkPause) // the heartbeat
	go n.every(cfg.LeaseDuration/6, n.renewLeases)
	go n.rebalanceLoop()
	go n.every(cfg.TouchInterval, n.sendTouches)
	go n.every(cfg.SweepInterval, n.sweep)
	return n
}

// every runs f every d until the node is closed.
func (n *Node) every(d time.Duration, f func()) {
	defer n.done.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			f()
		}
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

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Table returns the ring the node currently serves by, or nil before the
// first SetTable.
func (n *Node) Table() *ring.Table { return n.table.Load() }

// Ready reports whether the node holds every partition it owns: it has a
// ring of at least MinMembers and no hand-off to it is outstanding.
func (n *Node) Ready() bool {
	if tab := n.table.Load(); tab == nil || n.tooFew(tab) != nil {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, pp := range n.pending {
		if !pp.reconcile {
			return false
		}
	}
	return true
}

// Get reads a session through its primary (or its buddy, if the primary
// cannot be reached). Unless noTouch, it moves the idle deadline.
func (n *Node) Get(ctx context.Context, id string, noTouch bool) (*Session, error) {
	return n.Do(ctx, &Op{Kind: OpGet, ID: id, NoTouch: noTouch})
}

// Do runs op wherever it must run: here if this node is the session's
// primary, else on the primary, one hop away. It retries while owners are
// changing or unreachable, until ctx is done; give ctx a deadline. A node
// cut off from the others (too few members, too few leases) gives up after
// LeaseDuration instead, so that its callers can go to another node.
func (n *Node) Do(ctx context.Context, op *Op) (*Session, error) {
	if err := op.Validate(); err != nil {
		return nil, err
	}
	if op.Kind.writes() && op.RequestID == "" {
		o := *op
		o.RequestID = NewRequestID()
		op = &o
	}
	n.checkPause()
	backoff := 5 * time.Millisecond
	var cutOff time.Time // when this node first found itself cut off
	for {
		tab := n.table.Load()
		var s *Session
		var err error
		if tab == nil {
			err = fmt.Errorf("%w: node %s has not joined a ring yet", ErrUnavailable, n.cfg.Name)
		} else {
			s, err = n.route(ctx, tab, op)
		}
		if err == nil || !(errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotOwner)) {
			return s, err
		}
		if errors.Is(err, errCutOff) {
			if cutOff.IsZero() {
				cutOff = time.Now()
			} else if time.Since(cutOff) > n.cfg.LeaseDuration {
				return nil, fmt.Errorf("%s %s: %w", op.Kind, op.ID, err)
			}
		}
		n.stats.Retries.Add(1)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%s %s: %w (last: %w)", op.Kind, op.ID, ErrUnavailable, err)
		case <-t.C:
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// route runs op on the primary named by tab, falling back to the buddy for
// reads when the primary cannot be reached (or is this node, recovering
// from a pause).
func (n *Node) route(ctx context.Context, tab *ring.Table, op *Op) (*Session, error) {
	if err := n.tooFew(tab); err != nil {
		return nil, err
	}
	p := tab.Partition(op.ID)
	o := tab.Owners(p)
	var s *Session
	var err error
	if o.Primary == n.cfg.Name {
		if !n.quarantined() {
			return n.serveAsPrimary(ctx, tab, p, op)
		}
		err = fmt.Errorf("%w: %s is recovering from a pause", ErrUnavailable, n.cfg.Name)
	} else if s, err = n.forward(ctx, tab, o.Primary, op); err == nil {
		return s, nil
	}
	if op.Kind != OpGet || !errors.Is(err, ErrUnavailable) || o.Buddy == "" {
		return nil, err
	}
	// The primary is unreachable: the buddy holds every acknowledged write.
	n.stats.BuddyReads.Add(1)
	if o.Buddy == n.cfg.Name {
		if n.quarantined() {
			return nil, err
		}
		return n.readAsOwner(ctx, tab, p, op.ID)
	}
	var reply readReply
	if err := n.call(ctx, tab, o.Buddy, methodRead, readRequest{Partition: p, ID: op.ID}, &reply); err != nil {
		return nil, fmt.Errorf("read %s from buddy %s after primary %s failed: %w", op.ID, o.Buddy, o.Primary, err)
	}
	if reply.Session == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, op.ID)
	}
	return reply.Session, nil
}

// forward sends op to the primary and returns its answer. A write may
// make the primary fetch from previous owners and then replicate, each a
// call of its own, so it is given ForwardTimeout(op) rather than one call's
// time; a read keeps CallTimeout, so a hung primary costs a read no more
// than that before the buddy answers.
func (n *Node) forward(ctx context.Context, tab *ring.Table, primary string, op *Op) (*Session, error) {
	n.stats.Forwarded.Add(1)
	var reply opReply
	ctx, cancel := context.WithTimeout(ctx, ForwardTimeout(op, n.cfg.CallTimeout))
	defer cancel()
	if err := n.callWithin(ctx, tab, primary, methodOp, op, &reply); err != nil {
		return nil, fmt.Errorf("forward %s %s to %s: %w", op.Kind, op.ID, primary, err)
	}
	return reply.Session, nil
}

// call sends one request to the member called name, bounded by CallTimeout.
func (n *Node) call(ctx context.Context, tab *ring.Table, name, method string, args, reply any) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.CallTimeout)
	defer cancel()
	return n.callWithin(ctx, tab, name, method, args, reply)
}

// callWithin sends one request to the member called name, bounded by ctx.
func (n *Node) callWithin(ctx context.Context, tab *ring.Table, name, method string, args, reply any) error {
	m, ok := tab.Member(name)
	if !ok {
		return fmt.Errorf("%w: %s is not a member", ErrNotOwner, name)
	}
	return FromWire(n.cfg.Caller.Call(ctx, m.Peer, method, args, reply))
}

// ForwardTimeout is how long a caller should wait for a primary to answer
// op, when each of the primary's own calls is bounded by callTimeout: one
// call's time for reads, three for writes (fetches from previous owners
// while a partition is being handed over, then replication to the buddy).
func ForwardTimeout(op *Op, callTimeout time.Duration) time.Duration {
	if op.Kind.writes() {
		return 3 * callTimeout
	}
	return callTimeout
}

// tooFew returns ErrUnavailable if tab has fewer than MinMembers members.
func (n *Node) tooFew(tab *ring.Table) error {
	if m := len(tab.Members()); m < n.cfg.MinMembers {
		return fmt.Errorf("%w: %w: %s sees %d members, fewer than the %d it needs to serve", ErrUnavailable, errCutOff, n.cfg.Name, m, n.cfg.MinMembers)
	}
	return nil
}

// serveAsPrimary runs op on this node, the session's primary. It serves
// only under leases from the other members (lease.go), and acknowledges writes to a
// partition it took over from a departed member only once that member's
// lease has lapsed.
func (n *Node) serveAsPrimary(ctx context.Context, tab *ring.Table, p int, op *Op) (*Session, error) {
	if err := n.requireLeases(ctx, tab); err != nil {
		return nil, err
	}
	if op.Kind == OpGet || op.Kind == OpTouch {
		if err := n.awaitCopy(ctx, tab, p, op.ID); err != nil {
			return nil, err
		}
		return n.readPrimary(tab, p, op)
	}
	if err := n.awaitFence(ctx, p); err != nil {
		return nil, err
	}
	if err := n.awaitDisplaced(ctx, tab, p); err != nil {
		return nil, err
	}
	unlock := n.store.lock(op.ID)
	defer unlock()
	if err := n.awaitCopy(ctx, tab, p, op.ID); err != nil {
		return nil, err
	}
	prev := n.store.get(p, op.ID)
	if v, ok := prev.applied(op.RequestID); ok {
		// A retry of a write this session already took, perhaps on another
		// primary before a failover.
		n.stats.Duplicates.Add(1)
		switch {
		case v != prev.Version:
			return nil, fmt.Errorf("%w: request %s made v%d of %s, now at v%d", ErrIndeterminate, op.RequestID, v, op.ID, prev.Version)
		case prev.Deleted:
			return nil, nil
		}
		return prev, nil
	}
	now := n.cfg.Now()
	next, err := apply(op, prev, now, n.clock.now(now), n.cfg.Name, n.lim)
	if err != nil {
		return nil, err
	}
	if buddy := tab.Owners(p).Buddy; buddy != "" {
		req := replicateRequest{From: n.cfg.Name, Epoch: tab.Epoch(), Partition: p, Session: next}
		if err := n.call(ctx, tab, buddy, methodReplicate, req, nil); err != nil {
			n.stats.ReplicationFailures.Add(1)
			return nil, fmt.Errorf("replicate %s v%d to %s: %w", op.ID, next.Version, buddy, err)
		}
	} else {
		n.stats.UnderReplicatedWrites.Add(1)
	}
	if err := n.underRing(tab, func() { n.store.put(p, next) }); err != nil {
		// Not stored here (the buddy may hold it): the caller retries
		// with the same request id by the new ring.
		return nil, fmt.Errorf("write %s v%d: %w", op.ID, next.Version, err)
	}
	n.stats.Writes.Add(1)
	if next.Deleted {
		return nil, nil
	}
	return next, nil
}

// readPrimary answers a get or touch from this node's primary copy.
func (n *Node) readPrimary(tab *ring.Table, p int, op *Op) (*Session, error) {
	now := n.cfg.Now()
	s := n.store.get(p, op.ID)
	if !s.live(now) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, op.ID)
	}
	n.stats.Reads.Add(1)
	if op.Kind == OpGet && op.NoTouch {
		return s, nil
	}
	if n.store.touch(p, op.ID, now) {
		if buddy := tab.Owners(p).Buddy; buddy != "" {
			n.queueTouch(buddy, touchItem{Partition: p, ID: op.ID, At: now})
		}
		t := *s
		t.LastAccess = now
		s = &t
	}
	if op.Kind == OpTouch {
		return nil, nil
	}
	return s, nil
}

// readAsOwner answers a read that could not reach the primary from this
// node's own copy. Only a current owner's copy is an answer: a node that
// no longer owns p keeps its old copies for a while but receives no writes,
// and a new buddy still being handed p lacks the sessions nobody wrote
// since, so it fetches the session from the previous owners first, as a
// primary does. A "not found" from here is as trustworthy as the
// primary's. (A buddy merely reconciling p with members that reappeared
// holds every write acknowledged on its side and answers from its copy.)
// The buddy answers only under leases from the other members (lease.go):
// owners replacing a departed buddy acknowledge no write before its leases
// have lapsed.
func (n *Node) readAsOwner(ctx context.Context, tab *ring.Table, p int, id string) (*Session, error) {
	o := tab.Owners(p)
	switch n.cfg.Name {
	case o.Primary:
		// Promoted since the caller looked: answer as the primary does,
		// without touching (the caller's read is not this node's to count).
		return n.serveAsPrimary(ctx, tab, p, &Op{Kind: OpGet, ID: id, NoTouch: true})
	case o.Buddy:
	default:
		return nil, fmt.Errorf("%w: %s does not own partition %d (epoch %d)", ErrNotOwner, n.cfg.Name, p, tab.Epoch())
	}
	if err := n.requireLeases(ctx, tab); err != nil {
		return nil, err
	}
	if n.handingOver(p) {
		if err := n.awaitCopy(ctx, tab, p, id); err != nil {
			return nil, err
		}
	}
	return n.readBackup(p, id)
}

// readBackup answers a get from this node's backup copy, when the primary
// cannot be reached. The backup's last access may lag the primary's by up
// to TouchInterval, so it is given that much grace before it counts as
// expired.
func (n *Node) readBackup(p int, id string) (*Session, error) {
	s := n.store.get(p, id)
	if !s.live(n.cfg.Now().Add(-n.backupGrace())) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return s, nil
}

// backupGrace is how much later than the primary a backup copy expires.
func (n *Node) backupGrace() time.Duration { return 2 * n.cfg.TouchInterval }

// NewRequestID returns a fresh request id: 96 random bits, URL-safe.
func NewRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ServePeer answers requests from other nodes; it implements peer.Handler.
func (n *Node) ServePeer(ctx context.Context, method string, body msgpack.RawMessage) (any, error) {
	reply, err := n.servePeer(ctx, method, body)
	if err != nil {
		return nil, toWire(err)
	}
	return reply, nil
}

// servePeer dispatches one peer request.
func (n *Node) servePeer(ctx context.Context, method string, body msgpack.RawMessage) (any, error) {
	n.checkPause()
	tab := n.table.Load()
	if tab == nil {
		return nil, fmt.Errorf("%w: %s has no ring yet", ErrNotOwner, n.cfg.Name)
	}
	switch method {
	case methodOp:
		var op Op
		if err := msgpack.Unmarshal(body, &op); err != nil {
			return nil, fmt.Errorf("%w: decode op: %v", ErrInvalid, err)
		}
		if err := op.Validate(); err != nil {
			return nil, err
		}
		if err := n.tooFew(tab); err != nil {
			return nil, err
		}
		p := tab.Partition(op.ID)
		if tab.Owners(p).Primary != n.cfg.Name {
			return nil, fmt.Errorf("%w: %s is not primary of partition %d (epoch %d)", ErrNotOwner, n.cfg.Name, p, tab.Epoch())
		}
		if n.quarantined() {
			return nil, fmt.Errorf("%w: %s is recovering from a pause", ErrUnavailable, n.cfg.Name)
		}
		s, err := n.serveAsPrimary(ctx, tab, p, &op)
		return opReply{Session: s}, err
	case methodRead:
		var req readRequest
		if err := decodePartitioned(body, &req, &req.Partition, tab); err != nil {
			return nil, err
		}
		if req.Raw {
			if n.otherRing(tab, req.Ring) {
				return readReply{OtherRing: true}, nil
			}
			return readReply{Session: n.store.get(req.Partition, req.ID), Holds: n.holds(req.Partition)}, nil
		}
		if n.quarantined() {
			return nil, fmt.Errorf("%w: %s is recovering from a pause", ErrUnavailable, n.cfg.Name)
		}
		if err := n.tooFew(tab); err != nil {
			return nil, err
		}
		s, err := n.readAsOwner(ctx, tab, req.Partition, req.ID)
		if errors.Is(err, ErrNotFound) {
			return readReply{}, nil
		}
		return readReply{Session: s}, err
	case methodReplicate:
		var req replicateRequest
		if err := decodePartitioned(body, &req, &req.Partition, tab); err != nil {
			return nil, err
		}
		return empty{}, n.applyReplica(tab, &req)
	case methodTouch:
		var req touchRequest
		if err := msgpack.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: decode touch: %v", ErrInvalid, err)
		}
		for _, it := range req.Items {
			if it.Partition >= 0 && it.Partition < len(n.store.parts) {
				n.store.touch(it.Partition, it.ID, it.At)
			}
		}
		return empty{}, nil
	case methodExpire:
		var req expireRequest
		if err := msgpack.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: decode expire: %v", ErrInvalid, err)
		}
		n.applyExpiry(req.Items)
		return empty{}, nil
	case methodReconcile:
		var req reconcileRequest
		if err := msgpack.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: decode reconcile: %v", ErrInvalid, err)
		}
		n.reconcileAll([]string{req.From}, false)
		return empty{}, nil
	case methodPush:
		var req pushRequest
		if err := decodePartitioned(body, &req, &req.Partition, tab); err != nil {
			return nil, err
		}
		n.servePush(tab, &req)
		return empty{}, nil
	case methodLease:
		var req leaseRequest
		if err := msgpack.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: decode lease request: %v", ErrInvalid, err)
		}
		return n.serveLease(&req)
	case MethodRing:
		return ringInfo(tab), nil
	case methodPrincipal:
		var req principalRequest
		if err := msgpack.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("%w: decode principal request: %v", ErrInvalid, err)
		}
		return principalReply{IDs: n.sessionsOf(req.Principal)}, nil
	case methodPull:
		var req pullRequest
		if err := decodePartitioned(body, &req, &req.Partition, tab); err != nil {
			return nil, err
		}
		if n.otherRing(tab, req.Ring) {
			return pullReply{OtherRing: true}, nil
		}
		return n.servePull(&req)
	}
	return nil, fmt.Errorf("%w: unknown method %q", ErrInvalid, method)
}

// decodePartitioned decodes a request naming a partition and checks the
// partition exists.
func decodePartitioned(body msgpack.RawMessage, v any, partition *int, tab *ring.Table) error {
	if err := msgpack.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: decode request: %v", ErrInvalid, err)
	}
	if *partition < 0 || *partition >= tab.Partitions() {
		return fmt.Errorf("%w: partition %d out of range", ErrInvalid, *partition)
	}
	return nil
}

// applyReplica stores a write sent by the primary. It is fenced by this
// node's view of the ring: it accepts writes only from the node it sees as
// the partition's primary, and only while it sees itself as the buddy, so a
// node that lost ownership cannot get a write acknowledged.
func (n *Node) applyReplica(tab *ring.Table, req *replicateRequest) error {
	if req.Session == nil || ValidateID(req.Session.ID) != nil || tab.Partition(req.Session.ID) != req.Partition {
		return fmt.Errorf("%w: malformed replicate request", ErrInvalid)
	}
	o := tab.Owners(req.Partition)
	if o.Primary != req.From || o.Buddy != n.cfg.Name {
		return fmt.Errorf("%w: %s sees partition %d owned by %+v at epoch %d, not primary %s (its epoch %d)",
			ErrNotOwner, n.cfg.Name, req.Partition, o, tab.Epoch(), req.From, req.Epoch)
	}
	if wait := n.fencedFor(req.Partition); wait > 0 {
		n.stats.FenceWaits.Add(1)
		return fmt.Errorf("%w: %s fences partition %d for %v while a departed owner's lease lapses", ErrUnavailable, n.cfg.Name, req.Partition, wait)
	}
	n.clock.observe(req.Session.Stamp)
	var prev *Session
	var stored bool
	if err := n.underRing(tab, func() { prev, stored = n.store.putIfNewer(req.Partition, req.Session) }); err != nil {
		return err
	}
	if !stored && (prev.Version > req.Session.Version || conflicting(prev, req.Session)) {
		return fmt.Errorf("%w: %s holds v%d of %s, refused v%d", ErrStale, n.cfg.Name, prev.Version, req.Session.ID, req.Session.Version)
	}
	n.stats.Replicated.Add(1)
	return nil
}
