package replica

import (
	"context"
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/ring"
)

// A node that stops running for a while — SIGSTOP, a VM freeze, a long
// stall — may have been declared dead meanwhile, its buddies promoted and
// writes acknowledged without it. When it runs again its own ring has not
// changed, so nothing else would tell it that its copies are stale. The
// node therefore keeps a heartbeat; a gap in it longer than PauseThreshold
// makes the node reconcile every partition it owns with the other members
// before serving it again.

// checkPause notices when the node was not running for longer than
// PauseThreshold and records that it runs now. A node that was paused
// quarantines itself for PauseQuarantine: its own membership view is
// unsettled too (it heard from nobody while paused and may briefly
// suspect everyone, so its ring may shrink and the members it must
// reconcile with drop out of it). Meanwhile it serves nothing from its
// copies — callers read from the buddy and retry writes — and it reconciles
// every owned partition with the members it sees, again when the
// quarantine ends.
func (n *Node) checkPause() {
	now := n.mono()
	for {
		last := n.beat.Load()
		gap := now - time.Duration(last)
		if last == 0 || gap <= n.cfg.PauseThreshold {
			if time.Duration(last) >= now || n.beat.CompareAndSwap(last, int64(now)) {
				break // never moves the heartbeat back
			}
			continue
		}
		// Quarantine before the heartbeat looks fresh again: a caller that
		// runs concurrently and sees the new heartbeat must also see the
		// quarantine, or it would serve a stale copy in between.
		n.own.startUnconfirmed(now)
		n.own.setQuarantine(now + n.cfg.PauseQuarantine)
		n.seatsPaused()
		if !n.beat.CompareAndSwap(last, int64(now)) {
			continue // another caller took this gap; it reports and reconciles
		}
		n.log.Warn("node was paused; quarantined while it reconciles", "gap", gap, "quarantine", n.cfg.PauseQuarantine)
		n.stats.Pauses.Add(1)
		n.reconcileAll(nil, false)
		// Ask every member at once whether it declared this node dead
		// (ownership.confirm); renewLeases asks again until all have.
		go n.renewLeases()
		return
	}
	if q := time.Duration(n.own.quarantine.Load()); q != 0 && now >= q && n.own.quarantine.CompareAndSwap(int64(q), 0) {
		n.log.Info("pause quarantine over; reconciling with the members seen now")
		n.reconcileAll(nil, false)
	}
}

// reconcileAll marks every partition this node owns for reconciliation
// with sources (every other member, when nil) and wakes the transfer loop.
// With distrust, the node's own copies may be stale (it was declared
// dead): each partition is handed over again (ownership.reconcile).
func (n *Node) reconcileAll(sources []string, distrust bool) {
	if n.own.reconcile(sources, distrust, n.mono()) {
		n.wake()
	}
}

// methodReconcile tells a node that reappeared to reconcile with the
// sender.
const methodReconcile = "reconcile"

// reconcileRequest tells a node that the sender saw it (re)appear, so the
// node may have missed writes the sender holds.
type reconcileRequest struct {
	From string `msgpack:"f"`
}

// tellAppeared asks each member that appeared in this node's ring to
// reconcile with it: a member that was declared dead without knowing it
// (a gossip blip, a pause too short to notice) learns its copies may be
// stale.
func (n *Node) tellAppeared(tab *ring.Table, appeared []string) {
	for _, name := range appeared {
		ctx, cancel := n.withTimeout(context.Background(), n.cfg.CallTimeout)
		if err := n.call(ctx, tab, name, methodReconcile, reconcileRequest{From: n.cfg.Name}, nil); err != nil {
			n.log.Debug("cannot ask a returning member to reconcile", "member", name, "err", err)
		}
		cancel()
	}
}

// serveReconcile answers methodReconcile: the sender saw this node
// reappear, so it reconciles every owned partition with the sender.
func (n *Node) serveReconcile(_ context.Context, _ *ring.Table, body msgpack.RawMessage) (any, error) {
	var req reconcileRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, fmt.Errorf("decode reconcile: %w", err)
	}
	n.reconcileAll([]string{req.From}, false)
	return empty{}, nil
}
