package replica

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"

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
	r := Retry{CutOffAfter: n.cfg.LeaseDuration}
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
	if _, err := n.admit(ctx, admission{entry: entryRoute, tab: tab, p: p}); err != nil {
		return nil, err
	}
	return Route(ctx, tab, op, Hops{
		Primary: func(ctx context.Context, primary string) (*Session, error) {
			if primary == n.cfg.Name {
				return n.serveAsPrimary(ctx, tab, p, op)
			}
			var reply OpReply
			ctx, cancel := context.WithTimeout(ctx, ForwardTimeout(op, n.cfg.CallTimeout))
			defer cancel()
			n.stats.Forwarded.Add(1)
			if err := n.callWithin(ctx, tab, primary, methodOp, op, &reply); err != nil {
				return nil, fmt.Errorf("forward %s %s to %s: %w", op.Kind, op.ID, primary, err)
			}
			return reply.Session, nil
		},
		Buddy: func(ctx context.Context, buddy string) (*Session, error) {
			n.stats.BuddyReads.Add(1)
			if buddy == n.cfg.Name {
				s, err := n.readAsOwner(ctx, tab, p, op.ID)
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
// gate admits it.
func (n *Node) serveAsPrimary(ctx context.Context, tab *ring.Table, p int, op *Op) (*Session, error) {
	if op.Kind.writes() {
		return n.write(ctx, tab, p, op)
	}
	return n.readPrimary(ctx, tab, p, op)
}

// serveOp answers methodOp: an op forwarded to this node as the session's
// primary.
func (n *Node) serveOp(ctx context.Context, tab *ring.Table, body msgpack.RawMessage) (any, error) {
	var op Op
	if err := msgpack.Unmarshal(body, &op); err != nil {
		return nil, fmt.Errorf("%w: decode op: %v", ErrInvalid, err)
	}
	if err := op.Validate(); err != nil {
		return nil, err
	}
	s, err := n.serveAsPrimary(ctx, tab, tab.Partition(op.ID), &op)
	return OpReply{Session: s}, err
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

// NewRequestID returns a fresh request id: 96 random bits, URL-safe.
func NewRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}
