package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/ring"
)

// methodList asks a node for the ids of the live sessions it holds.
const methodList = "list"

// listPageIDs bounds one list reply: a node answers whole partitions from
// the one asked for until it has at least this many ids (about 250 KB of
// reply at 22-character ids), and says where to go on.
const listPageIDs = 10000

// listRequest asks for the live session ids of partitions From onwards.
type listRequest struct {
	From int `msgpack:"fr"`
}

// listReply lists session ids; Next is the partition to ask for next, or
// -1 when the node has answered them all.
type listReply struct {
	IDs  []string `msgpack:"ids"`
	Next int      `msgpack:"nx"`
}

// liveIDs returns the ids of the live sessions of partition p this node
// holds a copy of.
func (s *store) liveIDs(p int, now time.Time) []string {
	part := s.parts[p]
	part.mu.RLock()
	defer part.mu.RUnlock()
	var out []string
	for id, sess := range part.sessions {
		if sess.live(now) {
			out = append(out, id)
		}
	}
	return out
}

// listPage returns the live ids of partitions from onwards, whole
// partitions until at least listPageIDs, and the partition to go on from
// (-1 at the end).
func (n *Node) listPage(from int) listReply {
	now := n.wall()
	var reply listReply
	p := max(from, 0)
	for ; p < len(n.store.parts) && len(reply.IDs) < listPageIDs; p++ {
		reply.IDs = append(reply.IDs, n.store.liveIDs(p, now)...)
	}
	reply.Next = p
	if p >= len(n.store.parts) {
		reply.Next = -1
	}
	return reply
}

// SessionIDs returns the ids of every live session in the cluster, sorted.
// It asks every member for the ids of all the copies it holds, primary
// and buddy alike, so a session is listed even if one of its two owners
// cannot be reached, and merges them. The cost is one pass over every
// member's store and about twice the cluster's session count in ids over
// the wire, in pages of whole partitions (at least listPageIDs ids each,
// one call per page per member), held at once in the caller's memory: an
// administrative scan, not something to call per request. A session
// written or deleted meanwhile may or may not be listed.
//
// It fails if a member cannot be asked, unless that member is unavailable
// and another answered: each session has a copy elsewhere unless two
// members are down at once.
func (n *Node) SessionIDs(ctx context.Context) ([]string, error) {
	tab := n.own.table()
	if tab == nil {
		return nil, fmt.Errorf("%w: node %s has not joined a ring yet", ErrUnavailable, n.cfg.Name)
	}
	var mu sync.Mutex
	found := map[string]struct{}{}
	var errs []error
	var wg sync.WaitGroup
	members := tab.Members()
	for _, m := range members {
		wg.Go(func() {
			for from := 0; from >= 0; {
				var reply listReply
				if m.Name == n.cfg.Name {
					reply = n.listPage(from)
				} else if err := n.call(ctx, tab, m.Name, methodList, listRequest{From: from}, &reply); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("list sessions on %s: %w", m.Name, err))
					mu.Unlock()
					return
				}
				if reply.Next >= 0 && reply.Next <= from {
					mu.Lock()
					errs = append(errs, fmt.Errorf("list sessions on %s: %w: page from %d goes on at %d", m.Name, ErrInvalid, from, reply.Next))
					mu.Unlock()
					return
				}
				mu.Lock()
				for _, id := range reply.IDs {
					found[id] = struct{}{}
				}
				mu.Unlock()
				from = reply.Next
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		if len(errs) >= len(members) {
			return nil, errors.Join(errs...)
		}
		for _, err := range errs {
			if !errors.Is(err, ErrUnavailable) {
				return nil, errors.Join(errs...)
			}
		}
	}
	ids := make([]string, 0, len(found))
	for id := range found {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// serveList answers methodList.
func (n *Node) serveList(_ context.Context, _ *ring.Table, body msgpack.RawMessage) (any, error) {
	var req listRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, fmt.Errorf("decode list request: %w", err)
	}
	return n.listPage(req.From), nil
}
