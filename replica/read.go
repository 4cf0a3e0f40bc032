package replica

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/ring"
)

// The read path: the primary answers from its copy (readPrimary); when it
// cannot be reached, the buddy answers from its own (readAsOwner). Either
// first fetches the session from previous owners while the partition is
// being handed to it (fetch). methodRead also serves those fetches.

// methodRead reads a stored copy from an owner: the buddy when the primary
// cannot be reached, or a previous owner during a hand-off.
const methodRead = "read"

// MethodRead reads the node's own copy of a session (primary or buddy)
// without forwarding; the request is a ReadRequest and the reply a
// ReadReply whose Session is nil when the node holds no live copy. Only a
// current owner answers: another node's error code is "not_owner", and a
// buddy still being handed the partition fetches the session from the
// previous owners first ("unavailable" while it cannot), so a nil Session
// is an answer. Smart clients use it to read from the buddy when the
// primary is unreachable.
const MethodRead = methodRead

// ReadRequest asks an owner for its copy of one session.
type ReadRequest struct {
	Partition int    `msgpack:"p"`
	ID        string `msgpack:"id"`
	// Raw includes tombstones and expired copies, for a new owner that
	// needs the latest version whatever it is.
	Raw bool `msgpack:"raw,omitempty"`
	// Ring, when set, is the fingerprint of the requester's ring: a new
	// owner fetching from a previous owner is answered only once both
	// serve by the same ring (the gate's hand-off rule).
	Ring uint64 `msgpack:"ring,omitempty"`
	// From names the requester, for a raw read: a former owner's hold
	// answers only the runs it handed the partition to (ownState.vouches).
	From string `msgpack:"f,omitempty"`
	// Own, on a read that is not raw, asks for the receiver's own answer,
	// not one it asks its primary for: a buddy whose copy is unconfirmed
	// asks the primary so (readAsBuddy), and the primary, should it see
	// itself as the buddy by its ring, does not ask again.
	Own bool `msgpack:"own,omitempty"`
}

// ReadReply answers MethodRead; Session is nil when the node holds no
// copy. For raw reads, Holds says whether the node holds the partition
// (partState.held), so that "no copy" from a node that does not is not
// taken for "no such session", and Blank whether the node is young and
// knows nothing of the partition (Node.blank): while every source and the
// asker are, the cluster is new, and "no copy" is the answer.
//
// OtherRing answers a fetch that carried a ring (ReadRequest.Ring) other
// than the receiver's: the receiver hands nothing over until both serve by
// the same ring.
type ReadReply struct {
	Session   *Session `msgpack:"s"`
	Holds     bool     `msgpack:"h,omitempty"`
	OtherRing bool     `msgpack:"or,omitempty"`
	// Floor, in a raw read, is the partition's generation floor at the
	// answering node (store.raiseFloor).
	Floor uint64 `msgpack:"fl,omitempty"`
	// Distrusts, in a raw read, says the answering node was declared
	// dead and has not caught up (transfer.distrust): a new owner does
	// not build on its copy.
	Distrusts bool `msgpack:"dt,omitempty"`
	// Blank, in a raw read: see above.
	Blank bool `msgpack:"bl,omitempty"`
	// Unconfirmed, in a raw read, says the answering node resumed after a
	// pause and does not know yet whether it was declared dead meanwhile
	// (ownership.unconfirmed): it sends no copy, and the asker tries again.
	Unconfirmed bool `msgpack:"uc,omitempty"`
	// Unvouched, in a raw read: the answering node's copies of the
	// partition may be older than what the cluster acknowledged since
	// (partState.unvouched); a node that merges one is unvouched too.
	Unvouched bool `msgpack:"uv,omitempty"`
	// Lost, in a raw read: the answering node reported the partition
	// lost while owning it (pullReply.Lost).
	Lost bool `msgpack:"ls,omitempty"`
	// LostGen: as in pullReply.
	LostGen uint64 `msgpack:"lg,omitempty"`
}

// readPrimary answers a get or touch from this node's primary copy; the
// gate has admitted it.
func (n *Node) readPrimary(tab *ring.Table, p int, op *Op) (*Session, error) {
	now := n.wall()
	s := n.store.get(p, op.ID)
	if !s.live(now) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, op.ID)
	}
	n.stats.Reads.Add(1)
	if op.Kind == OpGet && op.NoTouch {
		return s, nil
	}
	if touched := n.store.touch(p, op.ID, now, true); touched != nil {
		s = touched // the same copy, its last access moved
	}
	if op.Kind == OpTouch {
		return nil, nil
	}
	return s, nil
}

// readAsOwner answers a read that could not reach the primary from this
// node's own copy, once the gate admits it. Only a current owner's copy is
// an answer: a node that no longer owns p keeps its old copies for a while
// but receives no writes, and a new buddy still being handed p lacks the
// sessions nobody wrote since, so it fetches the session from the previous
// owners first, as a primary does. A "not found" from here is as
// trustworthy as the primary's.
//
// With ask, a buddy whose copy its primary has not confirmed asks the
// primary instead (readAsBuddy).
func (n *Node) readAsOwner(ctx context.Context, tab *ring.Table, p int, id string, ask bool) (*Session, error) {
	if tab.Owners(p).Primary == n.cfg.Name {
		// Promoted since the caller looked: answer as the primary does,
		// without touching (the caller's read is not this node's to count).
		return n.serveAsPrimary(ctx, tab, p, &Op{Kind: OpGet, ID: id, NoTouch: true})
	}
	if err := n.admit(ctx, admission{entry: entryBuddyRead, tab: tab, p: p, id: id}); err != nil {
		return nil, err
	}
	return n.readAsBuddy(ctx, tab, p, id, ask)
}

