package tandem

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tandem-io/tandem/cluster"
	"github.com/tandem-io/tandem/replica"
	"github.com/tandem-io/tandem/ring"
)

// Member is a node of the ring, as Node.Owners names a session's owners.
type Member struct {
	// Name identifies the node; it is unique in the cluster.
	Name string
	// Peer is the address of the node's replication and forwarding
	// listener (Node.PeerAddr).
	Peer string
	// HTTP is the address of the node's HTTP API, if it has one
	// (Config.HTTPAddr).
	HTTP string
}

// memberOf returns the ring's member as the API names it.
func memberOf(m ring.Member) Member {
	return Member{Name: m.Name, Peer: m.Peer, HTTP: m.HTTP}
}

// Owners names the primary and buddy of session id in the node's ring,
// with the ring's epoch.
func (n *Node) Owners(id string) (primary, buddy Member, epoch uint64, err error) {
	tab := n.replica.Table()
	if tab == nil {
		return Member{}, Member{}, 0, fmt.Errorf("%w: %s has no ring yet", ErrUnavailable, n.cfg.Name)
	}
	if err := ValidateID(id); err != nil {
		return Member{}, Member{}, 0, err
	}
	o := tab.OwnersOf(id)
	p, _ := tab.Member(o.Primary)
	b, _ := tab.Member(o.Buddy)
	return memberOf(p), memberOf(b), tab.Epoch(), nil
}

// ClusterStatus is a node's view of the cluster, for operators. httpapi
// serves it as GET /v1/cluster.
type ClusterStatus struct {
	// Node is the name of the node answering.
	Node string `json:"node"`
	// Epoch names the ring the node serves by.
	Epoch uint64 `json:"epoch"`
	// Ready says whether the node holds every partition it owns.
	Ready bool `json:"ready"`
	// Members lists every node known, with its state and addresses.
	Members []MemberStatus `json:"members"`
	// Partitions counts each ring member's partitions by role.
	Partitions map[string]PartitionLoad `json:"partitions"`
	// UnderReplicated counts partitions with fewer than two copies as far
	// as this node can tell: those without a buddy in the ring, and those
	// it owns but is still waiting to be handed. Summed over the nodes it
	// returns to 0 once every partition has two copies again.
	UnderReplicated int `json:"under_replicated"`
	// PendingHandoff counts partitions this node owns but is still being
	// handed or reconciling.
	PendingHandoff int `json:"pending_handoff"`
	// Lost names the latest partitions that lost both owners at once, as
	// this node saw it; their sessions are gone.
	Lost LostPartitions `json:"lost"`
	// Conflicts counts copies reconciled after a network cut healed that
	// had diverged (both sides wrote the session); the losing side's
	// writes are gone.
	Conflicts uint64 `json:"conflicts"`
	// Seats is what the node knows of the seat protocol, when it runs it
	// (Replica.Seats; experimental: the seats' grants are its leases); nil
	// otherwise.
	Seats *SeatsStatus `json:"seats,omitempty"`
}

// SeatsStatus is a node's view of the seats: the small agreed set of
// members whose grants are to let nodes serve (docs/design/LEASES-AT-SCALE.md).
type SeatsStatus struct {
	// Cluster names the seats' cluster, the run that founded it; "" while
	// the node knows no config.
	Cluster string `json:"cluster"`
	// Version is the newest config of seats the node knows; 0 for none.
	Version uint64 `json:"version"`
	// Seats are that config's members.
	Seats []string `json:"seats"`
	// Active says whether the node's run has its state and answers.
	Active bool `json:"active"`
	// Live says whether a majority of the seats has granted the node
	// under the ring it serves by, and it is not revoked: it can serve. An
	// idle node lets its grants lapse and asks again on its next request,
	// and stays live.
	Live bool `json:"live"`
	// Sealed says whether a change of seats is under way at this seat.
	Sealed bool `json:"sealed"`
	// Lost says whether the node found the seats' state lost: too many of
	// config LostVersion's seats restarted at once to recover it without
	// disk. The node logs it; going on is an operator's call.
	Lost bool `json:"lost"`
	// LostVersion is that config's version.
	LostVersion uint64 `json:"lost_version,omitempty"`
	// Joining, while the node knows no config, names the cluster it
	// recovers into.
	Joining string `json:"joining,omitempty"`
	// Revoked says the node was taken for departed and its grants were
	// revoked for good: it serves nothing more until it is restarted
	// (tandem serve then exits with status 3, for its supervisor to
	// restart it).
	Revoked bool `json:"revoked,omitempty"`
}

