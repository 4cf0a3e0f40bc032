package replica

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/replica/peer"
	"github.com/tandem-io/tandem/ring"
)

// A request enters here: Do routes it to the session's primary (this node,
// or one hop away by methodOp), and reads fall back to the buddy when the
// primary cannot be reached. The gate (gate.go) decides whether this node
// may serve; the write path is write.go, the read path read.go.

// methodOp forwards an Op to the session's primary.
const methodOp = "op"

// MethodOp runs an Op on the node asked, which must be the session's
// primary in its ring (else the error code is "not_owner"); the reply is an
// OpReply. Smart clients use it.
const MethodOp = methodOp

// OpReply answers MethodOp: the session after the op (nil for deletes and
// touches).
type OpReply struct {
	Session *Session `msgpack:"s"`
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
	r := Retry{CutOffAfter: n.cfg.LeaseDuration, Clock: n.cfg.Clock}
	// The attempts below do not say when the first was sent
	// (Op.FirstSent): most retries follow a refusal that applied nothing
	// (a ring change), and in a busy session, which forgets requests
	// within milliseconds, every one would be refused as indeterminate. A
	// caller that retries a call sets FirstSent itself.
	return r.Do(ctx, op, &n.stats.Retries, func(ctx context.Context) (*Session, error) {
		tab := n.own.table()
		if tab == nil {
			return nil, fmt.Errorf("%w: node %s has not joined a ring yet", ErrUnavailable, n.cfg.Name)
		}
		return n.route(ctx, tab, op)
	})
}

// route runs op by tab (Route): on this node if it is the primary, else
// one hop away; a get the primary cannot answer goes to the buddy.
func (n *Node) route(ctx context.Context, tab *ring.Table, op *Op) (*Session, error) {
	p := tab.Partition(op.ID)
	if err := n.admit(ctx, admission{entry: entryRoute, tab: tab, p: p}); err != nil {
		return nil, err
	}
	return Route(ctx, tab, op, Hops{
		Primary: func(ctx context.Context, primary string) (*Session, error) {
			if primary == n.cfg.Name {
				return n.serveAsPrimary(ctx, tab, p, op)
			}
			var reply OpReply
			ctx, cancel := n.withTimeout(ctx, ForwardTimeout(op, n.cfg.CallTimeout))
			defer cancel()
			n.stats.Forwarded.Add(1)
			fwd := *op
			fwd.NotAfter = n.wall().Add(ForwardTimeout(op, n.cfg.CallTimeout)).UnixNano()
			if err := n.callWithin(ctx, tab, primary, methodOp, &fwd, &reply); err != nil {
				return nil, fmt.Errorf("forward %s %s to %s: %w", op.Kind, op.ID, primary, err)
			}
			return reply.Session, nil
		},
		Buddy: func(ctx context.Context, buddy string) (*Session, error) {
			n.stats.BuddyReads.Add(1)
			if buddy == n.cfg.Name {
				s, err := n.readAsOwner(ctx, tab, p, op.ID, true)
				if errors.Is(err, ErrNotFound) {
					return nil, nil
				}
				return s, err
			}
			var reply ReadReply
			err := n.call(ctx, tab, buddy, methodRead, ReadRequest{Partition: p, ID: op.ID}, &reply)
			return reply.Session, err
		},
	})
}

// serveAsPrimary runs op on this node, the session's primary, once the
// gate admits it: a write on the write path, a get or touch on the read
// path.
func (n *Node) serveAsPrimary(ctx context.Context, tab *ring.Table, p int, op *Op) (*Session, error) {
	e := entryRead
	if op.Kind.writes() {
		e = entryWrite
	}
	if err := n.admit(ctx, admission{entry: e, tab: tab, p: p, id: op.ID}); err != nil {
		return nil, err
	}
	if e == entryWrite {
		return n.write(ctx, tab, p, op)
	}
	// Under the session's write lock: a write in flight may already be on
	// the buddy, which answers readers that cannot reach this node, so a
	// read here waits for it rather than answer the version before it.
	unlock := n.store.lock(op.ID)
	defer unlock()
	if err := n.settled(ctx, p, op.ID); err != nil {
		return nil, err
	}
	return n.readPrimary(tab, p, op)
}

// serveOp answers methodOp: an op forwarded to this node as the session's
// primary.
func (n *Node) serveOp(ctx context.Context, tab *ring.Table, body msgpack.RawMessage) (any, error) {
	var op Op
	if err := decodeBounded(body, &op); err != nil {
		return nil, fmt.Errorf("decode op: %w", err)
	}
	if err := op.Validate(); err != nil {
		return nil, err
	}
	if late := ArrivedLate(&op, n.wall()); late > 0 {
		n.stats.ExpiredInTransit.Add(1)
		return nil, fmt.Errorf("%w: %s of %s arrived %v after its sender gave up on it: refused, not applied", ErrUnavailable, op.Kind, op.ID, late.Round(time.Millisecond))
	}
	s, err := n.serveAsPrimary(ctx, tab, tab.Partition(op.ID), &op)
	return OpReply{Session: s}, err
}

// TransitSkew is how far apart two nodes' wall clocks may be for
// Op.NotAfter to hold: an op is refused only once it is this much later
// than its sender's deadline. Clocks further apart than this let a
// late op through (as if NotAfter were not set) or refuse a timely one
// near its deadline, which its sender retries.
const TransitSkew = 5 * time.Second

