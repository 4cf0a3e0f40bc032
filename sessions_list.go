package tandem

import "context"

// SessionIDs returns the ids of every live session in the cluster, sorted:
// for admin pages, exports and adapters that must enumerate sessions
// (contrib/scs's IterableStore). It asks every member for the ids of all
// the copies it holds, primary and buddy alike, and merges them, so a
// session is listed even if one of its owners is down.
//
// Its cost grows with the cluster's size: one pass over every member's
// store, about twice the session count in ids over the network (pages of
// at least 10 000 ids, each one call bounded by Config.Replica's call
// timeout), and every id held in memory at once. It is an administrative
// scan, not something to call per request. A session written or deleted
// meanwhile may or may not be listed. It fails if a member cannot be
// asked, unless the member is unavailable and others answered.
func (n *Node) SessionIDs(ctx context.Context) ([]string, error) {
	return n.replica.SessionIDs(ctx)
}
