package replica

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/replica/peer"
	"github.com/tandem-io/tandem/ring"
)

// Hand-offs: when the ring moves a partition to this node, it pulls the
// partition's copies from the previous owners (methodPull), in batches;
// until it has, it fetches each session it is asked for first (read.go).
// Members that reappear are reconciled the same way. A leaving node pushes
// its copies instead (drain.go).

// methodPull asks a previous owner for a partition's copies.
const methodPull = "pull"

// pullRequest asks for a partition's copies with ids after After, in id
// order, up to about MaxBytes. Ring, when set, is the fingerprint of the
// requester's ring, as in ReadRequest.
type pullRequest struct {
	Partition int    `msgpack:"p"`
	After     string `msgpack:"a"`
	MaxBytes  int    `msgpack:"mb"`
	Ring      uint64 `msgpack:"ring,omitempty"`
	// From names the requester: a former owner's hold answers only the
	// runs it handed the partition to (ownState.vouches).
	From string `msgpack:"f,omitempty"`
	// Distrusting: the requester was declared dead and replaces its
	// copies with the source's if the source holds the partition settled
	// (replaceOwnIfDeclaredDead). Its first batch is read only once the
	// writes under way at the source are stored or have failed
	// (store.awaitWrites): a write whose replica the requester stored, as
	// buddy, before it learned, is then in the batch.
	Distrusting bool `msgpack:"dd,omitempty"`
	// Departed counts the times the requester's run (Incarnation) saw
	// the source's run leave its ring, as a lease reply would
	// (leaseReply.Departed): a source that has not heard of the last one
	// learns from it that it was declared dead before it answers.
	Departed    uint64 `msgpack:"dp,omitempty"`
	Incarnation string `msgpack:"i,omitempty"`
}

// pullReply is one batch of a pull; More says another batch follows,
// Holds whether the node holds the partition for the requester
// (ownState.vouches), and
// OtherRing that it refused because the rings differ (see ReadReply).
type pullReply struct {
	Sessions  []*Session `msgpack:"s"`
	More      bool       `msgpack:"m,omitempty"`
	Holds     bool       `msgpack:"h,omitempty"`
	OtherRing bool       `msgpack:"or,omitempty"`
	Floor     uint64     `msgpack:"fl,omitempty"` // the partition's generation floor at the source (store.raiseFloor)
	Settled   bool       `msgpack:"st,omitempty"` // the source owns the partition and takes it from no one (ownState.settled)
	Distrusts bool       `msgpack:"dt,omitempty"` // the source was declared dead and has not caught up (transfer.distrust)
	// Blank: the source is young and knows nothing of the partition
	// (Node.blank).
	Blank bool `msgpack:"bl,omitempty"`
	// Unvouched: the source's copies may be older than what the cluster
	// acknowledged since (partState.unvouched); a node that merges them
	// is unvouched too.
	Unvouched bool `msgpack:"uv,omitempty"`
	// Unconfirmed: the source resumed after a pause and does not know
	// yet whether it was declared dead meanwhile (ownership.unconfirmed);
	// it sends nothing, and the puller waits for it as for a source on
	// another ring.
	Unconfirmed bool `msgpack:"uc,omitempty"`
	// Lost: the source reported the partition lost while owning it, and
	// owns it still (partState.reportedLost). An owner that takes its
	// copies takes none from non-owners after them (ownership.adoptLoss).
	Lost bool `msgpack:"ls,omitempty"`
	// LostGen, with Lost, is the generation the loss began: copies of a
	// lower one are from before it (partition.lossGen).
	LostGen uint64 `msgpack:"lg,omitempty"`
}

// SetLeaving tells the node which members said they are leaving and are
// still alive, as membership sees them. Call it on every membership
// change, before SetTable with the ring the change brings. A partition
// whose owners both leave the ring, one of them gracefully, is then no
// loss while the leaver drains: its new owners wait for its push and
// release rather than start it over empty, and serve none of it
// meanwhile. If the leaver dies or gives up before its release names the
// partition, the hand-off is given up and the loss reported.
func (n *Node) SetLeaving(names []string) {
	n.own.setLeaving(names)
	n.wake()
}

