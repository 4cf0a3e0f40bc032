package replica

import "sync/atomic"

// Stats counts what a node has done since it started. Every field only
// grows.
type Stats struct {
	// Reads is how many reads this node served as primary.
	Reads atomic.Uint64
	// Writes is how many writes this node acknowledged as primary.
	Writes atomic.Uint64
	// Replicated is how many writes this node stored as buddy.
	Replicated atomic.Uint64
	// UnderReplicatedWrites is how many writes were acknowledged with one
	// copy, because the ring had no buddy for them (a one-node cluster).
	UnderReplicatedWrites atomic.Uint64
	// ReplicationFailures is how many writes failed because the buddy
	// refused them or could not be reached; none was acknowledged.
	ReplicationFailures atomic.Uint64
	// BuddyCopiesAdopted is how many times a primary took its buddy's
	// newer copy of a session: one a write left there whose
	// acknowledgement was lost (doubt.go).
	BuddyCopiesAdopted atomic.Uint64
	// DroppedBelowFloor is how many copies this node dropped on learning
	// that their partition had been rebuilt after a loss: copies from
	// before it, which the owners that went on had reported gone.
	DroppedBelowFloor atomic.Uint64
	// ExpiredInTransit is how many ops sent to this node as primary it
	// refused because they arrived long after their sender gave up on
	// them (Op.NotAfter).
	ExpiredInTransit atomic.Uint64
	// Forwarded is how many requests this node sent to a primary.
	Forwarded atomic.Uint64
	// BuddyReads is how many reads went to the buddy because the primary
	// could not be reached.
	BuddyReads atomic.Uint64
	// UnconfirmedRefused is how many of those reads this node refused as
	// the buddy because its copy's write was not yet confirmed by the
	// primary, and may never take effect (confirm.go).
	UnconfirmedRefused atomic.Uint64
	// UnconfirmedReported is how many copies this node, as a buddy, told
	// their primary it had held unconfirmed for a TouchInterval or more
	// (unconfirmed.go).
	UnconfirmedReported atomic.Uint64
	// CopiesResent is how many times this node, as a primary settling a
	// doubt, found its copy of a session newer than its buddy's and sent
	// it again, so both owners hold it.
	CopiesResent atomic.Uint64
	// Retries is how many times a request was retried while owners were
	// changing or unreachable.
	Retries atomic.Uint64
	// HandoffSent and HandoffReceived count copies streamed to and from
	// other nodes when the ring changed.
	HandoffSent, HandoffReceived atomic.Uint64
	// Duplicates is how many retried writes were recognised as already
	// applied and not applied again.
	Duplicates atomic.Uint64
	// Conflicts is how many times two copies that diverged met (writes
	// acknowledged on both sides of a network cut: see diverged) and the
	// one that loses by version, stamp and writer name was discarded.
	Conflicts atomic.Uint64
	// LostPartitions is how many partitions lost both owners at once.
	LostPartitions atomic.Uint64
	// Pauses is how many times the node found it had not run for longer
	// than PauseThreshold and reconciled its partitions.
	Pauses atomic.Uint64
	// Expired is how many expired copies and old tombstones were removed.
	Expired atomic.Uint64
	// LeaseMisses is how many times the node needed a lease it did not
	// hold and had to ask for one before serving.
	LeaseMisses atomic.Uint64
	// FenceWaits is how many writes waited (or were refused) while a
	// departed owner's lease lapsed.
	FenceWaits atomic.Uint64
	// DisplacedWaits is how many writes waited (or were refused) because a
	// member that owned the partition under the previous ring had not yet
	// moved to this node's ring.
	DisplacedWaits atomic.Uint64
	// HandoffRefusals is how many pulls and fetches this node refused
	// because the new owner asking was on another ring.
	HandoffRefusals atomic.Uint64
	// Rejoins is how many times the node learned the others had declared
	// it dead and pulled every owned partition again.
	Rejoins atomic.Uint64
	// IdentityRefusals is how many peer requests this node refused
	// because the caller's certificate did not allow them: a request
	// naming another sender than the certificate's node, or a smart
	// client calling a method open only to nodes (ErrForbidden). Always
	// zero without mutual TLS.
	IdentityRefusals atomic.Uint64
	// ReplicationLatency times each write this node sent to the buddy as
	// primary, until the buddy acknowledged or refused it or the call
	// failed.
	ReplicationLatency Latency
}

// Stats returns the node's counters.
func (n *Node) Stats() *Stats { return &n.stats }

// Count returns how many copies the node holds, primary and buddy.
func (n *Node) Count() (primary, buddy int) {
	tab := n.own.table()
	if tab == nil {
		return 0, 0
	}
	for p := range n.store.parts {
		c := n.store.count(p)
		switch o := tab.Owners(p); n.cfg.Name {
		case o.Primary:
			primary += c
		case o.Buddy:
			buddy += c
		}
	}
	return primary, buddy
}
