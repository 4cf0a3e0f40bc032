package replica

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/tandem-io/tandem/replica/peer"
	"github.com/tandem-io/tandem/ring"
)

// A write whose replication to the buddy ended without an answer (a call
// that timed out, a connection lost after the request went out) was not
// acknowledged and not stored here, but the buddy may have stored it: its
// answer may be what was lost. The session is then in doubt: its copies
// may differ, the buddy's a version ahead, and the buddy may already have
// shown that version to a reader that could not reach this node. A
// primary settles a doubt by reading the buddy's copy and keeping the
// newer (adoptBuddyCopy): before its next read or write of that session
// (a read it cannot settle is refused, never answered from the older
// copy), and every TouchInterval in the background, so a session used no
// more converges too.

// maxDoubts bounds the sessions a node keeps in doubt; past it a doubt is
// settled only by the session's next write or by a ring change's
// reconciliation.
const maxDoubts = 1 << 16

// doubtKey names a session in doubt.
type doubtKey struct {
	p  int
	id string
}

// doubts is the set of sessions in doubt.
type doubts struct {
	mu  sync.Mutex
	ids map[doubtKey]struct{}
	n   atomic.Int64 // len(ids), so that has, on every read and write, takes no lock while none is in doubt
}

// add records session id of partition p as in doubt.
func (d *doubts) add(p int, id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ids == nil {
		d.ids = map[doubtKey]struct{}{}
	}
	if len(d.ids) < maxDoubts {
		d.ids[doubtKey{p, id}] = struct{}{}
		d.n.Store(int64(len(d.ids)))
	}
}

// has reports whether session id of partition p is in doubt.
func (d *doubts) has(p int, id string) bool {
	if d.n.Load() == 0 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.ids[doubtKey{p, id}]
	return ok
}

// remove settles a doubt.
func (d *doubts) remove(p int, id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.ids, doubtKey{p, id})
	d.n.Store(int64(len(d.ids)))
}

// list returns the sessions in doubt.
func (d *doubts) list() []doubtKey {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]doubtKey, 0, len(d.ids))
	for k := range d.ids {
		out = append(out, k)
	}
	return out
}

// errAtBuddyOnly marks a write the buddy stored and this node did not
// (its ring changed before it could).
var errAtBuddyOnly = errors.New("stored by the buddy only")

// inDoubt reports whether a write error leaves the session in doubt: the
// buddy may hold, or holds, a version this node does not. Either no
// answer came from the buddy (as opposed to a refusal), or the buddy
// stored it and this node could not.
func inDoubt(err error) bool {
	return errors.Is(err, peer.ErrUnreachable) || errors.Is(err, errAtBuddyOnly)
}

// settleDoubt reads the buddy's copy of a session in doubt and keeps it if
// newer, when this node is still its primary; the caller holds the
// session's lock. A doubt this node can no longer settle (it owns the
// session no more) is dropped: the new owners reconcile.
func (n *Node) settleDoubt(ctx context.Context, p int, id string) {
	tab := n.own.table()
	if tab == nil || tab.Owners(p).Primary != n.cfg.Name || tab.Owners(p).Buddy == "" {
		n.doubts.remove(p, id)
		return
	}
	agreed, err := n.adoptBuddyCopy(ctx, tab, p, id)
	if err != nil {
		n.log.Debug("session in doubt not settled", "session", id, "err", err)
		return
	}
	if !agreed {
		// This node's copy is the newer: the doubt is settled, and the
		// buddy, told again, holds it too. If it cannot be told now, it
		// tells of its copy again (reportUnconfirmed) or the next write
		// replaces it.
		if err := n.sendOwnCopy(ctx, tab, p, id); err != nil {
			n.log.Debug("copy not sent to the buddy again", "session", id, "err", err)
		}
	}
	n.doubts.remove(p, id)
}

// sendOwnCopy replicates this node's copy of session id, newer than its
// buddy's, to the buddy and confirms it, so both owners hold it (F24). It
// goes only as a write would (the gate admits it as one: this node is the
// primary, not declared dead, with its quorum and leases), and never a
// copy from before a reported loss of the partition. A buddy that refuses
// it as stale holds a copy this node could not take (from before the
// partition was rebuilt): that is left as it is. The caller holds id's
// lock.
func (n *Node) sendOwnCopy(ctx context.Context, tab *ring.Table, p int, id string) error {
	if err := n.admit(ctx, admission{entry: entryWrite, tab: tab, p: p, id: id}); err != nil {
		return err
	}
	mine := n.store.get(p, id)
	if mine == nil || mine.Gen < n.store.lossGeneration(p) {
		return nil
	}
	buddy := tab.Owners(p).Buddy
	if err := n.replicate(ctx, tab, p, buddy, mine); err != nil {
		if errors.Is(err, ErrStale) {
			n.log.Debug("buddy holds a copy the primary could not take", "session", id, "buddy", buddy, "err", err)
			return nil
		}
		return err
	}
	n.confirms.add(buddy, p, mine)
	n.stats.CopiesResent.Add(1)
	return nil
}

// settled settles session id's doubt, if it is in doubt, and reports
// ErrUnavailable if it still is: the session's last write may be on one
// of its owners only, and the buddy cannot be reached, so neither a read
// nor a write's precondition may be judged against this node's copy. The
// caller holds id's lock.
func (n *Node) settled(ctx context.Context, p int, id string) error {
	if !n.doubts.has(p, id) {
		return nil
	}
	n.settleDoubt(ctx, p, id)
	if n.doubts.has(p, id) {
		return fmt.Errorf("%w: %s's last write may be on one of its owners only, and its buddy cannot be reached", ErrUnavailable, id)
	}
	return nil
}

// settleDoubts settles every session in doubt it can; it runs every
// TouchInterval.
func (n *Node) settleDoubts() {
	for _, k := range n.doubts.list() {
		ctx, cancel := n.withTimeout(context.Background(), n.cfg.CallTimeout)
		unlock := n.store.lock(k.id)
		n.settleDoubt(ctx, k.p, k.id)
		unlock()
		cancel()
	}
}