// seatsStatus returns the node's seat status as the API shows it; nil
// when the node runs no seat protocol.
func seatsStatus(s replica.SeatStatus) *SeatsStatus {
	if !s.Running {
		return nil
	}
	return &SeatsStatus{Cluster: s.Cluster, Version: s.Version, Seats: s.Seats, Active: s.Active, Live: s.Live, Sealed: s.Sealed,
		Lost: s.Lost, LostVersion: s.LostVersion, Joining: s.Joining, Revoked: s.Revoked}
}

// MemberStatus is one node as membership knows it.
type MemberStatus struct {
	// Name is the node's unique name.
	Name string `json:"name"`
	// Gossip is the node's gossip address, host:port.
	Gossip string `json:"gossip"`
	// Meta is what the node last gossiped about itself.
	Meta MemberMeta `json:"meta"`
	// Health is the failure detector's view of the node: "alive" (which
	// includes suspect nodes), "dead" (declared failed) or "left"
	// (announced its departure).
	Health string `json:"health"`
}

// MemberMeta is what a node gossips about itself.
type MemberMeta struct {
	// BootID is random per process start: a node restarted under the same
	// name is a new incarnation with a new BootID.
	BootID string `json:"boot_id"`
	// Peer is the address of the node's replication and forwarding
	// listener.
	Peer string `json:"peer"`
	// HTTP is the address of the node's HTTP API, "" if it has none.
	HTTP string `json:"http"`
	// State is the node's lifecycle stage: "joining", "active" or
	// "leaving".
	State string `json:"state"`
	// Ring names the node's ring settings; nodes whose settings differ
	// refuse each other.
	Ring string `json:"ring"`
}

// memberStatuses returns membership's members as the API shows them; nil
// stays nil.
func memberStatuses(ms []cluster.Member) []MemberStatus {
	if ms == nil {
		return nil
	}
	out := make([]MemberStatus, len(ms))
	for i, m := range ms {
		out[i] = MemberStatus{Name: m.Name, Gossip: m.Addr, Health: m.Health, Meta: MemberMeta{
			BootID: m.Meta.BootID, Peer: m.Meta.Peer, HTTP: m.Meta.HTTP, State: m.Meta.State.String(), Ring: m.Meta.Ring,
		}}
	}
	return out
}

// PartitionLoad counts one ring member's partitions by role.
type PartitionLoad struct {
	// Primary counts the partitions the member is primary of.
	Primary int `json:"primary"`
	// Buddy counts the partitions the member is buddy of.
	Buddy int `json:"buddy"`
}

// partitionLoads returns the ring's load per member as the API shows it;
// nil stays nil.
func partitionLoads(in map[string]ring.MemberLoad) map[string]PartitionLoad {
	if in == nil {
		return nil
	}
	out := make(map[string]PartitionLoad, len(in))
	for name, l := range in {
		out[name] = PartitionLoad{Primary: l.Primary, Buddy: l.Buddy}
	}
	return out
}

// LostPartitions names partitions whose primary and buddy left the ring at
// once, so their sessions are gone.
type LostPartitions struct {
	// Epoch is the ring that no longer had either owner.
	Epoch uint64 `json:"epoch"`
	// Partitions lists them.
	Partitions []int `json:"partitions"`
}

