package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tandem-io/tandem/ring"
)

// SetTable makes tab the ring this node serves by. Partitions the node now
// owns but did not own under the previous table become pending: the node
// pulls them from their previous owners in the background, and until a pull
// completes (or HandoffTimeout passes) each session asked for is first
// fetched from them, so a new owner never serves an empty or stale copy.
func (n *Node) SetTable(tab *ring.Table) error {
	if tab.Partitions() != len(n.store.parts) {
		return fmt.Errorf("%w: table has %d partitions, node has %d", ErrInvalid, tab.Partitions(), len(n.store.parts))
	}
	n.mu.Lock()
	prev := n.table.Load()
	if prev != nil && prev.Epoch() >= tab.Epoch() {
		n.mu.Unlock()
		return nil // an older or repeated view
	}
	before := prev
	if before == nil {
		// A node joining (or rejoining with empty memory) takes over from
		// the owners the ring had without it.
		before = tableWithout(tab, n.cfg.Name)
	}
	// Members this node did not see before may hold copies it lacks: a
	// node returning from a network cut, or one that was restarted. Every
	// partition this node owns is reconciled with them.
	var appeared, departed []string
	if prev != nil {
		for _, m := range tab.Members() {
			if !prev.Has(m.Name) {
				appeared = append(appeared, m.Name)
			}
		}
		for _, m := range prev.Members() {
			if !tab.Has(m.Name) {
				departed = append(departed, m.Name)
			}
		}
	}
	n.fencePartitions(prev, tab, departed)
	n.displace(prev, tab)
	var lost []int
	for p := range tab.Partitions() {
		o := tab.Owners(p)
		if prev != nil {
			if old := prev.Owners(p); !tab.Has(old.Primary) && (old.Buddy == "" || !tab.Has(old.Buddy)) {
				lost = append(lost, p)
			}
		}
		if pp := n.pending[p]; pp != nil && !pp.reconcile && !slices.ContainsFunc(pp.sources, tab.Has) && !slices.Contains(lost, p) {
			// Still waiting for a hand-off, and every node that held the
			// partition has left: its sessions are gone.
			lost = append(lost, p)
			delete(n.pending, p)
		}
		if !owns(o, n.cfg.Name) {
			delete(n.pending, p)
			continue
		}
		pp := n.pending[p]
		if pp == nil && before != nil && !owns(before.Owners(p), n.cfg.Name) {
			old := before.Owners(p)
			pp = &pendingPartition{since: time.Now(), sources: sourcesIn(tab, n.cfg.Name, old.Primary, old.Buddy)}
		}
		if len(appeared) > 0 {
			if pp == nil {
				pp = &pendingPartition{since: time.Now(), reconcile: true}
			}
			pp.sources = sourcesIn(tab, n.cfg.Name, append(pp.sources, appeared...)...)
		}
		if pp != nil && len(pp.sources) > 0 {
			n.pending[p] = pp
		}
	}
	n.ringMu.Lock() // waits for stores by the old ring (handover.go)
	n.prev.Store(prev)
	n.table.Store(tab)
	n.ringMu.Unlock()
	n.installed = n.mono()
	pending := len(n.pending)
	if len(lost) > 0 {
		slices.Sort(lost)
		n.lost = LostPartitions{Epoch: tab.Epoch(), Partitions: lost}
	}
	n.mu.Unlock()

	if len(lost) > 0 {
		n.stats.LostPartitions.Add(uint64(len(lost)))
		n.log.Error("both owners of partitions lost at once: their sessions are gone", "epoch", tab.Epoch(), "partitions", lost)
	}
	n.log.Info("ring changed", "epoch", tab.Epoch(), "members", len(tab.Members()), "appeared", appeared, "pending_partitions", pending)
	if len(appeared) > 0 {
		go n.tellAppeared(appeared)
	}
	select {
	case n.changed <- struct{}{}:
	default:
	}
	return nil
}

