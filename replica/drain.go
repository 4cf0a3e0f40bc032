package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/ring"
)

// pushRequest carries copies a leaving node hands to an owner.
type pushRequest struct {
	From      string     `msgpack:"f"`
	Partition int        `msgpack:"p"`
	Sessions  []*Session `msgpack:"s"`
	Floor     uint64     `msgpack:"fl,omitempty"` // the partition's generation floor at the leaver (store.raiseFloor)
	Distrusts bool       `msgpack:"dt,omitempty"` // the leaver was declared dead and has not caught up (partState.distrusted)
	Leaving   bool       `msgpack:"lv,omitempty"` // a drain's push (ownership.notePush), not a rebuilt partition's (announceFloors)
	// Unvouched: the pusher's copies may be older than what the cluster
	// acknowledged since (partState.unvouched), as in pullReply; a
	// leaver's are unless it held the partition until the ring it
	// drains to (pushTo).
	Unvouched bool `msgpack:"uv,omitempty"`
}

// methodPush hands a leaving node's copies to an owner.
const methodPush = "push"

// servePush answers methodPush: it merges copies handed over by a leaving
// node, or pushed by the partition's primary to this node as its buddy
// (announceFloors). A push that is not a leaver's is taken only from the
// partition's primary in this node's ring, with this node its buddy: its
// floor drops copies, and a node that is not the primary, or pushes by
// another ring, has no say over them. The pusher tries again once the
// rings agree.
func (n *Node) servePush(_ context.Context, tab *ring.Table, body msgpack.RawMessage) (any, error) {
	var req pushRequest
	if err := decodePartitioned(body, &req, &req.Partition, tab); err != nil {
		return nil, err
	}
	if o := tab.Owners(req.Partition); !req.Leaving && (o.Primary != req.From || o.Buddy != n.cfg.Name) {
		return nil, fmt.Errorf("%w: push of partition %d from %s: in ring %d its primary is %q and its buddy %q", ErrNotOwner, req.Partition, req.From, tab.Epoch(), o.Primary, o.Buddy)
	}
	n.learnFloor(req.Partition, req.Floor, req.From, !req.Leaving && !req.Distrusts)
	if req.Distrusts && !n.cfg.AllowMinority && !n.own.load().distrusts(req.Partition) {
		// Declared dead and not caught up: its copies may be older than
		// what was acknowledged since, as in a pull (chaos finding F13: a
		// node frozen past the failure detector, then drained, pushed its
		// old copies to a new owner that held nothing yet).
		return empty{}, nil
	}
	if req.Leaving && req.Unvouched && !n.cfg.AllowMinority && n.own.reportedLost(req.Partition) {
		// This node owns the partition and reported it lost (or adopted
		// an owner's report): a leaver's unvouched copies, leftovers of
		// an earlier ownership, are from before the loss, which took
		// them, as a non-owner's are to a pull after a loss
		// (judgeSource). Merged, they brought back a session the loss
		// took, or beat a write made since at a lower version.
		req.Sessions = nil
	}
	for _, s := range req.Sessions {
		if s != nil && ValidateID(s.ID) == nil && tab.Partition(s.ID) == req.Partition {
			_ = n.merge(req.Partition, s, nil) // a leaver's push merges under any ring: its new owners may move on meanwhile
		}
	}
	if req.Leaving {
		n.own.notePush(req.From, req.Partition, n.mono())
	}
	n.stats.HandoffReceived.Add(uint64(len(req.Sessions)))
	return empty{}, nil
}