// Status returns the node's view of the cluster.
func (n *Node) Status() ClusterStatus {
	n.mu.Lock()
	v := n.view
	n.mu.Unlock()
	lost := n.replica.Lost()
	st := ClusterStatus{Node: n.cfg.Name, Ready: n.Ready(), Members: memberStatuses(v.Members), PendingHandoff: n.replica.Pending(),
		Lost: LostPartitions{Epoch: lost.Epoch, Partitions: lost.Partitions}, Conflicts: n.replica.Stats().Conflicts.Load(),
		Seats: seatsStatus(n.replica.SeatStatus())}
	if tab := n.replica.Table(); tab != nil {
		st.Epoch = tab.Epoch()
		st.Partitions = partitionLoads(tab.Load())
		for p := range tab.Partitions() {
			if o := tab.Owners(p); o.Buddy == "" && o.Primary == n.cfg.Name {
				st.UnderReplicated++
			}
		}
		st.UnderReplicated += n.replica.Handoffs()
	}
	return st
}

// Count returns how many session copies the node holds as primary and as
// buddy.
func (n *Node) Count() (primary, buddy int) { return n.replica.Count() }

// Stats counts what a node has done since it started; every field only
// grows. Node.Stats returns a snapshot.
type Stats struct {
	// Reads is how many reads this node served as primary.
	Reads uint64
	// Writes is how many writes this node acknowledged as primary.
	Writes uint64
	// Replicated is how many writes this node stored as buddy.
	Replicated uint64
	// UnderReplicatedWrites is how many writes were acknowledged with one
	// copy, because the ring had no buddy for them (a one-node cluster).
	UnderReplicatedWrites uint64
	// ReplicationFailures is how many writes failed because the buddy
	// refused them or could not be reached; none was acknowledged.
	ReplicationFailures uint64
	// BuddyCopiesAdopted is how many times a primary took its buddy's
	// newer copy of a session: one a write left there whose
	// acknowledgement was lost (doubt.go).
	BuddyCopiesAdopted uint64
	// DroppedBelowFloor is how many copies this node dropped on learning
	// that their partition had been rebuilt after a loss: copies from
	// before it, which the owners that went on had reported gone.
	DroppedBelowFloor uint64
	// ExpiredInTransit is how many ops sent to this node as primary it
	// refused because they arrived long after their sender gave up on
	// them.
	ExpiredInTransit uint64
	// Forwarded is how many requests this node sent to a primary.
	Forwarded uint64
	// BuddyReads is how many reads went to the buddy because the primary
	// could not be reached.
	BuddyReads uint64
	// UnconfirmedRefused is how many of those reads this node refused as
	// the buddy because the primary had not yet confirmed its copy's
	// write, which may never take effect.
	UnconfirmedRefused uint64
	// UnconfirmedReported is how many copies this node, as a buddy, told
	// their primary it had held unconfirmed for a while, so the two
	// owners settle on one copy.
	UnconfirmedReported uint64
	// CopiesResent is how many times this node, as a primary settling a
	// doubt, found its copy newer than its buddy's and sent it again.
	CopiesResent uint64
	// Retries is how many times a request was retried while owners were
	// changing or unreachable.
	Retries uint64
	// HandoffSent is how many session copies this node streamed to other
	// nodes when the ring changed.
	HandoffSent uint64
	// HandoffReceived is how many session copies this node received from
	// other nodes when the ring changed.
	HandoffReceived uint64
	// Duplicates is how many retried writes were recognised as already
	// applied and not applied again.
	Duplicates uint64
	// Conflicts is how many times two different copies of one version met
	// (writes acknowledged on both sides of a network cut) and the older by
	// stamp and writer name was discarded.
	Conflicts uint64
	// LostPartitions is how many partitions lost both owners at once.
	LostPartitions uint64
	// Pauses is how many times the node found it had not run for a while
	// (a SIGSTOP, a stall) and reconciled its partitions.
	Pauses uint64
	// Expired is how many expired copies and old tombstones were removed.
	Expired uint64
	// LeaseMisses is how many times the node needed a lease it did not
	// hold and had to ask for one before serving.
	LeaseMisses uint64
	// FenceWaits is how many writes waited (or were refused) while a
	// departed owner's lease lapsed.
	FenceWaits uint64
	// DisplacedWaits is how many writes waited (or were refused) because a
	// member that owned the partition under the previous ring had not yet
	// moved to this node's ring.
	DisplacedWaits uint64
	// HandoffRefusals is how many pulls and fetches this node refused
	// because the new owner asking was on another ring.
	HandoffRefusals uint64
	// Rejoins is how many times the node learned the others had declared
	// it dead and pulled every owned partition again.
	Rejoins uint64
	// IdentityRefusals is how many peer requests the node refused because
	// the caller's certificate did not allow them: a node sending in
	// another node's name, or a smart client calling a method open only to
	// nodes. Always zero without Config.PeerTLS.
	IdentityRefusals uint64
	// PeerWireDowns is how many times the node took a member out of its
	// ring because its peer port refused connections (failover.go), before
	// membership declared it dead.
	PeerWireDowns uint64
}

