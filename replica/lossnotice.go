package replica

import (
	"context"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/ring"
)

// methodLost tells a partition's primary that its buddy reported the
// partition lost.
const methodLost = "lost"

// lostNotice is methodLost's request: From, the partition's buddy in the
// ring named by Ring (its fingerprint), gave its hand-off of Partition up
// and reported the loss, beginning generation LostGen
// (partition.lossGen).
type lostNotice struct {
	From      string `msgpack:"f"`
	Partition int    `msgpack:"p"`
	Ring      uint64 `msgpack:"ring"`
	LostGen   uint64 `msgpack:"lg,omitempty"`
}

// tellPrimaries tells the primary of each partition in parts that this
// node, its buddy, has just reported the partition lost (a hand-off given
// up: Node.pullDue), and tries again, backing off, until the primary has
// taken the report or this node is no longer the partition's buddy with
// the report standing (announceFloors' bounds). A primary that already
// holds the partition hears of the report in no other way: it takes
// nothing more from its buddy until the next ring, and the two owners
// answered differently for what the report had dropped on one of them —
// the buddy nothing, the primary the sessions (the explorer's finding
// F21, schedule 19).
func (n *Node) tellPrimaries(tab *ring.Table, parts []int) {
	left := n.untilDelivered(tab, parts, func(ctx context.Context, tab *ring.Table, p int) (bool, error) {
		o := tab.Owners(p)
		if o.Buddy != n.cfg.Name || o.Primary == "" || !n.own.reportedLost(p) {
			return true, nil // no longer this node's to tell
		}
		notice := lostNotice{From: n.cfg.Name, Partition: p, Ring: tab.Fingerprint(), LostGen: n.store.lossGeneration(p)}
		if err := n.call(ctx, tab, o.Primary, methodLost, notice, nil); err != nil {
			return false, fmt.Errorf("tell %s of the loss of partition %d: %w", o.Primary, p, err)
		}
		return true, nil
	})
	if len(left) > 0 {
		n.log.Warn("gave up telling primaries of partitions this node reported lost: they learn it at their next pull from it", "partitions", left)
	}
}

// serveLost answers methodLost: this node's buddy of a partition reported
// it lost. The primary, holding the partition and trusting its copies,
// takes the report as it would from the buddy's pull reply
// (Node.adoptLoss: a new generation, nothing more from non-owners) and
// pushes its copies to the buddy to merge, so that the two hold the
// same; what the buddy dropped and the primary held is not lost after
// all. A primary still taking the partition over, or declared dead and
// not caught up, answers ErrUnavailable: the buddy tries again, and the
// primary's own pull from the buddy may bring the report first.
func (n *Node) serveLost(_ context.Context, tab *ring.Table, body msgpack.RawMessage) (any, error) {
	var req lostNotice
	if err := decodePartitioned(body, &req, &req.Partition, tab); err != nil {
		return nil, err
	}
	p := req.Partition
	if req.Ring != tab.Fingerprint() {
		return nil, fmt.Errorf("%w: %w: loss notice of partition %d from %s", ErrUnavailable, errOtherRing, p, req.From)
	}
	if o := tab.Owners(p); o.Primary != n.cfg.Name || o.Buddy != req.From {
		return nil, fmt.Errorf("%w: loss notice of partition %d from %s: in ring %d its primary is %q and its buddy %q", ErrNotOwner, p, req.From, tab.Epoch(), o.Primary, o.Buddy)
	}
	if st := n.own.load(); !st.parts[p].held || st.distrusts(p) || st.parts[p].transfer != nil || st.parts[p].unvouched {
		return nil, fmt.Errorf("%w: loss notice of partition %d from %s: this node is still taking the partition over", ErrUnavailable, p, req.From)
	}
	n.adoptLoss(tab, p, req.From, req.LostGen)
	n.log.Info("the buddy reported a partition lost that this node holds: pushing its copies to it", "partition", p, "buddy", req.From)
	go n.announceFloors(tab, []int{p}, pushMerge, nil)
	return empty{}, nil
}
