package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tandem-io/tandem/ring"
)

// Leases fence a node that is cut off from the others.
//
// The write path fences writes on its own: a buddy accepts a write only
// from the node it sees as the partition's primary. Reads need more. A
// node cut off from everyone (gossip too) goes on seeing its old ring for
// as long as its failure detector takes, and then ends up alone in it,
// while the others declare it dead, promote its buddies and acknowledge
// writes without it. Whatever it serves from its copies meanwhile may be
// stale.
//
// So a node serves from its copies only under leases: a primary answers,
// and a buddy answers a read that could not reach the primary, only while
// it holds live leases from all the other members of its ring but one
// (leaseQuorum). Every node asks every member of its ring for a lease every
// LeaseDuration/6, and on demand when it lacks them.
// A member grants a lease only to a node in its own ring, and records
// until when (in its own time, from the moment it grants, which is no
// earlier than the moment the holder counts from) the holder may rely on
// it. When a member leaves a node's ring, every partition the node owns
// that the departed member owned is fenced until the node's grant to it
// has lapsed: the node acknowledges no write to it, as primary or as
// buddy, before then. By that time the departed member has stopped
// answering from its copies (see leaseQuorum).
//
// A lease reply also says how often the granter has seen the holder leave
// its ring. A node that learns it was declared dead since it last asked
// (a cut that healed, a pause) may have missed writes to every partition it
// owns; it pulls them all from the other members before it serves them
// again, as a node that joins does.

// methodLease asks a member for a lease (or gives one back).
const methodLease = "lease"

// leaseRequest asks the receiver for a lease on behalf of From. With
// Release, From gives up every lease it holds from the receiver instead: a
// drained node does so before it leaves, so that the members it leaves need
// not wait for its leases to lapse before they take over.
type leaseRequest struct {
	From    string `msgpack:"f"`
	Release bool   `msgpack:"r,omitempty"`
}

// leaseReply grants a lease of the receiver's LeaseDuration from the
// moment the request was sent. Fingerprint names the granter's ring: the
// lease counts only while the holder serves by the same ring. Departed
// counts the times the granter saw the requester leave its ring.
type leaseReply struct {
	Fingerprint uint64 `msgpack:"fp"`
	Departed    uint64 `msgpack:"d"`
}

// heldLease is a lease this node holds from a member.
type heldLease struct {
	until       time.Duration // on mono's clock
	fingerprint uint64        // the granter's ring
	asked       time.Duration // when the request was sent, on mono's clock
}

// mono returns the node's monotonic clock: the time since it started.
// Leases use it, never the wall clock (which the Now setting may skew).
func (n *Node) mono() time.Duration { return time.Since(n.started) }

// leaseMargin is how much longer than the holder a granter keeps a lease
// in mind, for clocks that run at slightly different rates.
func (n *Node) leaseMargin() time.Duration { return n.cfg.LeaseDuration/10 + 5*time.Millisecond }

// serveLease grants a lease to req.From if it is a member of this node's
// ring, or takes back the leases it holds.
func (n *Node) serveLease(req *leaseRequest) (leaseReply, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.mono()
	if req.Release {
		if n.granted[req.From] > now {
			n.granted[req.From] = now
		}
		return leaseReply{}, nil
	}
	tab := n.table.Load()
	switch {
	case tab == nil || !tab.Has(req.From) || req.From == n.cfg.Name:
		return leaseReply{}, fmt.Errorf("%w: %s does not see %s in its ring", ErrNotOwner, n.cfg.Name, req.From)
	case len(tab.Members()) < n.cfg.MinMembers:
		return leaseReply{}, fmt.Errorf("%w: %s sees %d members, fewer than %d", ErrUnavailable, n.cfg.Name, len(tab.Members()), n.cfg.MinMembers)
	case n.quarantined():
		return leaseReply{}, fmt.Errorf("%w: %s is recovering from a pause", ErrUnavailable, n.cfg.Name)
	}
	// Granted under n.mu, as SetTable fences under n.mu: a grant is either
	// seen by the fence of the ring that drops req.From, or refused by it.
	n.granted[req.From] = max(n.granted[req.From], now+n.cfg.LeaseDuration+n.leaseMargin())
	return leaseReply{Fingerprint: tab.Fingerprint(), Departed: n.departures[req.From]}, nil
}