// statsOf reads the engine's counters, one at a time: the snapshot is not
// atomic across fields.
func statsOf(s *replica.Stats) Stats {
	return Stats{
		Reads:                 s.Reads.Load(),
		Writes:                s.Writes.Load(),
		Replicated:            s.Replicated.Load(),
		UnderReplicatedWrites: s.UnderReplicatedWrites.Load(),
		ReplicationFailures:   s.ReplicationFailures.Load(),
		BuddyCopiesAdopted:    s.BuddyCopiesAdopted.Load(),
		DroppedBelowFloor:     s.DroppedBelowFloor.Load(),
		ExpiredInTransit:      s.ExpiredInTransit.Load(),
		Forwarded:             s.Forwarded.Load(),
		BuddyReads:            s.BuddyReads.Load(),
		UnconfirmedRefused:    s.UnconfirmedRefused.Load(),
		UnconfirmedReported:   s.UnconfirmedReported.Load(),
		CopiesResent:          s.CopiesResent.Load(),
		Retries:               s.Retries.Load(),
		HandoffSent:           s.HandoffSent.Load(),
		HandoffReceived:       s.HandoffReceived.Load(),
		Duplicates:            s.Duplicates.Load(),
		Conflicts:             s.Conflicts.Load(),
		LostPartitions:        s.LostPartitions.Load(),
		Pauses:                s.Pauses.Load(),
		Expired:               s.Expired.Load(),
		LeaseMisses:           s.LeaseMisses.Load(),
		FenceWaits:            s.FenceWaits.Load(),
		DisplacedWaits:        s.DisplacedWaits.Load(),
		HandoffRefusals:       s.HandoffRefusals.Load(),
		Rejoins:               s.Rejoins.Load(),
		IdentityRefusals:      s.IdentityRefusals.Load(),
	}
}

// Stats returns a snapshot of the node's counters.
func (n *Node) Stats() Stats {
	st := statsOf(n.replica.Stats())
	st.PeerWireDowns = n.downs.Load()
	return st
}

// PeerRequests is how many requests of one method a node sent to other
// nodes and received (from nodes and smart clients) over the peer wire.
type PeerRequests struct {
	// Method is the wire method's name ("replicate", "lease", "pull", ...),
	// or "_other" for names past the ones kept apart.
	Method string
	// Sent counts the requests the node wrote; Received the ones it read,
	// whether or not it then served them.
	Sent, Received uint64
}

// PeerRequests returns the node's peer-wire request counts by method, in
// method order. A method appears once a request of it went either way.
func (n *Node) PeerRequests() []PeerRequests {
	counts := n.requests.Snapshot()
	out := make([]PeerRequests, 0, len(counts))
	for _, c := range counts {
		out = append(out, PeerRequests{Method: c.Method, Sent: c.Sent, Received: c.Received})
	}
	slices.SortFunc(out, func(a, b PeerRequests) int { return strings.Compare(a.Method, b.Method) })
	return out
}