// SetTable makes tab the ring this node serves by. Partitions the node now
// owns but did not own under the previous table become hand-offs: the node
// pulls them from their previous owners in the background, and until a
// pull completes (or HandoffTimeout passes) each session asked for is first
// fetched from them, so a new owner never serves an empty or stale copy.
// The ring is installed while every store partition is held, so no write
// routed by the old ring is stored after it.
func (n *Node) SetTable(tab *ring.Table) error {
	var ch ringChange
	var err error
	superseded := 0
	n.store.exclusive(func() {
		ch, err = n.own.install(tab, n.mono(), func(p int) bool { return n.store.countLocked(p) > 0 })
		// A partition lost with both owners is rebuilt under a new
		// generation, before any write by this ring is stored, from the
		// copies this node vouches for: the others go first
		// (lostCopiesGo).
		for _, p := range ch.wiped {
			if dropped := n.store.dropLocked(p); dropped > 0 {
				n.log.Warn("partition lost with both owners: dropped copies no owner vouches for rather than serve them rewound", "partition", p, "sessions", dropped)
			}
		}
		for _, p := range ch.rebuilt {
			n.store.markLossLocked(p, n.store.rebuiltLocked(p, n.clock.now(n.wall())))
		}
		for _, p := range ch.superseded {
			superseded += n.store.forgetLocked(p)
		}
	})
	if err != nil || ch.stale {
		return err
	}
	if superseded > 0 {
		n.log.Info("taking partitions over: dropped the copies left from an earlier ownership of them; the hand-off brings them from their holders",
			"epoch", tab.Epoch(), "partitions", ch.superseded, "sessions", superseded)
	}
	if n.seats != nil {
		n.unfenceReturned(tab)
		if len(ch.revoke) > 0 {
			n.fenceSeats(ch.revoke)
		}
	}
	if ch.fenced > 0 {
		n.log.Info("fencing partitions taken over until the departed members' leases lapse: this node's grant for the time given, the other members' once they have moved on",
			"departed", ch.departed, "partitions", ch.fenced, "for", ch.fenceFor)
	}
	if len(ch.lost) > 0 {
		n.stats.LostPartitions.Add(uint64(len(ch.lost)))
		n.log.Error("both owners of partitions lost at once: their sessions are gone", "epoch", tab.Epoch(), "partitions", ch.lost)
	}
	n.log.Info("ring changed", "epoch", tab.Epoch(), "members", len(tab.Members()), "appeared", ch.appeared, "pending_partitions", ch.transfers)
	if len(ch.appeared) > 0 {
		go n.tellAppeared(tab, ch.appeared)
	}
	if len(ch.rebuilt) > 0 {
		go n.announceFloors(tab, ch.rebuilt, pushRebuilt, nil)
	}
	n.wake()
	return nil
}

// transferLoop pulls the partitions still to be handed over or
// reconciled from their sources, and drops copies of partitions this node
// no longer owns once the ring has been stable for HandoffTimeout (their
// new owners have pulled them by then, or have given up on them).
func (n *Node) transferLoop() {
	defer n.done.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-n.stop
		cancel()
	}()
	var changedAt time.Duration // when the ring last changed, on mono's clock
	var seen, dropped *ring.Table
	for {
		tick := n.cfg.Clock.NewTimer(100 * time.Millisecond)
		select {
		case <-n.stop:
			tick.Stop()
			return
		case <-n.changed:
			tick.Stop()
		case <-tick.Chan():
		}
		tab := n.own.table()
		if tab == nil {
			continue
		}
		if tab != seen {
			// Only a new ring restarts the wait: membership news that
			// changes no ring, reconciliations and pauses wake the loop
			// too, and under their steady flow the wait never ended, so
			// copies of partitions owned elsewhere outlived a loss and
			// came back when the node owned them again (chaos finding
			// F17).
			seen, changedAt = tab, n.mono()
		}
		n.pullDue(ctx, tab)
		// A node out of its own ring is leaving: its copies are what it
		// drains, however long that takes (Drain).
		if dropped != tab && n.mono()-changedAt > n.cfg.HandoffTimeout && tab.Has(n.cfg.Name) {
			n.dropUnowned(tab)
			dropped = tab
		}
	}
}