// readAsBuddy answers a get from this node's buddy copy, when the primary
// cannot be reached. A copy its primary has not confirmed is not shown
// (confirm.go): the write that made it may never take effect. With ask,
// the buddy asks the primary for its answer instead, which may reach it
// where the reader's request did not; a read it cannot answer so is
// refused. The buddy's last access may lag the primary's by up to
// TouchInterval, so it is given that much grace before it counts as
// expired.
func (n *Node) readAsBuddy(ctx context.Context, tab *ring.Table, p int, id string, ask bool) (*Session, error) {
	s, unconfirmed := n.store.getShown(p, id)
	if unconfirmed {
		err := errors.New("not asked")
		if primary := tab.Owners(p).Primary; ask && primary != "" {
			var reply ReadReply
			if err = n.call(ctx, tab, primary, methodRead, ReadRequest{Partition: p, ID: id, Own: true}, &reply); err == nil {
				if reply.Session == nil {
					return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
				}
				return reply.Session, nil
			}
		}
		n.stats.UnconfirmedRefused.Add(1)
		return nil, fmt.Errorf("%w: %s's last write is not yet confirmed by its primary, and the primary did not answer (%v): it may never take effect", ErrUnavailable, id, err)
	}
	if !s.live(n.wall().Add(-n.buddyGrace())) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return s, nil
}

// buddyGrace is how much later than the primary a buddy copy expires.
func (n *Node) buddyGrace() time.Duration { return 2 * n.cfg.TouchInterval }

// serveRead answers methodRead: a raw read is a new owner's fetch, any
// other the read of an owner whose primary could not be reached.
func (n *Node) serveRead(ctx context.Context, tab *ring.Table, body msgpack.RawMessage) (any, error) {
	var req ReadRequest
	if err := decodePartitioned(body, &req, &req.Partition, tab); err != nil {
		return nil, err
	}
	if req.Raw {
		if err := n.admit(ctx, admission{entry: entryTransfer, tab: tab, p: req.Partition, ring: req.Ring}); err != nil {
			if errors.Is(err, errOtherRing) {
				return ReadReply{OtherRing: true}, nil
			}
			return nil, err
		}
		if n.own.unconfirmed() {
			return ReadReply{Unconfirmed: true}, nil // as in servePull
		}
		if req.Ring != 0 && !n.knowsItsStanding(ctx, tab) {
			return ReadReply{Unconfirmed: true}, nil
		}
		var reply ReadReply
		n.store.view(req.Partition, func(sessions map[string]*Session, floor uint64) { // with the copy, as in servePull
			st := n.own.load()
			reply = ReadReply{Session: sessions[req.ID], Holds: n.vouchesTo(req.Partition, req.From), Floor: floor,
				Distrusts: st.distrusts(req.Partition), Unvouched: st.parts[req.Partition].unvouched, Lost: st.parts[req.Partition].reportedLost}
		})
		reply.Blank = n.blank(req.Partition)
		if reply.Lost {
			reply.LostGen = n.store.lossGeneration(req.Partition)
		}
		return reply, nil
	}
	s, err := n.readAsOwner(ctx, tab, req.Partition, req.ID, !req.Own)
	if errors.Is(err, ErrNotFound) {
		return ReadReply{}, nil
	}
	return ReadReply{Session: s}, err
}

// vouchesTo reports whether this node's hold of partition p may end the
// hand-off of the member called from in its ring (ownState.vouches): a
// member it does not know is not vouched for; an empty name (a peer too
// old to send one) is.
func (n *Node) vouchesTo(p int, from string) bool {
	st := n.own.load()
	var m ring.Member
	if from != "" {
		var ok bool
		if st.tab == nil {
			return false
		}
		if m, ok = st.tab.Member(from); !ok {
			return false
		}
	}
	return st.vouches(n.cfg.Name, p, m)
}

// blank reports whether this node is young (ownership.young) and knows
// nothing of partition p: it holds no copy of it, knows no generation
// floor for it, and was not declared dead with copies of it. When a
// hand-off's sources and the node taking the partition over are all
// blank, the cluster is new and so is the partition; any sign of the
// partition's past anywhere means it had owners, and a hand-off that
// finds none of them holding it waits for one, and is given up, its loss
// reported, after HandoffTimeout (chaos finding F13). A young node that
// learned from a lease that the cluster served before it
// (ownership.knowsPast) is not blank either (chaos finding F22).
//
// A young node that holds p with no copy and no floor is blank too: in a
// cluster that knows no past, such a hold goes back to a partition taken
// as new (hand-offs carry every copy, a loss leaves a floor), and the
// first node of a new cluster holds every partition from its start, no
// longer an owner once others join within a hand-off: counted as a sign
// of a past, it made the last joiners' hand-offs wait for it and report
// their partitions lost (chaos finding F29). Every member is asked
// (allBlank), so one that wrote in the partition is not blank.
func (n *Node) blank(p int) bool {
	st := n.own.load()
	return n.own.young(n.mono()) && !n.own.knowsPast() && !st.distrusts(p) && n.store.count(p) == 0 && n.store.floor(p) == 0
}
