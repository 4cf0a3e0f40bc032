package replica

import (
	"context"
)

// queueTouch records a last access to send to buddy with the next batch.
func (n *Node) queueTouch(buddy string, it touchItem) {
	n.mu.Lock()
	n.touches[buddy] = append(n.touches[buddy], it)
	n.mu.Unlock()
}

// sendTouches sends the batched last accesses to buddies. It runs every
// TouchInterval, so a buddy's idle deadlines lag the primary's by at most
// that much and no read waits for a replicated touch.
func (n *Node) sendTouches() {
	n.mu.Lock()
	batches := n.touches
	n.touches = map[string][]touchItem{}
	n.mu.Unlock()
	tab := n.table.Load()
	for buddy, items := range batches {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.CallTimeout)
		if err := n.call(ctx, tab, buddy, methodTouch, touchRequest{Items: items}, nil); err != nil {
			n.log.Debug("touch batch not delivered", "buddy", buddy, "sessions", len(items), "err", err)
		}
		cancel()
	}
}

// sweep removes what has expired. The primary decides: it removes its
// expired copies and tells each buddy which versions it removed. A buddy's
// own idle deadlines may lag the primary's (touches are batched), so it
// removes backup copies by itself only BackupExpiryGrace after they expire,
// for the case where the primary died before telling it.
func (n *Node) sweep() {
	tab := n.table.Load()
	if tab == nil {
		return
	}
	now := n.cfg.Now()
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
				return s.Expired(now.Add(-n.cfg.BackupExpiryGrace))
			}
		})
		n.stats.Expired.Add(uint64(removed))
	}
	for buddy, items := range expired {
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.CallTimeout)
		if err := n.call(ctx, tab, buddy, methodExpire, expireRequest{Items: items}, nil); err != nil {
			n.log.Debug("expiry batch not delivered; the buddy will expire them after its grace", "buddy", buddy, "sessions", len(items), "err", err)
		}
		cancel()
	}
}

// applyExpiry removes the backup copies the primary expired, unless a newer
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