// fencePartitions fences, until the grants this node made to them have
// lapsed, every partition it owns in tab that one of the departed members
// owned in prev. It runs under n.mu, from SetTable.
func (n *Node) fencePartitions(prev, tab *ring.Table, departed []string) {
	until := time.Duration(0)
	for _, d := range departed {
		n.departures[d]++
		until = max(until, n.granted[d])
	}
	if prev == nil || until <= n.mono() {
		return
	}
	fenced := 0
	for p := range tab.Partitions() {
		old := prev.Owners(p)
		if owns(tab.Owners(p), n.cfg.Name) && (slices.Contains(departed, old.Primary) || slices.Contains(departed, old.Buddy)) {
			n.fence[p] = max(n.fence[p], until)
			fenced++
		}
	}
	if fenced > 0 {
		n.log.Info("fencing partitions taken over until the departed members' leases lapse",
			"departed", departed, "partitions", fenced, "for", until-n.mono())
	}
}

// fencedFor returns how much longer partition p is fenced.
func (n *Node) fencedFor(p int) time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.fence[p] - n.mono()
}

// awaitFence waits until partition p is no longer fenced, or ctx ends.
func (n *Node) awaitFence(ctx context.Context, p int) error {
	wait := n.fencedFor(p)
	if wait <= 0 {
		return nil
	}
	n.stats.FenceWaits.Add(1)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("%w: partition %d is fenced for %v while a departed owner's lease lapses", ErrUnavailable, p, wait)
	case <-t.C:
		return nil
	}
}

// leaseQuorum is how many of its ring's other members a node must hold
// live leases from to serve from its copies: all but one, so that a single
// member's crash costs no reads, and at least one.
//
// A write acknowledged under new owners of a partition needs both of them,
// and each fences the partition until its grant to the departed owner has
// lapsed; a node holding leases from all its other members but one holds
// one from at least one of the two, so it has stopped serving before
// either acknowledges. A node cut off from everyone holds none.
func leaseQuorum(others int) int {
	if others <= 0 {
		return 0
	}
	return max(1, others-1)
}

// missingLeases returns the other members of tab this node holds no live
// lease from, granted under tab's ring. A lease granted under another ring
// does not count: a node whose view is not yet the cluster's (one that
// sees only part of the cluster after a cut heals) must not serve by it.
func (n *Node) missingLeases(tab *ring.Table) []string {
	now, fp := n.mono(), tab.Fingerprint()
	n.leases.mu.Lock()
	defer n.leases.mu.Unlock()
	var out []string
	for _, m := range tab.Members() {
		if l := n.leases.held[m.Name]; m.Name != n.cfg.Name && (l.until <= now || l.fingerprint != fp) {
			out = append(out, m.Name)
		}
	}
	return out
}

