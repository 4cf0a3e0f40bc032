package replica

import (
	"context"
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/ring"
)

// Expiry is the primary's to decide, and touches are batched: a read on
// the primary moves the idle deadline at once, and the buddy hears of it
// within TouchInterval (methodTouch). The primary removes what expired and
// tells the buddy which versions it removed (methodExpire).

// methodTouch carries a batch of last-access times to buddies.
const methodTouch = "touch"

// touchItem is one session's last access.
type touchItem struct {
	Partition int       `msgpack:"p"`
	ID        string    `msgpack:"id"`
	At        time.Time `msgpack:"at"`
}

// touchRequest is a batch of last-access times for a buddy.
type touchRequest struct {
	Items []touchItem `msgpack:"i"`
}

// methodExpire tells a buddy which versions its primary expired.
const methodExpire = "expire"

// expireItem names one expired version of a session.
type expireItem struct {
	Partition int    `msgpack:"p"`
	ID        string `msgpack:"id"`
	Version   uint64 `msgpack:"v"`
}

// expireRequest is a batch of expired versions for a buddy.
type expireRequest struct {
	Items []expireItem `msgpack:"i"`
}

// sendTouches sends the last accesses the primary queued (store.touch) to
// each partition's buddy, in one batch per buddy. It runs every
// TouchInterval, so a buddy's idle deadlines lag the primary's by at most
// that much and no read waits for a replicated touch.
func (n *Node) sendTouches() {
	tab := n.own.table()
	if tab == nil {
		return
	}
	batches := map[string][]touchItem{}
	for p := range n.store.parts {
		items := n.store.takeTouches(p)
		if buddy := tab.Owners(p).Buddy; len(items) > 0 && buddy != "" && buddy != n.cfg.Name {
			batches[buddy] = append(batches[buddy], items...)
		}
	}
	for buddy, items := range batches {
		ctx, cancel := n.withTimeout(context.Background(), n.cfg.CallTimeout)
		if err := n.call(ctx, tab, buddy, methodTouch, touchRequest{Items: items}, nil); err != nil {
			n.log.Debug("touch batch not delivered", "buddy", buddy, "sessions", len(items), "err", err)
		}
		cancel()
	}
}

// serveTouch answers methodTouch: it moves the buddy copies' last accesses.
func (n *Node) serveTouch(_ context.Context, _ *ring.Table, body msgpack.RawMessage) (any, error) {
	var req touchRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, fmt.Errorf("decode touch: %w", err)
	}
	for _, it := range req.Items {
		if it.Partition >= 0 && it.Partition < len(n.store.parts) {
			n.store.touch(it.Partition, it.ID, it.At, false)
		}
	}
	return empty{}, nil
}

// serveExpire answers methodExpire.
func (n *Node) serveExpire(_ context.Context, _ *ring.Table, body msgpack.RawMessage) (any, error) {
	var req expireRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, fmt.Errorf("decode expire: %w", err)
	}
	n.applyExpiry(req.Items)
	return empty{}, nil
}

// sweep removes what has expired. The primary decides: it removes its
// expired copies and tells each buddy which versions it removed. A buddy's
// own idle deadlines may lag the primary's (touches are batched), so it
// removes buddy copies by itself only BuddyExpiryGrace after they expire,
// for the case where the primary died before telling it.
func (n *Node) sweep() {
	tab := n.own.table()
	if tab == nil {
		return
	}
	now := n.wall()
	expired := map[string][]expireItem{}
	for p := range n.store.parts {
		o := tab.Owners(p)
		primary := o.Primary == n.cfg.Name
		removed := n.store.sweep(p, func(s *Session) bool {
			switch {
			case s.Deleted:
				return now.Sub(s.LastAccess) > n.cfg.TombstoneTTL
			case primary:
				if s.Expired(now) {
					if o.Buddy != "" {
						expired[o.Buddy] = append(expired[o.Buddy], expireItem{Partition: p, ID: s.ID, Version: s.Version})
					}
					return true
				}
				return false
			default:
				return s.Expired(now.Add(-n.cfg.BuddyExpiryGrace))
			}
		})
		n.stats.Expired.Add(uint64(removed))
	}
	for buddy, items := range expired {
		ctx, cancel := n.withTimeout(context.Background(), n.cfg.CallTimeout)
		if err := n.call(ctx, tab, buddy, methodExpire, expireRequest{Items: items}, nil); err != nil {
			n.log.Debug("expiry batch not delivered; the buddy will expire them after its grace", "buddy", buddy, "sessions", len(items), "err", err)
		}
		cancel()
	}
}

// applyExpiry removes the buddy copies the primary expired, unless a newer
// version has arrived since.
func (n *Node) applyExpiry(items []expireItem) {
	for _, it := range items {
		if it.Partition < 0 || it.Partition >= len(n.store.parts) {
			continue
		}
		removed := n.store.sweep(it.Partition, func(s *Session) bool { return s.ID == it.ID && s.Version <= it.Version })
		n.stats.Expired.Add(uint64(removed))
	}
}