// pullDue pulls every partition still to be handed over or reconciled
// from its sources, a few partitions at a time, and gives up those whose
// hand-off is over (ownership.dueTransfers).
func (n *Node) pullDue(ctx context.Context, tab *ring.Table) {
	now := n.mono()
	jobs, _, _, _, pending := n.own.due(tab, now, false)
	var gaveUp []string
	var lost, rebuilt, renewed []int // renewed: a buddy's, moved to a new generation (tellPrimaries)
	dropped := map[int]int{}
	if pending {
		// A hand-off given up makes what this node holds the partition,
		// its loss reported, and drops the copies no owner vouches for:
		// both at once, with the store held, so that no request reads
		// copies the loss is about to drop (chaos finding F17), and no
		// write is stored before the new generation, as when a ring
		// change shows the loss (SetTable).
		n.store.exclusive(func() {
			var drop []int
			jobs, gaveUp, lost, drop, _ = n.own.due(tab, now, true)
			for _, p := range drop {
				dropped[p] = n.store.dropLocked(p)
			}
			if len(lost) > 0 && n.own.holdsMajority(tab) {
				for _, p := range lost {
					if tab.Owners(p).Primary == n.cfg.Name {
						// The primary rebuilds the partition from what it
						// holds (what it fetched or was written since it
						// took it over), as a loss seen in the ring is
						// rebuilt: its copies move to a new generation,
						// which becomes the floor, and it pushes them with
						// the floor to the buddy, which drops its copies
						// from before. Without it the two owners would
						// disagree on what was lost: a buddy declared dead
						// keeps copies the primary never took (chaos
						// finding F13, the hand-off given up while the
						// buddy still distrusted its copies).
						n.store.markLossLocked(p, n.store.rebuiltLocked(p, n.clock.now(n.wall())))
						rebuilt = append(rebuilt, p)
						continue
					}
					// A new generation, so that writes from now on win
					// over the old copies of an owner that comes back; no
					// floor: the primary's push brings one.
					n.store.newGenerationLocked(p, n.clock.now(n.wall()))
					n.store.markLossLocked(p, n.store.parts[p].gen)
					renewed = append(renewed, p)
				}
			}
		})
	}
	for _, g := range gaveUp {
		n.log.Warn("hand-off given up", "why", g)
	}
	if len(lost) > 0 {
		n.stats.LostPartitions.Add(uint64(len(lost)))
		n.log.Error("no previous owner of partitions answered within the hand-off timeout: sessions they held and this node lacks are gone", "epoch", tab.Epoch(), "partitions", lost)
	}
	for _, p := range slices.Sorted(maps.Keys(dropped)) {
		if dropped[p] > 0 {
			n.log.Warn("dropped copies no owner vouches for (held when this node was declared dead, or merged from sources whose copies were unvouched) rather than serve them rewound", "partition", p, "sessions", dropped[p])
		}
	}
	if len(rebuilt) > 0 {
		go n.announceFloors(tab, rebuilt, pushRebuilt, nil)
	}
	if len(renewed) > 0 {
		go n.tellPrimaries(tab, renewed)
	}
	work := make(chan transferJob)
	var wg sync.WaitGroup
	for range min(4, len(jobs)) {
		wg.Go(func() {
			for j := range work {
				n.pullJob(ctx, tab, j)
			}
		})
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
}

// pullJob pulls one partition from every source: a previous owner and a
// member returning from a network cut may each hold writes the other
// lacks, and merging keeps the newer of each. In a hand-off, without
// AllowMinority, a source that no longer owns the partition is needed
// only while no source holds it.
func (n *Node) pullJob(ctx context.Context, tab *ring.Table, j transferJob) {
	began := n.mono()
	r := n.pullSources(ctx, tab, j)
	err, held, refused, outOfReach, blank, holders := r.err, r.held, r.refused, r.outOfReach, r.blank, r.holders
	if err == nil && !held && j.handoff && !j.distrust && blank && n.allBlank(ctx, tab, j.p, j.sources) {
		// Every member answered, and all are young and know nothing of
		// the partition: the cluster is new, its members taking their
		// partitions over from each other, and the partition is new
		// (Node.blank). Otherwise a partition no source holds waits for
		// one that does, and is given up, its loss reported, after
		// HandoffTimeout.
		held = true
	}
	if err == nil && !held && j.handoff && j.returning && !r.skipped {
		// Every source answered and this node merged what each sent: its
		// own hold up to the ring that took the partition away, merged
		// with what its successors wrote since, is the partition
		// (transfer.returning). A source whose copies were not taken
		// (declared dead and not caught up, say) does not count: its
		// writes since are not merged. Counting it completed the hand-off
		// from this node's old copies alone, and the distrusting source
		// then replaced its own, acknowledged writes among them, with
		// those (chaos finding F17, sessions 623, 324 and 791 of the
		// 15-minute run at seed 41).
		held = true
		holders = append(holders, n.cfg.Name)
	}
	if err == nil && !held && j.handoff {
		err = fmt.Errorf("none of %v holds partition %d yet", j.sources, j.p)
	}
	switch {
	case err == nil:
		n.log.Debug("partition pulled", "partition", j.p, "epoch", tab.Epoch(), "sources", j.sources, "held_by", holders, "handoff", j.handoff, "distrust", j.distrust)
		last, push := n.own.finishHandoff(tab, j.p, j.transfer)
		if push {
			// Taken from the buddy's hold after its loss report: the
			// buddy gets the copies this node holds and it lacks,
			// merged, no floor raised (ownership.finishHandoff).
			if lacked := n.store.copiesLacked(j.p, r.buddyCopies); len(lacked) > 0 {
				n.log.Info("partition taken over after the buddy reported it lost: pushing the copies it lacks to it", "partition", j.p, "copies", len(lacked))
				go n.announceFloors(tab, []int{j.p}, pushMerge, lacked)
			} else {
				n.log.Debug("partition taken over after the buddy reported it lost: the buddy lacks none of its copies", "partition", j.p)
			}
		}
		if last {
			n.log.Info("hand-off complete: holding every owned partition", "epoch", tab.Epoch())
		}
	case refused:
		// A source is alive and serves by another ring, or does not know
		// yet whether it was declared dead during a pause: it may still
		// serve the partition, or hold what a returning owner's hand-off
		// needs (transfer.returning). Not given up on.
		n.own.transferAnswered(j.p, j.transfer, n.mono())
		n.log.Debug("partition pull refused until the rings agree; will retry", "partition", j.p, "err", err)
	case outOfReach:
		// The partition's other owner, which the failure detector still
		// counts alive (it is on the ring: due prunes those that left),
		// could not be reached: a one-way cut, a full queue, a pause
		// shorter than the detector. A former owner's hold that answered
		// does not end the wait: the owner wrote since that one stopped
		// owning the partition (chaos finding F17, session 229-r0001 of
		// the 60-minute run at 9efd854: given up, the loss reported while
		// the owner served the session, which went when the ring took
		// the owner out). Its copies are unavailable, not lost: giving up now
		// would report the loss of acknowledged writes it holds, and the
		// floor the primary then rebuilds would drop them for good (chaos
		// finding F17, session 089). The hand-off waits for it to answer
		// or to leave the ring; a node that is truly gone leaves it
		// within the failure detector's time, and the next ring decides.
		n.own.transferAnswered(j.p, j.transfer, n.mono())
		n.log.Debug("a source of the partition is out of reach but still on the ring; waiting for it", "partition", j.p, "err", err)
	default:
		// Given up for time only once a pull begun past the timeout has
		// failed (transfer.tried).
		n.own.transferTried(j.p, j.transfer, began)
		n.log.Debug("partition pull failed; will retry", "partition", j.p, "err", err)
	}
}

// pullRound is what pulling a partition from every source of a job
// found (pullSources).
type pullRound struct {
	err        error    // the last failure that keeps the transfer pending
	held       bool     // a source holds the partition (for the job's kind)
	refused    bool     // a source answered from another ring, or unconfirmed
	outOfReach bool     // the partition's other owner could not be reached
	blank      bool     // this node and every source know nothing of the partition
	skipped    bool     // a source answered, and its copies were not taken (judgeSource)
	holders    []string // the sources whose hold ended the hand-off, for the log
	// buddyCopies: what the partition's buddy sent, when this node is its
	// primary and the buddy holds it (summaries: pull); nil when unknown.
	// A merge push after an adopted loss report carries only what the
	// buddy lacks (copiesLacked).
	buddyCopies map[string]*Session
}

// pullSources pulls partition p of job j from each of its sources and
// reports what they said (pullJob decides).
func (n *Node) pullSources(ctx context.Context, tab *ring.Table, j transferJob) pullRound {
	var spare error
	r := pullRound{blank: n.blank(j.p)}
	trustedHolder := false
	ask := sourceAsk{handoff: j.handoff, distrust: j.distrust, allowMinority: n.cfg.AllowMinority}
	ownerMissing, ownerHolds := false, false
	for _, src := range ownersFirst(tab, j.p, j.sources) {
		owner := owns(tab.Owners(j.p), src)
		// Owners answer first. One that failed this round may carry a
		// loss report (pullReply.Lost) next round, and a non-owner's
		// copies merged before it would bring back what the loss took
		// (found in review). One that holds the partition, takes it from
		// no one and trusts its copies has every acknowledged write: a
		// non-owner's copies could add only what it deleted or lost (and,
		// after a declared-dead node replaced its copies with that
		// owner's, survive the replacement). Non-owners are still asked:
		// one on another ring is waited for.
		ask.ownersFirst = ownerMissing || ownerHolds
		// An owner's reply may carry its loss report (adoptLoss): the
		// non-owners after it give nothing then.
		ask.afterLoss = j.afterLoss || n.own.reportedLost(j.p)
		var sent map[string]*Session
		if o := tab.Owners(j.p); o.Primary == n.cfg.Name && o.Buddy == src {
			sent = make(map[string]*Session)
		}
		holds, settled, trusted, srcBlank, took, e := n.pull(ctx, tab, j.p, src, ask, sent)
		if sent != nil && e == nil && holds {
			r.buddyCopies = sent
		}
		ownerMissing = ownerMissing || owner && e != nil
		ownerHolds = ownerHolds || owner && e == nil && holds && settled && trusted
		if e != nil {
			if j.handoff && !n.cfg.AllowMinority && !owns(tab.Owners(j.p), src) && unreachableOnly(e) {
				// A source that no longer owns the partition, out of
				// reach, is needed only if no trusted owner holds it
				// (trustedHolder below): such a holder has every write
				// acknowledged (without AllowMinority no side of a cut
				// acknowledges alone). One that answers
				// from another ring is still waited for: it may serve by
				// its old ring meanwhile. Waiting for one out of reach gave
				// the hand-off up after HandoffTimeout and reported a
				// loss, while the partition's other owner kept serving
				// the copies the report said were gone (chaos finding
				// F17, session 572 of the 30-minute run at 803bf8d).
				spare = e
			} else {
				r.err = e
			}
			r.refused = r.refused || errors.Is(e, errOtherRing) || errors.Is(e, errUnconfirmed)
			// Only the partition's other owner counts: it holds every
			// write acknowledged since it took the partition over. A
			// former owner out of reach drops its copies HandoffTimeout
			// after its own ring settles, and a reconciliation's or a
			// witness's source holds nothing that is not elsewhere.
			r.outOfReach = r.outOfReach || j.handoff && owns(tab.Owners(j.p), src) && errors.Is(e, peer.ErrUnreachable)
			continue
		}
		// A hand-off is complete once a source holds the partition (one
		// declared dead and not caught up does not: pull; nor one taking
		// it over itself: partState.held); a declared-dead node's own,
		// once a settled owner does.
		if holds && (settled || !j.distrust) {
			r.held = true
			r.holders = append(r.holders, src)
		}
		// Only an owner that takes the partition from no one and was not
		// declared dead has every acknowledged write for certain: only
		// its hold lets a former owner out of reach be set aside (spare).
		// Two owners both declared dead hold each other's copies, which
		// may lack writes the others acknowledged without them.
		trustedHolder = trustedHolder || holds && settled && trusted
		r.blank = r.blank && srcBlank
		r.skipped = r.skipped || !took && !ask.afterLoss // after a loss, a non-owner's copies are the loss's
	}
	if r.err == nil && !trustedHolder {
		r.err = spare
	}
	return r
}

// pull copies partition p from member src, in batches, and reports
// whether src holds the partition at all, whether it takes it from no
// one (settled), whether it trusts its own copies (it was not
// declared dead, or has caught up since), and whether this node took
// the copies it sent (judgeSource). A hand-off (not a
// reconciliation) is served only once src is on this node's ring. A
// non-nil sent is given a summary (copyKey) of every copy src sent and
// this node took.
func (n *Node) pull(ctx context.Context, tab *ring.Table, p int, src string, ask sourceAsk, sent map[string]*Session) (holds, settled, trusted, blank, took bool, err error) {
	req := pullRequest{Partition: p, MaxBytes: n.cfg.HandoffBytes, From: n.cfg.Name, Distrusting: ask.distrust && !ask.allowMinority}
	if req.Distrusting {
		req.Departed, req.Incarnation = n.own.departuresOf(tab, src)
	}
	if ask.handoff {
		req.Ring = tab.Fingerprint()
	}
	// The source holds the partition only if every batch said so: its
	// hold may begin between two (a hand-off given up, its copies
	// dropped), and the copies of the batches before would then be taken
	// as the partition's (chaos finding F17, session 370 of the 30-minute
	// run at 24209bc).
	holds, settled, trusted = true, true, true
	for {
		var reply pullReply
		if err := n.call(ctx, tab, src, methodPull, req, &reply); err != nil {
			return false, false, false, false, false, fmt.Errorf("pull partition %d from %s: %w", p, src, err)
		}
		ask.afterLoss = ask.afterLoss || n.own.reportedLost(p) // a fetch may have adopted a loss since the last batch
		v := judgeSource(tab, p, src, reply.answer(), ask)
		if v.err != nil {
			return false, false, false, false, false, fmt.Errorf("%w: %w: pull partition %d from %s", ErrUnavailable, v.err, p, src)
		}
		n.learnFloor(p, reply.Floor, src, false)
		if req.After == "" {
			n.replaceOwnIfDeclaredDead(p, src, ask, reply)
		}
		if lossGen := n.store.lossGeneration(p); v.sinceLoss && lossGen > 0 {
			merged, last, err := n.mergeBatch(tab, p, src, reply.Sessions, func(s *Session) bool { return s.Gen >= lossGen }, nil)
			if err != nil {
				return false, false, false, false, false, err
			}
			took, req.After = took || merged, last
			if !reply.More {
				return false, false, false, v.blank, took, nil
			}
			continue
		}
		if !v.take {
			// Copies not taken: the source counts as taken only if a merge
			// could not have added anything, every copy it sent, in every
			// batch, being one this node holds as it is or newer (a
			// returning owner's hand-off needs every source's writes:
			// transfer.returning). A joiner declared dead that merged the
			// returning owner's copies in its own hand-off sends them
			// back, distrusted, and the two waited for each other until
			// both gave up and reported the loss. Whether the source
			// holds the partition does not matter: its hold is the copies
			// it sent (a joiner that took the partition over before it
			// learned it had been declared dead answered with its hold
			// and was not counted, and the two waited the same way).
			nothingNew := n.store.holdsAsNew(p, reply.Sessions)
			if !nothingNew || !reply.More {
				return false, false, false, v.blank, nothingNew, nil
			}
			if req.After = lastID(reply.Sessions); req.After == "" {
				return false, false, false, v.blank, false, nil
			}
			continue
		}
		if reply.Lost && owns(tab.Owners(p), src) {
			n.adoptLoss(tab, p, src, reply.LostGen)
		}
		if _, last, err := n.mergeBatch(tab, p, src, reply.Sessions, nil, sent); err != nil {
			return false, false, false, false, false, err
		} else if last != "" {
			req.After = last
		}
		if len(reply.Sessions) > 0 && reply.Unvouched {
			n.own.markUnvouched(p)
		}
		n.stats.HandoffReceived.Add(uint64(len(reply.Sessions)))
		holds, settled, trusted = holds && reply.Holds, settled && reply.Settled, trusted && !reply.Distrusts
		if !reply.More {
			return holds, settled, trusted, reply.Blank, true, nil
		}
	}
}

// replaceOwnIfDeclaredDead drops this node's copies of partition p when
// it was declared dead and src, answering the first batch of a pull,
// holds the partition as a settled owner that trusts its copies: that
// owner's copies replace its own, which are older than what was
// acknowledged since, or were lost with the partition. (It stores no
// write meanwhile: the gate refuses them while it distrusts the
// partition, and one it admitted before is not stored after the mark:
// storesUnder.) Only with AllowMinority can a node declared dead have
// acknowledged writes the others lack, on its side of a cut: then its
// copies are merged, as a split brain heals.
func (n *Node) replaceOwnIfDeclaredDead(p int, src string, ask sourceAsk, reply pullReply) {
	if !ask.distrust || ask.allowMinority || !reply.Settled || !reply.Holds || reply.Distrusts {
		return
	}
	if dropped := n.store.drop(p); dropped > 0 {
		n.log.Info("replacing copies held when declared dead with an owner's", "partition", p, "from", src, "dropped", dropped)
	}
}

// mergeBatch merges the copies of one pull batch from src that belong to
// partition p and pass keep (every one, with keep nil), recording a
// summary of each in sent when it is not nil. It reports whether it
// merged any, and the id of the batch's last copy, where the next batch
// starts ("" for none).
func (n *Node) mergeBatch(tab *ring.Table, p int, src string, sessions []*Session, keep func(*Session) bool, sent map[string]*Session) (merged bool, last string, err error) {
	for _, s := range sessions {
		if s == nil {
			continue
		}
		last = s.ID
		if ValidateID(s.ID) != nil || tab.Partition(s.ID) != p || keep != nil && !keep(s) {
			continue
		}
		if err := n.merge(p, s, tab); err != nil {
			return merged, last, fmt.Errorf("pull partition %d from %s: %w", p, src, err)
		}
		merged = true
		if sent != nil {
			sent[s.ID] = copyKey(s)
		}
	}
	return merged, last, nil
}

// lastID returns the id of the last copy in sessions, "" if there is none.
func lastID(sessions []*Session) string {
	for i := len(sessions) - 1; i >= 0; i-- {
		if sessions[i] != nil {
			return sessions[i].ID
		}
	}
	return ""
}

// adoptLoss takes partition p's loss as reported by its owner src
// (ownership.adoptLoss) and, the first time, moves the partition to a
// new generation, as the owner that reported it did (pullDue): the
// sessions this node writes from now on win over copies from before the
// loss whatever their versions. A session the loss took starts again at
// v1; written under the old generation, that v1 lost to an old copy,
// deleted at v22, that came back within 4 s (a former owner's drain
// pushed its copies of the partition in between), and the next write
// was v23 (chaos finding F17, session 994-r0000 of the 65-minute run at
// 6e96d34).
func (n *Node) adoptLoss(tab *ring.Table, p int, src string, lossGen uint64) {
	if !n.own.adoptLoss(tab, p) {
		return
	}
	n.store.markLoss(p, lossGen)
	n.store.newGeneration(p, n.clock.now(n.wall()))
	n.log.Debug("partition taken from an owner that reported it lost: writes from now on are of a new generation", "partition", p, "from", src)
}

// ownersFirst returns sources with partition p's owners in tab first,
// each group in its order: an owner's reply may say the partition was
// lost (pullReply.Lost), and what non-owners hold is then not merged.
func ownersFirst(tab *ring.Table, p int, sources []string) []string {
	out := slices.Clone(sources)
	slices.SortStableFunc(out, func(a, b string) int {
		oa, ob := owns(tab.Owners(p), a), owns(tab.Owners(p), b)
		switch {
		case oa == ob:
			return 0
		case oa:
			return -1
		}
		return 1
	})
	return out
}

// unreachableOnly reports whether err says only that the source could not
// be reached: no answer, not a refusal.
func unreachableOnly(err error) bool {
	return errors.Is(err, peer.ErrUnreachable) && !errors.Is(err, errOtherRing) && !errors.Is(err, errUnconfirmed)
}

// allBlank reports whether every member of tab but this node and those
// in asked (which answered blank already) answers that it is blank for
// partition p (Node.blank). Sources alone are not enough: two owners
// restarted one after the other are each other's only sources, young
// and empty, while the members that saw the partition served know it
// had owners (chaos finding F13).
func (n *Node) allBlank(ctx context.Context, tab *ring.Table, p int, asked []string) bool {
	for _, m := range tab.Members() {
		if m.Name == n.cfg.Name || slices.Contains(asked, m.Name) {
			continue
		}
		var reply pullReply
		if err := n.call(ctx, tab, m.Name, methodPull, pullRequest{Partition: p, MaxBytes: 1}, &reply); err != nil || !reply.Blank {
			return false
		}
	}
	return true
}

// announceFloors pushes each partition in parts, just rebuilt by this
// node as its primary, to its buddy: the copies it holds, at their new
// generation, with the floor, so that the buddy holds the partition as
// the primary does and drops its copies from before the loss now rather
// than at the partition's next write (a floor only this node knew would
// go with it if it crashed, and copies from before the loss could come
// back: chaos finding F17, a buddy cut off while its primary rebuilt kept
// them, and the primary, restarted, took them back). A buddy out of
// reach is tried again, backing off, until it has the floor, this node no
// longer serves the partition as its primary, the node stops, or
// floorAnnounceFor has passed; each attempt goes to the buddy of the ring
// the node serves by then. kind is pushRebuilt, or pushMerge for copies
// without the floor (ownership.finishHandoff); a non-nil only limits the
// copies pushed to those sessions (pushTo).
func (n *Node) announceFloors(tab *ring.Table, parts []int, kind pushKind, only map[string]bool) {
	left := n.untilDelivered(tab, parts, func(ctx context.Context, tab *ring.Table, p int) (bool, error) {
		o := tab.Owners(p)
		if o.Primary != n.cfg.Name || o.Buddy == "" {
			return true, nil // another primary's pulls and writes carry the floor now
		}
		if err := n.pushTo(ctx, tab, p, o.Buddy, kind, only); err != nil {
			return false, fmt.Errorf("push partition %d to its buddy %s (%v): %w", p, o.Buddy, kind, err)
		}
		return true, nil
	})
	switch {
	case len(left) == 0:
	case kind == pushMerge:
		n.log.Warn("gave up pushing partitions taken from a buddy's loss report back to it: sessions it dropped are held by this node alone until written again", "partitions", left)
	default:
		n.log.Warn("gave up pushing rebuilt partitions to their buddies: the buddies learn the floors from the partitions' next writes", "partitions", left)
	}
}

// untilDelivered calls try for each partition in parts, under the ring
// the node serves by at the time, each call bounded by HandoffTimeout,
// until try says the partition is done, backing off between rounds, the
// node stops, or floorAnnounceFor HandoffTimeouts have passed. It returns
// the partitions left undone.
func (n *Node) untilDelivered(tab *ring.Table, parts []int, try func(ctx context.Context, tab *ring.Table, p int) (bool, error)) []int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	pending := slices.Clone(parts)
	deadline := n.mono() + floorAnnounceFor*n.cfg.HandoffTimeout
	wait := n.cfg.LeaseDuration / 6
	for {
		if cur := n.own.table(); cur != nil {
			tab = cur
		}
		pending = slices.DeleteFunc(pending, func(p int) bool {
			callCtx, cancelCall := n.withTimeout(ctx, n.cfg.HandoffTimeout)
			defer cancelCall()
			done, err := try(callCtx, tab, p)
			if err != nil {
				n.log.Debug("cannot reach a partition's other owner; will retry", "partition", p, "err", err)
			}
			return done
		})
		if len(pending) == 0 || n.mono() > deadline {
			return pending
		}
		if !n.sleep(ctx, wait) {
			return pending
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// floorAnnounceFor bounds, in HandoffTimeouts, how long announceFloors
// tries to reach a buddy.
const floorAnnounceFor = 10

// learnFloor raises partition p's generation floor to floor, heard from
// member from: from rebuilt the partition, or heard of it, so copies
// from before are gone. Copies this node holds below it are dropped.
// With rebuilt, from is pushing the partition it has just rebuilt
// (announceFloors): a hand-off of p to this node ends, for what from
// rebuilt is the partition now. A floor heard any other way may be old —
// a rebuild long past that every source's copies are above — and ends
// nothing: a blank node that ended its hand-off on hearing one would
// hold an empty partition and hand it on (chaos finding F13, seed 3: a
// restarted owner heard a 40-second-old floor from a node declared dead,
// held nothing, and the other owner replaced its copies with that).
func (n *Node) learnFloor(p int, floor uint64, from string, rebuilt bool) {
	if floor == 0 {
		return
	}
	n.clock.observe(floor)
	raised, dropped := n.store.raiseFloor(p, floor)
	if dropped > 0 {
		n.stats.DroppedBelowFloor.Add(uint64(dropped))
		n.log.Warn("partition was rebuilt after a loss: dropped copies from before it", "partition", p, "from", from, "generation", floor, "sessions", dropped)
	}
	if raised && rebuilt && n.own.endHandoff(p, from) {
		n.log.Info("hand-off ended: an owner rebuilt the partition after a loss", "partition", p, "from", from, "generation", floor)
	}
}

// merge keeps the newer of a copy from another node and this node's own,
// counting and logging a conflict when the two diverged: writes were
// acknowledged on both sides of a network cut, and the side whose copy
// loses loses them. With tab, the copy is merged only while this node
// still serves by tab, the ring the pull or fetch that brought it began
// under, and merge returns errRingMoved otherwise: a pull that straggled
// on past two ring changes brought back the copies the second one
// dropped (ringChange.superseded).
func (n *Node) merge(p int, s *Session, tab *ring.Table) error {
	n.clock.observe(s.Stamp)
	var check func() error
	if tab != nil {
		check = func() error { // under p's lock: no ring is installed meanwhile (SetTable)
			if n.own.table() != tab {
				return fmt.Errorf("%w: merge %s into partition %d", errRingMoved, s.ID, p)
			}
			return nil
		}
	}
	prev, stored, err := n.store.putUnder(p, s, true, check)
	if errors.Is(err, errRingMoved) {
		return err
	}
	if diverged(prev, s) {
		n.stats.Conflicts.Add(1)
		kept, lost := prev, s
		if stored {
			kept, lost = s, prev
		}
		n.log.Warn("conflicting copies reconciled: the writes that made the lost copy are gone", "session", s.ID,
			"kept_version", kept.Version, "kept_writer", kept.Writer, "kept_stamp", kept.Stamp,
			"lost_version", lost.Version, "lost_writer", lost.Writer, "lost_stamp", lost.Stamp)
	}
	return nil
}

// knowsItsStanding reports whether this node may give its copies to
// another node as a source (servePull, a raw read): it holds the leases
// its ring asks of a node that serves (rule 6), asking the members for
// the missing ones first. Each grant says whether the granter saw this
// node leave its ring, and a node so told marks every partition it owns
// distrusted before the grant counts (recordLease, renewLease), so its
// answers say what it is. A node cut off from the others and declared
// dead otherwise answered as a settled owner for as long as it had not
// asked anyone for a lease since the cut healed: an owner itself declared
// dead took the partition from it and dropped its own copies, and two
// such owners took it from each other without the writes the others
// acknowledged meanwhile (the explorer's F20).
func (n *Node) knowsItsStanding(ctx context.Context, tab *ring.Table) bool {
	v, done := n.own.admitLeases(tab, admission{}, n.mono())
	if !done {
		return true
	}
	if v.seats {
		n.renewSeats(ctx, tab)
	} else if v.err == nil {
		n.askLeases(ctx, tab, v.leases, v.spare)
	}
	_, done = n.own.admitLeases(tab, admission{askedLeases: true}, n.mono())
	return !done
}

// servePull answers methodPull, a new owner's pull: the copies of a
// partition with ids after a cursor, in id order, up to a byte budget. A
// hand-off is served only to a new owner on this node's ring.
func (n *Node) servePull(ctx context.Context, tab *ring.Table, body msgpack.RawMessage) (any, error) {
	var req pullRequest
	if err := decodePartitioned(body, &req, &req.Partition, tab); err != nil {
		return nil, err
	}
	if err := n.admit(ctx, admission{entry: entryTransfer, tab: tab, p: req.Partition, ring: req.Ring}); err != nil {
		if errors.Is(err, errOtherRing) {
			return pullReply{OtherRing: true}, nil
		}
		return nil, err
	}
	// The copies and what the node says of its hold of them are read
	// together (store.view): a hand-off given up between the two
	// answered the copies it was dropping as held, and the new owner kept
	// them (chaos finding F17, the 30-minute run at 24209bc, session 370).
	if n.own.unconfirmed() {
		// Its copies may hold sessions whose loss the cluster reported
		// while it was stopped, and its own partitions are marked
		// distrusted only once a member tells it it was declared dead:
		// an owner that reconciled with it in between merged them, and
		// served them after the loss report (chaos finding F17, session
		// 588 of the 30-minute run at 2e4bd53). Checked before the
		// partition's state is read, which confirm follows.
		return pullReply{Unconfirmed: true}, nil
	}
	n.heedPullersDepartures(req)
	// A hand-off is served only by a source that knows its standing. With
	// seats, so is a reconciliation: a run the seats revoked for good may
	// still hold copies of a partition the cluster reported lost and read
	// as empty since, and merged back they would bring a session back
	// from the dead (TestExploreHandOffsSeated, seed 1: a seat cut off,
	// revoked, and pulled from once the cut healed). Seats grant no
	// revoked run, so a run granted under its ring was fenced by no one.
	if (req.Ring != 0 || n.own.seated) && !n.knowsItsStanding(ctx, tab) {
		return pullReply{Unconfirmed: true}, nil
	}
	if req.Distrusting && req.After == "" {
		n.store.awaitWrites()
	}
	var copies []*Session
	var reply pullReply
	n.store.view(req.Partition, func(sessions map[string]*Session, floor uint64) {
		copies = slices.Collect(maps.Values(sessions))
		st := n.own.load()
		reply = pullReply{Holds: n.vouchesTo(req.Partition, req.From), Floor: floor,
			Settled: st.settled(n.cfg.Name, req.Partition), Distrusts: st.distrusts(req.Partition),
			Unvouched: st.parts[req.Partition].unvouched, Lost: st.parts[req.Partition].reportedLost}
	})
	reply.Blank = n.blank(req.Partition)
	if reply.Lost {
		reply.LostGen = n.store.lossGeneration(req.Partition)
	}
	slices.SortFunc(copies, func(a, b *Session) int { return strings.Compare(a.ID, b.ID) })
	i, _ := slices.BinarySearchFunc(copies, req.After, func(s *Session, id string) int { return strings.Compare(s.ID, id) })
	if i < len(copies) && copies[i].ID == req.After {
		i++
	}
	budget := req.MaxBytes
	if budget <= 0 || budget > 4<<20 {
		budget = 4 << 20
	}
	for ; i < len(copies); i++ {
		size, err := encodedSize(copies[i])
		if err != nil {
			return reply, err
		}
		if len(reply.Sessions) > 0 && size > budget {
			reply.More = true
			break
		}
		budget -= size
		reply.Sessions = append(reply.Sessions, copies[i])
	}
	n.stats.HandoffSent.Add(uint64(len(reply.Sessions)))
	return reply, nil
}

// dropUnowned forgets copies of partitions this node does not own in tab.
func (n *Node) dropUnowned(tab *ring.Table) {
	total := 0
	// With the store held no ring is installed meanwhile, and the node
	// stops vouching for a partition before its copies go: a new owner
	// never ends its hand-off on a hold with nothing behind it.
	n.store.exclusive(func() {
		for p := range tab.Partitions() {
			if !owns(tab.Owners(p), n.cfg.Name) && n.own.forget(tab, p) {
				total += n.store.forgetLocked(p)
			}
		}
	})
	if total > 0 {
		n.log.Info("dropped copies of partitions owned elsewhere", "epoch", tab.Epoch(), "sessions", total)
	}
}

// UnderReplicated returns the partitions this node is primary of that have
// no buddy in its ring.
func (n *Node) UnderReplicated() []int {
	tab := n.own.table()
	if tab == nil {
		return nil
	}
	var out []int
	for p := range tab.Partitions() {
		if o := tab.Owners(p); o.Primary == n.cfg.Name && o.Buddy == "" {
			out = append(out, p)
		}
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

// Lost returns the latest loss of partitions this node saw, if any.
func (n *Node) Lost() LostPartitions { return n.own.lostPartitions() }

// Handoffs returns how many owned partitions this node is still waiting to
// be handed: it holds no complete copy of them yet.
func (n *Node) Handoffs() int { return n.own.load().transfers(false) }

// Pending returns how many owned partitions are still being handed over or
// reconciled.
func (n *Node) Pending() int { return n.own.load().transfers(true) }

// heedPullersDepartures reconciles this node before it answers a
// distrusting pull's first batch when the puller saw it leave its ring
// (pullRequest.Departed) and that is news here: the requester drops its
// copies for this node's if this node answers as a settled owner
// (replaceOwnIfDeclaredDead). This node's standing check is content with
// all leases but one, and the one missing may be the requester's: a node
// cut off and declared dead, back in a ring of three, held the lease of a
// new run that never saw it leave, answered the owner that had declared it
// dead as settled, and that owner, itself told it had been declared dead,
// replaced its copies, an acknowledged write among them, with the stale
// ones (TestExploreHandOffs, schedule 6).
func (n *Node) heedPullersDepartures(req pullRequest) {
	if !req.Distrusting || req.After != "" || !n.own.learnDepartures(req.From, req.Incarnation, req.Departed) {
		return
	}
	n.log.Warn("a member saw this node leave its ring; pulling every owned partition again", "member", req.From)
	n.stats.Rejoins.Add(1)
	n.reconcileAll(nil, true)
}
