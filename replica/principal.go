package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/ring"
)

// methodPrincipal asks a node for a principal's sessions.
const methodPrincipal = "principal"

// principalRequest asks a node for the live sessions of a principal among
// the copies it holds, primary or buddy.
type principalRequest struct {
	Principal string `msgpack:"pr"`
}

// principalReply lists session ids.
type principalReply struct {
	IDs []string `msgpack:"ids"`
}

// sessionsOf returns the ids of live sessions of principal among this
// node's copies, found through the principal index.
func (n *Node) sessionsOf(principal string) []string {
	now := n.wall()
	var ids []string
	for p := range n.store.parts {
		for _, id := range n.store.ofPrincipal(p, principal) {
			if n.store.get(p, id).live(now) {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// InvalidatePrincipal deletes every session of principal in the cluster —
// "log this user out everywhere" — and returns how many it deleted. It asks
// every member for the principal's sessions (each answers from its index,
// primary and buddy copies alike), then deletes each through its primary.
//
// It answers only what it can vouch for: a node cut off from the
// majority (the gate's member rule) refuses, and so does a listing that
// a member of the ring did not answer, since that member may hold the
// only copy still to be handed over. Either is ErrUnavailable, and the
// caller retries: a success means that every session of principal
// written before the call is gone. (Chaos finding F16: a node cut off
// from the others answered a logout with "0 deleted" while the session
// lived on.)
func (n *Node) InvalidatePrincipal(ctx context.Context, principal string) (int, error) {
	if principal == "" {
		return 0, fmt.Errorf("%w: empty principal", ErrInvalid)
	}
	tab := n.own.table()
	if tab == nil {
		return 0, fmt.Errorf("%w: node %s has not joined a ring yet", ErrUnavailable, n.cfg.Name)
	}
	if err := n.admit(ctx, admission{entry: entryRoute, tab: tab}); err != nil {
		return 0, fmt.Errorf("log out %q: %w", principal, err)
	}
	var mu sync.Mutex
	found := map[string]bool{}
	var errs []error
	var wg sync.WaitGroup
	for _, m := range tab.Members() {
		wg.Go(func() {
			var ids []string
			if m.Name == n.cfg.Name {
				ids = n.sessionsOf(principal)
			} else {
				var reply principalReply
				if err := n.call(ctx, tab, m.Name, methodPrincipal, principalRequest{Principal: principal}, &reply); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("list sessions of %q on %s: %w", principal, m.Name, err))
					mu.Unlock()
					return
				}
				ids = reply.IDs
			}
			mu.Lock()
			for _, id := range ids {
				found[id] = true
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	ids := make([]string, 0, len(found))
	for id := range found {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	deleted := 0
	for _, id := range ids {
		_, err := n.Do(ctx, &Op{Kind: OpDelete, ID: id})
		switch {
		case err == nil:
			deleted++
		case errors.Is(err, ErrNotFound):
		default:
			errs = append(errs, fmt.Errorf("delete %s of %q: %w", id, principal, err))
		}
	}
	if len(errs) > 0 {
		return deleted, fmt.Errorf("%w: log out %q: %w", ErrUnavailable, principal, errors.Join(errs...))
	}
	return deleted, nil
}

// servePrincipal answers methodPrincipal.
func (n *Node) servePrincipal(_ context.Context, _ *ring.Table, body msgpack.RawMessage) (any, error) {
	var req principalRequest
	if err := decodeBounded(body, &req); err != nil {
		return nil, fmt.Errorf("decode principal request: %w", err)
	}
	return principalReply{IDs: n.sessionsOf(req.Principal)}, nil
}