// sourcesIn returns the distinct names among names that are members of tab
// other than self.
func sourcesIn(tab *ring.Table, self string, names ...string) []string {
	var out []string
	for _, s := range names {
		if s != "" && s != self && tab.Has(s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// tableWithout returns tab's ring without member name, or nil if name is
// its only member.
func tableWithout(tab *ring.Table, name string) *ring.Table {
	var rest []ring.Member
	for _, m := range tab.Members() {
		if m.Name != name {
			rest = append(rest, m)
		}
	}
	t, err := ring.New(tab.Config(), 0, rest)
	if err != nil {
		return nil
	}
	return t
}

// owns reports whether name is one of o's owners.
func owns(o ring.Owners, name string) bool { return o.Primary == name || o.Buddy == name }

// awaitCopy makes sure this node holds the latest copy of session id before
// it serves it as primary: if partition p is still being handed over, it
// fetches the session from the previous owners and keeps the newest.
func (n *Node) awaitCopy(ctx context.Context, tab *ring.Table, p int, id string) error {
	n.mu.Lock()
	pp := n.pending[p]
	var sources []string
	handoff := false // the node holds no copy of its own yet
	if pp != nil {
		sources = slices.DeleteFunc(slices.Clone(pp.sources), func(s string) bool { return !tab.Has(s) })
		handoff = !pp.reconcile
	}
	n.mu.Unlock()
	req := readRequest{Partition: p, ID: id, Raw: true}
	if handoff {
		// A previous owner answers only once it has left its old ring
		// (handover.go).
		req.Ring = tab.Fingerprint()
	}
	held := false
	for _, src := range sources {
		var reply readReply
		if err := n.call(ctx, tab, src, methodRead, req, &reply); err != nil {
			return fmt.Errorf("fetch %s from previous owner %s: %w", id, src, err)
		}
		if reply.OtherRing {
			return fmt.Errorf("%w: %w: fetch %s from %s", ErrUnavailable, errOtherRing, id, src)
		}
		held = held || reply.Holds
		if reply.Session != nil && reply.Session.ID == id {
			n.merge(p, reply.Session)
		}
	}
	if handoff && len(sources) > 0 && !held {
		// None of the sources ever held the partition: this node's ring is
		// not yet the whole cluster's (a view still arriving after a
		// restart), so "no copy" means nothing yet.
		return fmt.Errorf("%w: none of %v holds partition %d yet", ErrUnavailable, sources, p)
	}
	return nil
}

// handingOver reports whether partition p is still being handed to this
// node: it owns p and has not yet pulled it from the previous owners.
func (n *Node) handingOver(p int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	pp := n.pending[p]
	return pp != nil && !pp.reconcile
}

// holds reports whether this node holds partition p: it owns it now, owned
// it under its previous ring, or has copies of it.
func (n *Node) holds(p int) bool {
	if tab := n.table.Load(); tab != nil && owns(tab.Owners(p), n.cfg.Name) {
		return true
	}
	if prev := n.prev.Load(); prev != nil && owns(prev.Owners(p), n.cfg.Name) {
		return true
	}
	return n.store.count(p) > 0
}

// rebalanceLoop pulls pending partitions from their previous owners, and
// drops copies of partitions this node no longer owns once the ring has
// been stable for HandoffTimeout (their new owners have pulled them by then,
// or have given up on them).
func (n *Node) rebalanceLoop() {
	defer n.done.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-n.stop
		cancel()
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var changedAt time.Time
	var dropped *ring.Table
	for {
		select {
		case <-n.stop:
			return
		case <-n.changed:
			changedAt = time.Now()
		case <-tick.C:
		}
		tab := n.table.Load()
		if tab == nil {
			continue
		}
		n.pullPending(ctx, tab)
		if dropped != tab && time.Since(changedAt) > n.cfg.HandoffTimeout {
			n.dropUnowned(tab)
			dropped = tab
		}
	}
}

// pullPending pulls every pending partition from one of its previous
// owners, a few partitions at a time. Partitions whose previous owners are
// all gone, or that waited longer than HandoffTimeout, stop being pending.
func (n *Node) pullPending(ctx context.Context, tab *ring.Table) {
	type job struct {
		p         int
		sources   []string
		reconcile bool
	}
	var jobs []job
	n.mu.Lock()
	for p, pp := range n.pending {
		sources := slices.DeleteFunc(slices.Clone(pp.sources), func(s string) bool { return !tab.Has(s) })
		switch {
		case len(sources) == 0:
			n.log.Warn("previous owners of partition left before handing it over", "partition", p, "sources", pp.sources)
			delete(n.pending, p)
		case time.Since(pp.since) > n.cfg.HandoffTimeout:
			n.log.Warn("hand-off timed out; serving own copies", "partition", p, "sources", pp.sources)
			delete(n.pending, p)
		default:
			jobs = append(jobs, job{p, sources, pp.reconcile})
		}
	}
	n.mu.Unlock()
	if len(jobs) == 0 {
		return
	}
	work := make(chan job)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for j := range work {
				// Every source is pulled: a previous owner and a member
				// returning from a network cut may each hold writes the
				// other lacks, and merging keeps the newer of each.
				var err error
				held, refused := false, false
				for _, src := range j.sources {
					holds, e := n.pull(ctx, tab, j.p, src, !j.reconcile)
					if e != nil {
						err = e
						refused = refused || errors.Is(e, errOtherRing)
					}
					held = held || holds
				}
				if err == nil && !held && !j.reconcile {
					err = fmt.Errorf("none of %v holds partition %d yet", j.sources, j.p)
				}
				switch {
				case err == nil:
					n.finishPending(j.p, tab)
				case refused:
					// A source is alive and serves by another ring: it may
					// still serve the partition. Not given up on.
					n.stillPending(j.p)
					n.log.Debug("partition pull refused until the rings agree; will retry", "partition", j.p, "err", err)
				default:
					n.log.Debug("partition pull failed; will retry", "partition", j.p, "err", err)
				}
			}
		})
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
}

// pull copies partition p from member src, in batches, and reports
// whether src holds the partition at all. A hand-off (not a
// reconciliation) is served only once src is on this node's ring.
func (n *Node) pull(ctx context.Context, tab *ring.Table, p int, src string, handoff bool) (bool, error) {
	req := pullRequest{Partition: p, MaxBytes: n.cfg.HandoffBytes}
	if handoff {
		req.Ring = tab.Fingerprint()
	}
	for {
		var reply pullReply
		if err := n.call(ctx, tab, src, methodPull, req, &reply); err != nil {
			return false, fmt.Errorf("pull partition %d from %s: %w", p, src, err)
		}
		if reply.OtherRing {
			return false, fmt.Errorf("%w: %w: pull partition %d from %s", ErrUnavailable, errOtherRing, p, src)
		}
		for _, s := range reply.Sessions {
			if s != nil && ValidateID(s.ID) == nil && tab.Partition(s.ID) == p {
				n.merge(p, s)
				req.After = s.ID
			}
		}
		n.stats.HandoffReceived.Add(uint64(len(reply.Sessions)))
		if !reply.More {
			return reply.Holds, nil
		}
	}
}

// merge keeps the newer of a copy from another node and this node's own,
// counting and logging a conflict when they are different copies of the
// same version (writes acknowledged on both sides of a network cut).
func (n *Node) merge(p int, s *Session) {
	n.clock.observe(s.Stamp)
	prev, stored := n.store.putIfNewer(p, s)
	if conflicting(prev, s) {
		n.stats.Conflicts.Add(1)
		kept, lost := prev, s
		if stored {
			kept, lost = s, prev
		}
		n.log.Warn("conflicting copies reconciled", "session", s.ID, "version", s.Version,
			"kept_writer", kept.Writer, "kept_stamp", kept.Stamp, "lost_writer", lost.Writer, "lost_stamp", lost.Stamp)
	}
}

// stillPending restarts partition p's hand-off timeout: a source answered.
func (n *Node) stillPending(p int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if pp := n.pending[p]; pp != nil {
		pp.since = time.Now()
	}
}

// finishPending ends partition p's hand-off, if tab is still the ring.
func (n *Node) finishPending(p int, tab *ring.Table) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.table.Load() != tab {
		return // the ring moved on; the next round decides
	}
	if _, ok := n.pending[p]; ok {
		delete(n.pending, p)
		if len(n.pending) == 0 {
			n.log.Info("hand-off complete: holding every owned partition", "epoch", tab.Epoch())
		}
	}
}