// requireLeases makes sure this node holds live leases from a quorum of
// tab's other members (leaseQuorum), asking those it lacks if it does not.
func (n *Node) requireLeases(ctx context.Context, tab *ring.Table) error {
	others := len(tab.Members())
	if tab.Has(n.cfg.Name) {
		others--
	}
	spare := others - leaseQuorum(others) // leases it may lack
	missing := n.missingLeases(tab)
	if len(missing) <= spare {
		return nil
	}
	n.stats.LeaseMisses.Add(1)
	results := make(chan error, len(missing))
	for _, m := range missing {
		go func() {
			if err := n.renewLease(ctx, tab, m); err != nil {
				results <- fmt.Errorf("lease from %s: %w", m, err)
				return
			}
			results <- nil
		}()
	}
	var errs []error
	unreachable := 0 // refusals (another view) are not counted
	for need := len(missing) - spare; need > 0 && len(errs) <= spare; {
		if err := <-results; err != nil {
			errs = append(errs, err)
			if !errors.Is(err, ErrNotOwner) {
				unreachable++
			}
		} else {
			need--
		}
	}
	if missing = n.missingLeases(tab); len(missing) > spare {
		err := fmt.Errorf("%w: %s holds leases from %d of the %d other members it needs, under its ring (epoch %d); lacking %v",
			ErrUnavailable, n.cfg.Name, others-len(missing), leaseQuorum(others), tab.Epoch(), missing)
		if unreachable > spare && unreachable >= 2 {
			// Several members unreachable, not merely of another view:
			// cut off. (One unreachable partner in a two-node ring is as
			// likely dead; the caller waits for the ring to drop it.)
			return fmt.Errorf("%w: %w", errCutOff, errors.Join(err, errors.Join(errs...)))
		}
		return errors.Join(err, errors.Join(errs...))
	}
	return nil
}

// renewLease asks member name for a lease. Concurrent renewals with one
// member share a call.
func (n *Node) renewLease(ctx context.Context, tab *ring.Table, name string) error {
	n.leases.mu.Lock()
	if ch, ok := n.leases.renewing[name]; ok {
		n.leases.mu.Unlock()
		select {
		case <-ch:
			return nil // the caller checks the result with hasLease
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ch := make(chan struct{})
	n.leases.renewing[name] = ch
	n.leases.mu.Unlock()
	defer func() {
		n.leases.mu.Lock()
		delete(n.leases.renewing, name)
		n.leases.mu.Unlock()
		close(ch)
	}()

	sent := n.mono()
	var reply leaseReply
	if err := n.call(ctx, tab, name, methodLease, leaseRequest{From: n.cfg.Name}, &reply); err != nil {
		return err
	}
	n.leases.mu.Lock()
	seen, known := n.leases.seen[name]
	n.leases.seen[name] = reply.Departed
	n.leases.mu.Unlock()
	if known && reply.Departed > seen {
		// name saw this node leave its ring since it last asked: others
		// may have taken over and acknowledged writes without it. Every
		// owned partition is pulled again before the lease is used.
		n.log.Warn("a member saw this node leave its ring; pulling every owned partition again", "member", name)
		n.stats.Rejoins.Add(1)
		n.reconcileAll(nil, true)
	}
	n.leases.mu.Lock()
	if l := n.leases.held[name]; sent+n.cfg.LeaseDuration > l.until {
		n.leases.held[name] = heldLease{until: sent + n.cfg.LeaseDuration, fingerprint: reply.Fingerprint, asked: sent}
	}
	n.leases.mu.Unlock()
	return nil
}

// renewLeases asks every other member of the ring for a lease, without
// waiting for the answers. It runs every LeaseDuration/6.
func (n *Node) renewLeases() {
	tab := n.table.Load()
	if tab == nil || !tab.Has(n.cfg.Name) {
		return // not serving (yet, or any more): no lease needed
	}
	for _, m := range tab.Members() {
		if m.Name == n.cfg.Name {
			continue
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.LeaseDuration)
			defer cancel()
			if err := n.renewLease(ctx, tab, m.Name); err != nil {
				n.log.Debug("lease renewal failed", "member", m.Name, "err", err)
			}
		}()
	}
}

// releaseLeases gives back the leases this node holds, so that the members
// it leaves need not wait for them to lapse. The node must no longer serve
// from its copies: Drain calls it once its ring no longer has it.
func (n *Node) releaseLeases(ctx context.Context, tab *ring.Table) {
	n.leases.mu.Lock()
	clear(n.leases.held)
	n.leases.mu.Unlock()
	for _, m := range tab.Members() {
		if m.Name == n.cfg.Name {
			continue
		}
		if err := n.call(ctx, tab, m.Name, methodLease, leaseRequest{From: n.cfg.Name, Release: true}, nil); err != nil {
			n.log.Debug("cannot give back a lease", "member", m.Name, "err", err)
		}
	}
}