// Drain hands every copy this node holds to the owners tab names for it,
// and returns once each owner has acknowledged, or ctx ends. tab must be a
// ring without this node, already given to SetTable, so the node no longer
// acknowledges writes of its own while it drains. Receivers merge, keeping
// the newer copy of each session, so draining is safe to repeat. The error
// names the partitions not handed off. Last, if every copy was handed
// off and it held every partition it owned (partState.held), the node
// gives back its leases, so the owners taking over need not wait for them
// to lapse, and know that it left nothing behind.
func (n *Node) Drain(ctx context.Context, tab *ring.Table) error {
	if tab.Has(n.cfg.Name) {
		return fmt.Errorf("%w: drain: %s is still in the ring it would drain to", ErrInvalid, n.cfg.Name)
	}
	type job struct{ p int }
	var jobs []job
	held := n.own.trustedHeld()
	for p := range n.store.parts {
		// Every partition with copies, and every one it holds whole even
		// if empty: the owners that follow learn that it pushed them
		// the partition (ownership.notePush).
		if n.store.count(p) > 0 || slices.Contains(held, p) {
			jobs = append(jobs, job{p})
		}
	}
	var mu sync.Mutex
	var failed []int
	var errs []error
	work := make(chan job)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for j := range work {
				if err := n.pushPartition(ctx, tab, j.p); err != nil {
					mu.Lock()
					failed = append(failed, j.p)
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
	if err := n.handOverSeat(ctx, tab); err != nil {
		n.log.Warn("drained without handing this node's seat over: the seats count it as crashed", "err", err)
	}
	if len(failed) > 0 {
		// Its leases are not given back: to the others this node is
		// gone as a crashed one is, so they wait for its leases to
		// lapse and report what it alone held as lost, rather than take
		// its leaving for a hand-off.
		slices.Sort(failed)
		n.log.Error("drain incomplete: partitions not handed off; leaving as a crashed node would", "partitions", failed, "err", errors.Join(errs...))
		return fmt.Errorf("drain %s: %d of %d partitions not handed off %v: %w", n.cfg.Name, len(failed), len(jobs), failed, errors.Join(errs...))
	}
	if unheld := n.own.unheldOwned(); len(unheld) > 0 {
		// Its release would tell the owners that follow it that it
		// pushed them these partitions whole, while it was still being
		// handed them itself (CHAOS.md F13): no lease back, so that they
		// take them over from the other previous owner, or report them
		// lost.
		n.log.Warn("drained every copy held, but partitions were still being handed to this node, or it was declared dead and had not caught up: leaving as a crashed node would", "partitions", unheld)
		return fmt.Errorf("drain %s: partitions %v were still being handed to it, or distrusted: %w", n.cfg.Name, unheld, ErrUnavailable)
	}
	n.releaseLeases(ctx, tab)
	n.log.Info("drained: every copy handed off and acknowledged", "partitions", len(jobs))
	return nil
}

// pushPartition sends partition p's copies to each of its owners in tab,
// in batches of about HandoffBytes.
func (n *Node) pushPartition(ctx context.Context, tab *ring.Table, p int) error {
	o := tab.Owners(p)
	for _, to := range []string{o.Primary, o.Buddy} {
		if to == "" {
			continue
		}
		if err := n.pushTo(ctx, tab, p, to, pushDrain, nil); err != nil {
			return err
		}
	}
	return nil
}

// pushKind says why a node pushes a partition's copies (pushTo).
type pushKind int

const (
	// pushDrain: a leaving node hands its copies over (Drain).
	pushDrain pushKind = iota
	// pushRebuilt: a primary that has just rebuilt the partition gives
	// its buddy the copies and the new floor (announceFloors).
	pushRebuilt
	// pushMerge: a primary gives its buddy copies the buddy may lack, to
	// merge, newer over older, without a floor (ownership.finishHandoff).
	pushMerge
)

// pushTo sends partition p's copies, and its floor, to member to, in
// batches of about HandoffBytes; a partition without copies is one push
// of the floor alone. A node that resumed after a pause pushes nothing
// until it knows whether it was declared dead meanwhile
// (ownership.unconfirmed): a leaver then drains as a crashed node would,
// and a rebuilt partition's floor is announced again later. A non-nil
// only limits the copies to those sessions; a merge push left with none
// sends nothing.
func (n *Node) pushTo(ctx context.Context, tab *ring.Table, p int, to string, kind pushKind, only map[string]bool) error {
	leaving := kind == pushDrain
	if n.own.unconfirmed() {
		return fmt.Errorf("hand partition %d to %s: %w: %w", p, to, ErrUnavailable, errUnconfirmed)
	}
	copies := n.store.snapshot(p)
	if only != nil {
		copies = slices.DeleteFunc(copies, func(s *Session) bool { return !only[s.ID] })
		if len(copies) == 0 && kind == pushMerge {
			return nil // written or deleted since: the writes replicated them
		}
	}
	floor := n.store.floor(p)
	if kind == pushMerge {
		floor = 0 // the receiver learns it from the partition's writes, and ends no hand-off on it (learnFloor)
	}
	st := n.own.load()
	distrusts, unvouched := st.distrusts(p), st.parts[p].unvouched
	if leaving {
		// Stopping owning every partition as it leaves marks all its
		// copies unvouched (notOwned): what a leaver vouches for is a
		// partition it held until the very ring it drains to. The rest
		// are leftovers of an earlier ownership, or a hand-off it had
		// not finished.
		part := st.parts[p]
		unvouched = !part.held || part.distrusted || part.stoppedIn != tab.Epoch()
	}
	if len(copies) == 0 {
		if err := n.call(ctx, tab, to, methodPush, pushRequest{From: n.cfg.Name, Partition: p, Floor: floor, Distrusts: distrusts, Leaving: leaving, Unvouched: unvouched}, nil); err != nil {
			return fmt.Errorf("hand partition %d to %s: %w", p, to, err)
		}
		return nil
	}
	for start := 0; start < len(copies); {
		end, budget := start, n.cfg.HandoffBytes
		for end < len(copies) && (end == start || budget > 0) {
			size, err := encodedSize(copies[end])
			if err != nil {
				return err
			}
			budget -= size
			end++
		}
		req := pushRequest{From: n.cfg.Name, Partition: p, Sessions: copies[start:end], Floor: floor, Distrusts: distrusts, Leaving: leaving, Unvouched: unvouched}
		if err := n.call(ctx, tab, to, methodPush, req, nil); err != nil {
			return fmt.Errorf("hand partition %d to %s: %w", p, to, err)
		}
		n.stats.HandoffSent.Add(uint64(end - start))
		start = end
	}
	return nil
}
