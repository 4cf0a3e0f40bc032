package replica

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tandem-io/tandem/ring"
)

// Ownership that moves while every member stays (a node joins, or comes
// back) is fenced by the ring itself, not by leases.
//
// Members learn of a ring change at different moments. A previous owner of
// a partition whose view lags goes on serving it by its old ring, from
// copies that will miss the writes its new owners acknowledge; its leases
// do not stop it, for they were granted under the old ring and run on. On
// a join the ring moves primaries only to the joiner, whose buddy for them
// is their previous primary; the partitions' previous buddies lose them,
// and so do buddies replaced by the joiner. Such a displaced buddy, lagging,
// would still answer reads that could not reach the primary. So the
// owners acknowledge nothing until every previous owner that is still a
// member has moved to their ring:
//
//   - A new owner pulls a partition (or fetches a session of it) from its
//     previous owners, and a previous owner answers only a node on its own
//     ring (readRequest.Ring, pullRequest.Ring); otherwise it answers
//     OtherRing. By the time the new owner holds the partition, the
//     previous owners have left the old ring. The new owner does not give
//     up on a hand-off (HandoffTimeout) while a source answers OtherRing.
//   - An owner that already held the partition (a primary whose buddy
//     changed) needs no copy, but before it acknowledges a write it waits
//     until each displaced owner (a previous owner that is a member but no
//     owner any more) has answered a lease request, sent since it moved,
//     under its ring: the lease reply names the granter's ring.
//
// And a node stores a write only by the ring it holds at that moment: the
// primary's store of a write and the buddy's store of a replica happen
// under ringMu, after checking that the ring the write was routed by is
// still the node's (underRing). A node that has moved to a new ring, and
// so may have answered a new owner, stores nothing more by its old one, so
// no copy a new owner pulled or built on is overwritten by a write
// routed by the old ring. Reads need no such check: a read routed by the
// old ring began before the node moved, so before any write by the new
// owners was acknowledged, and may return what preceded them.

// underRing runs f, which stores a write in this node's copies, if tab is
// still the node's ring, and holds the ring in place while it runs. It
// returns ErrNotOwner, and does not run f, if the ring has changed since
// the write was routed by tab; the caller retries by the new ring. f must
// not take n.mu (SetTable holds it while it waits for ringMu).
func (n *Node) underRing(tab *ring.Table, f func()) error {
	n.ringMu.RLock()
	defer n.ringMu.RUnlock()
	if cur := n.table.Load(); cur != tab {
		return fmt.Errorf("%w: %s's ring changed (epoch %d to %d) while it served a request", ErrNotOwner, n.cfg.Name, tab.Epoch(), cur.Epoch())
	}
	f()
	return nil
}

// otherRing reports whether a hand-off request must be refused because the
// requester's ring is not this node's. requesterRing is the requester's
// fingerprint; zero asks for no check (a reconciliation, which merges
// copies and fences nothing).
func (n *Node) otherRing(tab *ring.Table, requesterRing uint64) bool {
	if requesterRing == 0 || requesterRing == tab.Fingerprint() {
		return false
	}
	n.stats.HandoffRefusals.Add(1)
	return true
}

// displace records, for every partition this node owns in tab, the members
// of tab that owned it in prev (or were still waiting to be confirmed from
// earlier changes) and own it no more. It runs under n.mu, from SetTable.
func (n *Node) displace(prev, tab *ring.Table) {
	next := map[int][]string{}
	for p := range tab.Partitions() {
		o := tab.Owners(p)
		if !owns(o, n.cfg.Name) {
			continue
		}
		candidates := n.displaced[p]
		if prev != nil {
			old := prev.Owners(p)
			candidates = append(slices.Clone(candidates), old.Primary, old.Buddy)
		}
		var names []string
		for _, x := range candidates {
			if x != "" && x != n.cfg.Name && tab.Has(x) && !owns(o, x) && !slices.Contains(names, x) {
				names = append(names, x)
			}
		}
		if len(names) > 0 {
			next[p] = names
		}
	}
	n.displaced = next
}

// onRing reports whether member name has answered a lease request sent
// since tab was installed (since, on mono's clock) under tab's ring: it
// had moved to tab by then. An older answer does not count, even under the
// same fingerprint: a ring whose members left and came back has the
// fingerprint it had before, and the member may have moved in between.
func (n *Node) onRing(name string, tab *ring.Table, since time.Duration) bool {
	n.leases.mu.Lock()
	defer n.leases.mu.Unlock()
	l := n.leases.held[name]
	return l.fingerprint == tab.Fingerprint() && l.asked >= since
}

// awaitDisplaced makes sure every displaced owner of partition p has moved
// to tab, asking those not yet known to have for a lease, all at once. It
// returns ErrUnavailable if one has not; the caller retries.
func (n *Node) awaitDisplaced(ctx context.Context, tab *ring.Table, p int) error {
	n.mu.Lock()
	names, since, current := slices.Clone(n.displaced[p]), n.installed, n.table.Load() == tab
	n.mu.Unlock()
	if !current {
		return fmt.Errorf("%w: %s's ring changed while it served a request", ErrNotOwner, n.cfg.Name)
	}
	if len(names) == 0 {
		return nil
	}
	var wg sync.WaitGroup
	for _, x := range names {
		if !n.onRing(x, tab, since) {
			wg.Go(func() {
				if err := n.renewLease(ctx, tab, x); err != nil {
					n.log.Debug("displaced owner did not answer", "member", x, "err", err)
				}
			})
		}
	}
	wg.Wait()
	var behind []string
	for _, x := range names {
		if !n.onRing(x, tab, since) {
			behind = append(behind, x)
		}
	}
	if len(behind) > 0 {
		n.stats.HandoverWaits.Add(1)
		return fmt.Errorf("%w: partition %d's previous owners %v have not yet moved to %s's ring (epoch %d)", ErrUnavailable, p, behind, n.cfg.Name, tab.Epoch())
	}
	n.mu.Lock()
	if n.table.Load() == tab {
		// Confirmed once, for good: a displaced owner that has moved to
		// this ring serves the partition by the old one no more.
		delete(n.displaced, p)
	}
	n.mu.Unlock()
	return nil
}
