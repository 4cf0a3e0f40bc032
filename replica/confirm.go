package replica

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/ring"
)

// A buddy stores a replica before its primary stores the write, and the
// primary stores it, and acknowledges it, only once the buddy has
// answered. Until then the write may never take effect: the buddy's
// answer may be lost (the session is then in doubt at the primary,
// doubt.go), or the primary may fail or its ring change before it stores
// the write. A buddy that showed such a copy to a reader who could not
// reach the primary would show a version that may then be gone: the
// primary settles its doubt against whichever node is the buddy by then,
// and a buddy declared dead replaces its copies with an owner's when it
// returns (chaos finding F23).
//
// So a buddy marks each replica it stores unconfirmed, in the same step
// (store.putReplica), and does not show it to readers (readAsBuddy
// refuses it) until its primary confirms it. Once the primary has stored
// a write, it queues the confirmation for its buddy (confirmQueue); the
// confirmations go with its next replica to that buddy
// (replicateRequest.Confirmed) or, when none goes within confirmDelay, on
// their own (methodConfirm). A confirmation that cannot be delivered costs
// only the buddy's readers of that session, who are refused while the
// primary is out of their reach, until its next write: a copy is never
// shown unconfirmed. A hand-off, a new owner's fetch and a primary
// settling a doubt read every copy, unconfirmed or not: a new owner takes
// the newest, which may have been acknowledged.

// methodConfirm carries a primary's confirmations to a buddy.
const methodConfirm = "confirm"

// maxConfirms bounds the confirmations a node keeps for one buddy; past it
// a confirmation is dropped (the buddy refuses that copy's readers until
// the session's next write).
const maxConfirms = 1 << 16

// maxConfirmBatch bounds the confirmations sent in one request.
const maxConfirmBatch = 4096

// confirmDelay is how long queued confirmations wait for a replica to the
// same buddy to carry them before they go on their own. Under load a
// replica goes to each buddy far more often than that, and carries nearly
// all of them; sent at once, each write cost a request more (about a
// tenth of the throughput, docs/BENCHMARKS.md). The buddy refuses that
// session's readers for as long, only while they cannot reach the
// primary.
const confirmDelay = 5 * time.Millisecond

// confirmItem says the primary stored the copy Mark of session ID.
type confirmItem struct {
	Partition int      `msgpack:"p"`
	ID        string   `msgpack:"id"`
	Mark      copyMark `msgpack:"m"`
}

// confirmRequest is a batch of confirmations from primary From.
type confirmRequest struct {
	From  string        `msgpack:"f"`
	Items []confirmItem `msgpack:"i"`
}

// confirmQueue holds the confirmations a primary has yet to send, by
// buddy.
type confirmQueue struct {
	mu      sync.Mutex
	items   map[string][]confirmItem
	sending map[string]bool // buddies a batch is on its way to
	ready   chan struct{}   // signalled when confirmations are queued
}

// newConfirmQueue returns an empty queue.
func newConfirmQueue() *confirmQueue {
	return &confirmQueue{items: map[string][]confirmItem{}, sending: map[string]bool{}, ready: make(chan struct{}, 1)}
}

// add queues the confirmation that this node stored copy s of partition
// p, for buddy.
func (q *confirmQueue) add(buddy string, p int, s *Session) {
	q.mu.Lock()
	if queued := q.items[buddy]; len(queued) < maxConfirms {
		q.items[buddy] = append(queued, confirmItem{Partition: p, ID: s.ID, Mark: markOf(s)})
	}
	q.mu.Unlock()
	q.wake()
}

// requeue queues items for buddy, as far as the bound allows, and wakes
// the sender.
func (q *confirmQueue) requeue(buddy string, items []confirmItem) {
	q.mu.Lock()
	queued := q.items[buddy]
	room := maxConfirms - len(queued)
	q.items[buddy] = append(queued, items[:min(len(items), max(room, 0))]...)
	q.mu.Unlock()
	q.wake()
}

// wake tells the sender confirmations are queued.
func (q *confirmQueue) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// startSending reports whether no batch is on its way to buddy, and if
// so marks one as on its way, until doneSending.
func (q *confirmQueue) startSending(buddy string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.sending[buddy] {
		return false
	}
	q.sending[buddy] = true
	return true
}

// doneSending marks buddy's batch as delivered or given up.
func (q *confirmQueue) doneSending(buddy string) {
	q.mu.Lock()
	delete(q.sending, buddy)
	q.mu.Unlock()
}

// take returns and forgets up to maxConfirmBatch of buddy's queued
// confirmations.
func (q *confirmQueue) take(buddy string) []confirmItem {
	q.mu.Lock()
	defer q.mu.Unlock()
	queued := q.items[buddy]
	if len(queued) <= maxConfirmBatch {
		delete(q.items, buddy)
		return queued
	}
	q.items[buddy] = queued[maxConfirmBatch:]
	return queued[:maxConfirmBatch:maxConfirmBatch]
}

// buddies returns the buddies confirmations are queued for.
func (q *confirmQueue) buddies() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]string, 0, len(q.items))
	for b := range q.items {
		out = append(out, b)
	}
	return out
}

// confirmLoop sends queued confirmations confirmDelay after they are
// queued, those no replica carried meanwhile, and retries those not
// delivered every TouchInterval, until the node closes.
func (n *Node) confirmLoop() {
	defer n.done.Done()
	for {
		t := n.cfg.Clock.NewTimer(n.cfg.TouchInterval)
		select {
		case <-n.stop:
			t.Stop()
			return
		case <-n.confirms.ready:
			t.Stop()
			t = n.cfg.Clock.NewTimer(confirmDelay)
			select {
			case <-n.stop:
				t.Stop()
				return
			case <-t.Chan():
			}
		case <-t.Chan():
		}
		n.sendConfirms()
	}
}

// sendConfirms sends one batch of queued confirmations to each buddy they
// are queued for and no batch is already on its way to, each on its own,
// so a buddy slow to answer delays only its own; a batch not delivered is
// queued again. Those for a node no longer in the ring are dropped: it
// holds no copy it may show until it has caught up.
func (n *Node) sendConfirms() {
	tab := n.own.table()
	if tab == nil {
		return
	}
	for _, buddy := range n.confirms.buddies() {
		if !n.confirms.startSending(buddy) {
			continue
		}
		items := n.confirms.take(buddy)
		if _, ok := tab.Member(buddy); !ok || len(items) == 0 {
			n.confirms.doneSending(buddy)
			continue
		}
		n.done.Add(1)
		go func() {
			defer n.done.Done()
			defer n.confirms.doneSending(buddy)
			ctx, cancel := n.withTimeout(context.Background(), n.cfg.CallTimeout)
			defer cancel()
			if err := n.call(ctx, tab, buddy, methodConfirm, confirmRequest{From: n.cfg.Name, Items: items}, nil); err != nil {
				n.log.Debug("confirmations not delivered", "buddy", buddy, "copies", len(items), "err", err)
				n.confirms.requeue(buddy, items)
			}
		}()
	}
}

// serveConfirm answers methodConfirm.
func (n *Node) serveConfirm(_ context.Context, _ *ring.Table, body msgpack.RawMessage) (any, error) {
	var req confirmRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, fmt.Errorf("decode confirm: %w", err)
	}
	n.applyConfirms(req.Items)
	return empty{}, nil
}

// applyConfirms removes the marks the items confirm (store.confirm).
func (n *Node) applyConfirms(items []confirmItem) {
	for _, it := range items {
		if it.Partition >= 0 && it.Partition < len(n.store.parts) {
			n.store.confirm(it.Partition, it.ID, it.Mark)
		}
	}
}
