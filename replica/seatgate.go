package replica

import (
	"fmt"
	"maps"
	"time"

	"github.com/tandem-io/tandem/ring"
)

// The gate's rules 6 and 7 when the seats guard the leases (Config.Seats;
// docs/design/LEASES-AT-SCALE.md §3 and §6.3). The seat runner (seatrun.go)
// publishes here what its run holds and what its fences have revoked, and
// the gate decides from that alone, without I/O:
//
//   - Rule 6: the node serves from its copies only while its holder (the
//     node's ring run) holds live grants from a majority of its config's
//     seats, each made under the ring the node serves by
//     (seatHolder.live). A holder revoked for good never serves again: its
//     node was taken for departed, and serves again only as a new run of
//     the process (a restart).
//   - Rule 7: a partition taken over from a departed owner is fenced until
//     a revocation of that owner's ring run, for good, has been recorded by
//     a majority of the seats and the last grant they had made it has
//     lapsed (seatRevocation). A majority that refuses the run for good
//     intersects every majority the run could be live by.

// seatHold is what the node's holder held when the runner last looked.
type seatHold struct {
	ring    uint64        // the fingerprint of the ring it holds grants under
	until   time.Duration // until when it is live under that ring; 0 if not
	revoked bool          // revoked for good: the node serves no more
	// granted is the fingerprint of ring if the holder has been live
	// under it since the node installed it, and since it was last found
	// paused (seatsPaused), 0 otherwise: a node is ready once granted,
	// and an idle node lets its grants lapse (seatNode.idle) without
	// becoming unready; one not granted is not idle, and asks.
	granted uint64
}

// setSeatHold publishes what the node's holder holds.
func (o *ownership) setSeatHold(h seatHold) { o.seatHold.Store(&h) }

// seatsPaused makes a node found paused (checkPause) count none of the
// grants its holder held before: it may have been taken for departed
// meanwhile and revoked for good at the seats, and only an ask tells it
// so. Not granted under its ring, it is not idle (tickSeats): it asks
// its seats every round, a seat or not, until one grants it again or
// refuses it for good.
func (n *Node) seatsPaused() {
	r := n.seats
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.node != nil {
		clear(r.node.hold.leases)
	}
	h := *n.own.seatHold.Load()
	h.until, h.granted = 0, 0
	n.own.setSeatHold(h)
}

// seatFenced records that the revocation of departed run r completed,
// and that r's last grant from the seats that recorded it lapses at end.
func (o *ownership) seatFenced(r run, end time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	ends := maps.Clone(*o.seatFences.Load())
	ends[r] = max(ends[r], end)
	o.seatFences.Store(&ends)
}

// seatFenceEnd returns when departed run r can no longer be live, if a
// revocation of it has completed.
func (o *ownership) seatFenceEnd(r run) (time.Duration, bool) {
	end, ok := (*o.seatFences.Load())[r]
	return end, ok
}

// admitSeatLease applies rule 6 with seats, and reports whether it
// decides.
func (o *ownership) admitSeatLease(tab *ring.Table, a admission, now time.Duration) (verdict, bool) {
	h := *o.seatHold.Load()
	switch {
	case h.revoked:
		return refuse(fmt.Errorf("%w: %s was taken for departed and its seat grants revoked for good: it serves again only once restarted", ErrUnavailable, o.self)), true
	case h.ring == tab.Fingerprint() && now < h.until:
		return verdict{}, false
	case !a.askedLeases:
		return verdict{seats: true}, true
	}
	return refuse(fmt.Errorf("%w: %s holds no live grants from a majority of its seats under its ring (epoch %d)", ErrUnavailable, o.self, tab.Epoch())), true
}

// seatFenceWait is how long, at now, departed owner d may still be live
// by the seats: until a revocation of its run has completed and its last
// grant has lapsed. Until the revocation completes, the wait is a sixth
// of a lease, to look again.
func (o *ownership) seatFenceWait(d departure, now time.Duration) time.Duration {
	end, ok := o.seatFenceEnd(runOf(d.from, d.name))
	if !ok {
		return max(o.lease/6, time.Millisecond)
	}
	return max(end-now, 0)
}
