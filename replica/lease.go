package replica

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

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
// (leaseQuorum, gate.go). A node asks for the leases it lacks on demand,
// when a request needs them, and while it serves such requests it renews
// them all every LeaseDuration/6, until a LeaseDuration after the last:
// an idle node asks for none.
// A member grants a lease only to a node in its own ring, and records
// until when (in its own time, from the moment it grants, which is no
// earlier than the moment the holder counts from) the holder may rely on
// it. When a member leaves a node's ring, every partition the node owns
// that the departed member owned is fenced until the node's grant to it
// has lapsed, and until all but one of the ring's other members have
// answered this node's lease requests under a ring without it a lease's
// time ago (ownership.fenceWait): the node acknowledges no write to it,
// as primary or as buddy, before then. By that time the departed member
// has stopped answering from its copies (see leaseQuorum).
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
	From string `msgpack:"f"`
	// Incarnation is From's run (ring.Member.Incarnation): the reply
	// counts that run's departures, not those of earlier runs under the
	// same name. With Release, it names the run that leaves: a ring
	// listing that run later does not count it again (ownership.stillLeft).
	Incarnation string `msgpack:"i,omitempty"`
	Release     bool   `msgpack:"r,omitempty"`
	// Held, with Release, lists the partitions From held whole (and did
	// not distrust) and has pushed to their owners: only for those does
	// the receiver take its leaving for a hand-over (ownership.release).
	Held []int `msgpack:"hd,omitempty"`
}

// leaseReply grants a lease of the receiver's LeaseDuration from the
// moment the request was sent. Fingerprint names the granter's ring: the
// lease counts only while the holder serves by the same ring. Departed
// counts the times the granter saw the requester's run leave its ring;
// Incarnation is the granter's run, whose count it is.
type leaseReply struct {
	Fingerprint uint64 `msgpack:"fp"`
	Departed    uint64 `msgpack:"d"`
	Incarnation string `msgpack:"i,omitempty"`
	// Past: the granter knows the cluster served before now
	// (ownership.past), so a young asker is not blank (Node.blank).
	Past bool `msgpack:"p,omitempty"`
}

// renewals are the lease requests in flight: concurrent renewals with one
// member share a call. used is when the node last served a request that
// needs leases, on its monotonic clock: leases are renewed in the
// background only while it serves.
type renewals struct {
	mu    sync.Mutex
	calls map[string]chan struct{} // closed when the call to that member ends
	used  atomic.Int64
}

// markLeaseUse records that the node serves, at now, a request that needs
// its leases. It writes the shared word only when the last mark is older
// than a tenth of the renewal period, so the hot path rarely writes it.
func (r *renewals) markLeaseUse(now, period time.Duration) {
	if now-time.Duration(r.used.Load()) > period/10 {
		r.used.Store(int64(now))
	}
}

// renewing reports whether the background renewal runs at now: the node
// served a request needing leases within the last lease. An idle node
// asks for none: the first request after a quiet spell asks for them on
// demand (the gate's rule 6), so an idle cluster sends no lease traffic.
func (r *renewals) renewing(now, lease time.Duration) bool {
	used := r.used.Load()
	return used != 0 && now-time.Duration(used) <= lease
}

// serveLease answers methodLease: it grants req.From a lease if the gate
// admits it (a member of this node's ring), or takes back the leases it
// holds.
func (n *Node) serveLease(_ context.Context, _ *ring.Table, body msgpack.RawMessage) (any, error) {
	var req leaseRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, fmt.Errorf("decode lease request: %w", err)
	}
	if req.Release {
		n.own.release(req.From, req.Incarnation, n.mono(), req.Held)
		return leaseReply{}, nil
	}
	return n.own.grant(req.From, req.Incarnation, n.mono())
}

// renewLease asks member name for a lease and records it. Concurrent
// renewals with one member share a call; a caller that joins one returns
// nil when it ends, and checks the lease itself.
func (n *Node) renewLease(ctx context.Context, tab *ring.Table, name string) error {
	n.renewals.mu.Lock()
	if ch, ok := n.renewals.calls[name]; ok {
		n.renewals.mu.Unlock()
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ch := make(chan struct{})
	n.renewals.calls[name] = ch
	n.renewals.mu.Unlock()
	defer func() {
		n.renewals.mu.Lock()
		delete(n.renewals.calls, name)
		n.renewals.mu.Unlock()
		close(ch)
	}()

	sent := n.mono()
	var reply leaseReply
	req := leaseRequest{From: n.cfg.Name, Incarnation: runOf(tab, n.cfg.Name).incarnation}
	if err := n.call(ctx, tab, name, methodLease, req, &reply); err != nil {
		return fmt.Errorf("lease from %s: %w", name, err)
	}
	answered := n.mono()
	if n.own.recordLease(name, reply, sent, answered) {
		// name saw this node leave its ring since it last asked: others
		// may have taken over and acknowledged writes without it. Every
		// owned partition is pulled again before it serves them.
		n.log.Warn("a member saw this node leave its ring; pulling every owned partition again", "member", name)
		n.stats.Rejoins.Add(1)
		n.reconcileAll(nil, true)
		n.own.recordLease(name, reply, sent, answered) // marked: now the lease counts
	}
	n.confirmStanding(tab)
	return nil
}

// confirmStanding ends the node's unconfirmed time after a pause once
// every other member of tab has granted it a lease since
// (ownership.confirm), and logs it.
func (n *Node) confirmStanding(tab *ring.Table) {
	if n.own.confirm(tab) {
		n.log.Info("every member granted a lease since the pause: this node knows whether it was declared dead")
	}
}

// renewLeases asks every lease seat of the ring (leaseSeats: today every
// other member) for a lease, without waiting for the answers, while the
// node serves requests that need them,
// or while it does not know whether it was declared dead during a pause
// (ownership.unconfirmed). It runs every LeaseDuration/6.
func (n *Node) renewLeases() {
	tab := n.own.table()
	if tab == nil || !tab.Has(n.cfg.Name) {
		return // not serving (yet, or any more): no lease needed
	}
	n.confirmStanding(tab)                                                          // a ring of this node alone has no one to ask
	serving := n.seats == nil && n.renewals.renewing(n.mono(), n.cfg.LeaseDuration) // with seats, the holder's grants are the leases (seatrun.go)
	if !serving && !n.own.unconfirmed() && !n.own.learningPast(tab, n.mono()) {
		return // idle: the next request asks on demand
	}
	for _, name := range n.own.seats(tab).names {
		go func() {
			ctx, cancel := n.withTimeout(context.Background(), n.cfg.LeaseDuration)
			defer cancel()
			if err := n.renewLease(ctx, tab, name); err != nil {
				n.log.Debug("lease renewal failed", "member", name, "err", err)
			}
		}()
	}
}

// releaseLeases gives back the leases this node holds, so that the members
// it leaves need not wait for them to lapse. The node must no longer serve
// from its copies: Drain calls it once its ring no longer has it.
func (n *Node) releaseLeases(ctx context.Context, tab *ring.Table) {
	n.own.dropLeases()
	held, run := n.own.trustedHeld(), n.own.incarnation()
	for _, m := range tab.Members() {
		if m.Name == n.cfg.Name {
			continue
		}
		if err := n.call(ctx, tab, m.Name, methodLease, leaseRequest{From: n.cfg.Name, Incarnation: run, Release: true, Held: held}, nil); err != nil {
			n.log.Debug("cannot give back a lease", "member", m.Name, "err", err)
		}
	}
}
