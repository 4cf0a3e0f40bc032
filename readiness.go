package tandem

import (
	"fmt"

	"github.com/tandem-io/tandem/replica"
)

// Reasons a node is not ready (Readiness.Reason).
const (
	// NotReadyJoining: the node has no ring yet, or the other members do
	// not yet serve by the ring it serves by (a node restarted on new
	// addresses waits until they stop routing to its old incarnation).
	NotReadyJoining = "joining"
	// NotReadyCatchingUp: the node owns partitions it has not been handed
	// yet; it serves them by fetching each session from its previous
	// owners until the hand-off is done.
	NotReadyCatchingUp = "catching_up"
	// NotReadyDraining: the node is closing: it hands its copies to the
	// other owners and leaves.
	NotReadyDraining = "draining"
	// NotReadyTooFewMembers: the ring has fewer members than
	// Replica.MinMembers, so the node serves nothing (the smaller side of
	// a network cut, or a cluster still starting).
	NotReadyTooFewMembers = "too_few_members"
	// NotReadyWitness: the node is a witness (Config.Witness): it holds
	// no sessions and takes no requests; it counts toward the quorum and
	// grants leases. A balancer leaves it out.
	NotReadyWitness = "witness"
	// NotReadySeats: the seats guard the node's leases (Replica.Seats)
	// and it holds no live grants from a majority of them under its
	// ring (a cluster still founding its seats, the smaller side of a
	// cut), or its grants were revoked for good: it was taken for
	// departed, and serves again only once restarted.
	NotReadySeats = "seats"
)

// Readiness says whether a node is ready and, if it is not, why.
// httpapi serves it as GET /readyz.
type Readiness struct {
	// Ready is Node.Ready.
	Ready bool `json:"ready"`
	// Reason is one of the NotReady constants, "" when Ready.
	Reason string `json:"reason,omitempty"`
	// Detail says the same in a sentence, with the figures.
	Detail string `json:"detail,omitempty"`
	// Members counts the members of the ring the node serves by (0
	// without one); MinMembers is the smallest ring it serves in.
	Members    int `json:"members"`
	MinMembers int `json:"min_members"`
	// Handoffs counts owned partitions still to be handed to the node.
	Handoffs int `json:"handoffs"`
}

// Readiness reports whether the node is ready (Node.Ready) and why not.
func (n *Node) Readiness() Readiness {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	return readinessOf(closed, n.agreed.Load(), n.cfg.Witness, n.replica.Readiness())
}

// readinessOf decides readiness from the node's lifecycle and the
// engine's state; the first reason that holds is given.
func readinessOf(closed, agreed, witness bool, r replica.Readiness) Readiness {
	out := Readiness{Members: r.Members, MinMembers: r.MinMembers, Handoffs: r.Handoffs}
	switch {
	case closed:
		out.Reason, out.Detail = NotReadyDraining, "the node is leaving the cluster"
	case !r.HasRing:
		out.Reason, out.Detail = NotReadyJoining, "the node has no ring yet"
	case r.Members < r.MinMembers:
		out.Reason, out.Detail = NotReadyTooFewMembers, fmt.Sprintf("the ring has %d members, fewer than the %d the node serves in", r.Members, r.MinMembers)
	case !agreed:
		out.Reason, out.Detail = NotReadyJoining, "waiting for the other members to serve by this node's ring"
	case r.Handoffs > 0:
		out.Reason, out.Detail = NotReadyCatchingUp, fmt.Sprintf("%d owned partitions still to be handed over", r.Handoffs)
	case witness:
		out.Reason, out.Detail = NotReadyWitness, "the node is a witness: it holds no sessions and takes no requests; it counts toward the quorum and grants leases"
	case r.Seated && r.SeatsRevoked:
		out.Reason, out.Detail = NotReadySeats, "the node was taken for departed and its seat grants revoked for good: it serves again only once restarted"
	case r.Seated && !r.SeatsLive:
		out.Reason, out.Detail = NotReadySeats, "the node holds no live grants from a majority of its seats under its ring"
	default:
		out.Ready = true
	}
	return out
}