// servePull answers a new owner's pull: the copies of a partition with ids
// after a cursor, in id order, up to a byte budget.
func (n *Node) servePull(req *pullRequest) (pullReply, error) {
	copies := n.store.snapshot(req.Partition)
	slices.SortFunc(copies, func(a, b *Session) int { return strings.Compare(a.ID, b.ID) })
	i, _ := slices.BinarySearchFunc(copies, req.After, func(s *Session, id string) int { return strings.Compare(s.ID, id) })
	if i < len(copies) && copies[i].ID == req.After {
		i++
	}
	budget := req.MaxBytes
	if budget <= 0 || budget > 4<<20 {
		budget = 4 << 20
	}
	reply := pullReply{Holds: n.holds(req.Partition)}
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
	for p := range tab.Partitions() {
		if !owns(tab.Owners(p), n.cfg.Name) {
			total += n.store.drop(p)
		}
	}
	if total > 0 {
		n.log.Info("dropped copies of partitions owned elsewhere", "epoch", tab.Epoch(), "sessions", total)
	}
}

// UnderReplicated returns the partitions this node is primary of that have
// no buddy in its ring.
func (n *Node) UnderReplicated() []int {
	tab := n.table.Load()
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
func (n *Node) Lost() LostPartitions {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.lost
}

// Handoffs returns how many owned partitions this node is still waiting to
// be handed: it holds no complete copy of them yet.
func (n *Node) Handoffs() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, pp := range n.pending {
		if !pp.reconcile {
			c++
		}
	}
	return c
}

// Pending returns how many owned partitions are still being handed over or
// reconciled.
func (n *Node) Pending() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.pending)
}