// ArrivedLate reports by how much op, arriving at now, is past its
// sender's deadline plus TransitSkew; zero if it is not, or has none.
func ArrivedLate(op *Op, now time.Time) time.Duration {
	if op.NotAfter == 0 {
		return 0
	}
	return max(0, now.Sub(time.Unix(0, op.NotAfter))-TransitSkew)
}

// call sends one request to the member called name, bounded by CallTimeout.
func (n *Node) call(ctx context.Context, tab *ring.Table, name, method string, args, reply any) error {
	ctx, cancel := n.withTimeout(ctx, n.cfg.CallTimeout)
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

// NewRequestID returns a fresh request id: 96 random bits, URL-safe.
func NewRequestID() string {
	var b [12]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Routing and retrying are shared by every caller that runs an Op against
// the cluster: a Node (Node.Do) and a smart client (tandem.Client). Route
// picks the owners by a ring; Retry runs attempts until one answers for
// good, with exponential backoff and jitter.

// Hops reach a session's owners for Route.
type Hops struct {
	// Primary runs the op on the primary called name (this node, or one
	// hop away).
	Primary func(ctx context.Context, name string) (*Session, error)
	// Buddy reads the session from the buddy called name, when the
	// primary cannot answer. Its nil Session with a nil error means
	// "no such session".
	Buddy func(ctx context.Context, name string) (*Session, error)
}

// Route runs op on the primary tab names for it; a get whose primary is
// unavailable (unreachable, or unable to serve now) is answered by the
// buddy, which holds every acknowledged write.
func Route(ctx context.Context, tab *ring.Table, op *Op, hops Hops) (*Session, error) {
	o := tab.OwnersOf(op.ID)
	s, err := hops.Primary(ctx, o.Primary)
	if err == nil || op.Kind != OpGet || !errors.Is(err, ErrUnavailable) || o.Buddy == "" {
		return s, err
	}
	s, berr := hops.Buddy(ctx, o.Buddy)
	switch {
	case berr != nil:
		return nil, fmt.Errorf("read %s from buddy %s after primary %s failed (%w): %w", op.ID, o.Buddy, o.Primary, err, berr)
	case s == nil:
		return nil, fmt.Errorf("%w: %s", ErrNotFound, op.ID)
	}
	return s, nil
}

// Retry runs attempts of one op until one answers for good.
type Retry struct {
	// First is the wait after the first failed attempt (default 5ms); each
	// wait doubles up to Max (default 200ms). Every wait is drawn at random
	// between half and all of that, so callers that failed together do not
	// retry together.
	First, Max time.Duration
	// CutOffAfter, if not zero, gives up this long after an attempt first
	// said that the node itself is cut off from the cluster, so that its
	// caller (a balancer, a client) can go to another node.
	CutOffAfter time.Duration
	// Clock times the waits and CutOffAfter; nil means the system clock.
	Clock peer.Clock
}

// Retryable reports whether err says to try again: the owners are changing
// (ErrNotOwner) or could not serve now (ErrUnavailable).
func Retryable(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotOwner)
}

// Do calls attempt until it succeeds or fails for good (not Retryable), or
// ctx ends, counting each retry in retries (if not nil).
func (r Retry) Do(ctx context.Context, op *Op, retries *atomic.Uint64, attempt func(context.Context) (*Session, error)) (*Session, error) {
	b := Backoff{First: r.First, Max: r.Max, Clock: r.Clock}
	if b.Clock == nil {
		b.Clock = peer.SystemClock()
	}
	var cutOff time.Time // when the node first found itself cut off
	for {
		s, err := attempt(ctx)
		if err == nil || !Retryable(err) {
			return s, err
		}
		if r.CutOffAfter > 0 && errors.Is(err, errCutOff) {
			if cutOff.IsZero() {
				cutOff = b.Clock.Now()
			} else if b.Clock.Now().Sub(cutOff) > r.CutOffAfter {
				return nil, fmt.Errorf("%s %s: %w", op.Kind, op.ID, err)
			}
		}
		if retries != nil {
			retries.Add(1)
		}
		if !b.Wait(ctx) {
			return nil, fmt.Errorf("%s %s: %w (last: %w)", op.Kind, op.ID, ErrUnavailable, err)
		}
	}
}

// Backoff spaces out retries: exponential, capped, with jitter. The zero
// value starts at 5ms, caps at 200ms and waits on the system clock.
type Backoff struct {
	First, Max time.Duration
	// Clock times Wait; nil means the system clock.
	Clock peer.Clock
	next  time.Duration
}

// Next returns how long to wait before the next attempt: between half and
// all of the current step, which then doubles up to Max.
func (b *Backoff) Next() time.Duration {
	if b.First <= 0 {
		b.First = 5 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 200 * time.Millisecond
	}
	if b.next == 0 {
		b.next = b.First
	}
	d := b.next
	b.next = min(2*b.next, b.Max)
	return d/2 + rand.N(d/2+1)
}

// Wait waits Next() or until ctx ends, and reports whether ctx is still
// live.
func (b *Backoff) Wait(ctx context.Context) bool {
	clock := b.Clock
	if clock == nil {
		clock = peer.SystemClock()
	}
	t := clock.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.Chan():
		return true
	}
}
