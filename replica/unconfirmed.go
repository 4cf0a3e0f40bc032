package replica

import (
	"context"
	"fmt"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/ring"
)

// A confirmation is lost only with its primary's queue (the primary failed
// or restarted) or when the primary stopped being one; and a copy the
// primary never stored stays unconfirmed for good when the primary's
// doubt about it ended without it: the doubt is settled against whichever
// node is the buddy by then, or dropped when the ring moves the session
// elsewhere and back (chaos finding F24). Either way the owners disagree
// after the cluster settled: should the primary fail, the buddy would
// serve a version the primary never had, or lack one it had.
//
// So a buddy that finds a copy still unconfirmed a whole TouchInterval
// after it last looked tells the copy's primary (methodUnconfirmed). The
// primary confirms it at once if its own copy is that one; otherwise it
// takes the session into doubt, and settles it as it settles any doubt
// (settleDoubt): it adopts the buddy's copy if that is newer, and sends
// its own to the buddy if its own is, so both owners hold one copy,
// confirmed. Readers are unaffected until then: the buddy does not show
// the copy, and the primary settles the doubt before its next read of the
// session.

// methodUnconfirmed tells a primary of copies its buddy has held
// unconfirmed for a while.
const methodUnconfirmed = "unconfirmed"

// unconfirmedRequest lists the copies buddy From holds unconfirmed.
type unconfirmedRequest struct {
	From  string        `msgpack:"f"`
	Items []confirmItem `msgpack:"i"`
}

// unconfirmedWatch remembers the unconfirmed copies a buddy saw when it
// last looked, so that it tells their primaries only of those unconfirmed
// since.
type unconfirmedWatch struct {
	seen map[doubtKey]copyMark
}

// overdue returns the copies in now that were unconfirmed with the same
// mark when it last looked, and remembers now for the next look.
func (w *unconfirmedWatch) overdue(now map[doubtKey]copyMark) []doubtKey {
	var out []doubtKey
	for k, m := range now {
		if prev, ok := w.seen[k]; ok && prev == m {
			out = append(out, k)
		}
	}
	w.seen = now
	return out
}

// reportUnconfirmed tells each primary of the copies of its partitions
// this node, their buddy, has held unconfirmed since it last looked; it
// runs every TouchInterval. A node that does not know its standing yet
// (ownership.unconfirmed, or no lease since it may have been declared
// dead: knowsItsStanding) tells nothing, nor of partitions whose copies
// it is to replace (declared dead, or a hand-off given up): those copies
// may be from before a loss the others reported.
func (n *Node) reportUnconfirmed() {
	tab := n.own.table()
	if tab == nil || n.own.unconfirmed() {
		return
	}
	byPrimary := map[string][]confirmItem{}
	now := n.store.unconfirmedMarks()
	st := n.own.load()
	for _, k := range n.watch.overdue(now) {
		o := tab.Owners(k.p)
		if o.Buddy != n.cfg.Name || o.Primary == "" || o.Primary == n.cfg.Name || len(byPrimary[o.Primary]) >= maxConfirmBatch {
			continue
		}
		if lostCopiesGo(st.parts[k.p]) {
			continue // declared dead, or given up: its copies go when it catches up
		}
		byPrimary[o.Primary] = append(byPrimary[o.Primary], confirmItem{Partition: k.p, ID: k.id, Mark: now[k]})
	}
	if len(byPrimary) == 0 {
		return
	}
	ctx, cancel := n.withTimeout(context.Background(), n.cfg.CallTimeout)
	defer cancel()
	if !n.knowsItsStanding(ctx, tab) {
		return // it may have been declared dead, and not know it yet
	}
	var wg sync.WaitGroup
	for primary, items := range byPrimary {
		wg.Go(func() {
			if err := n.call(ctx, tab, primary, methodUnconfirmed, unconfirmedRequest{From: n.cfg.Name, Items: items}, nil); err != nil {
				n.log.Debug("unconfirmed copies not reported", "primary", primary, "copies", len(items), "err", err)
				return
			}
			n.stats.UnconfirmedReported.Add(uint64(len(items)))
		})
	}
	wg.Wait()
}

// serveUnconfirmed answers methodUnconfirmed: for each copy the buddy
// holds unconfirmed in a partition this node is the primary of, with the
// asker its buddy, it confirms the copy if its own is that one, and
// otherwise takes the session into doubt (settleDoubts settles it).
func (n *Node) serveUnconfirmed(_ context.Context, tab *ring.Table, body msgpack.RawMessage) (any, error) {
	var req unconfirmedRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, fmt.Errorf("decode unconfirmed: %w", err)
	}
	for _, it := range req.Items {
		if it.Partition < 0 || it.Partition >= len(n.store.parts) || ValidateID(it.ID) != nil || tab.Partition(it.ID) != it.Partition {
			continue
		}
		if o := tab.Owners(it.Partition); o.Primary != n.cfg.Name || o.Buddy != req.From {
			continue // not this pair's copy to settle: the next hand-off does
		}
		if mine := n.store.get(it.Partition, it.ID); mine != nil && markOf(mine) == it.Mark {
			n.confirms.add(req.From, it.Partition, mine)
			continue
		}
		n.doubts.add(it.Partition, it.ID)
	}
	return empty{}, nil
}
