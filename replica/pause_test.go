package replica

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tandem-io/tandem/ring"
)

// declaredDeadAndBack plays out a node being declared dead by the others
// (who promote its buddies and take a write) while its own ring never
// changes, then being taken back into their ring. It returns the node and
// the session it was primary of.
func declaredDeadAndBack(t *testing.T, c *testCluster, cutNotice bool) (*testNode, string) {
	t.Helper()
	x := c.node("node-2")
	id := ""
	for i := 0; id == ""; i++ {
		if x.Table().OwnersOf(sessionID(i)).Primary == x.Name() {
			id = sessionID(i)
		}
	}
	put(t, x, id, "v", 1)
	waitFor(t, 5*time.Second, "ready", func() bool { return c.node("node-0").Ready() && c.node("node-1").Ready() && x.Ready() })
	others := []string{"node-0", "node-1"}
	c.publishTo(map[string][]string{"node-0": others, "node-1": others})
	if s := put(t, c.node("node-0"), id, "v", 2); s.Version != 2 {
		t.Fatalf("write while x was dead made v%d", s.Version)
	}
	if cutNotice {
		for _, name := range others {
			c.node(name).faults.Cut(x.member.Peer)
		}
	}
	all := []string{"node-0", "node-1", "node-2"}
	c.publishTo(map[string][]string{"node-0": all, "node-1": all})
	return x, id
}

// A node that was paused long enough to be declared dead reconciles before
// it serves again, though its own ring never changed.
func TestPausedNodeDoesNotServeStaleCopies(t *testing.T) {
	forEachLeaseMode(t, func(t *testing.T, mode func(*Config)) {
		c := newTestClusterIn(t, mode, 3, nil)
		x, id := declaredDeadAndBack(t, c, true)
		x.beat.Store(int64(x.mono() - time.Hour)) // as if the node had not run for an hour
		x.checkPause()
		if x.stats.Pauses.Load() == 0 || !x.own.quarantined() {
			t.Fatal("pause not detected")
		}
		// Quarantined, it serves nothing from its copies; its reads go to the
		// buddy, which has the write it missed.
		s, err := x.Get(testCtx(t), id, true)
		if err != nil || s.Version != 2 {
			t.Fatalf("read on the paused node: %+v %v, want v2", s, err)
		}
		// Once the quarantine is over it has reconciled and serves v2 itself.
		waitFor(t, 10*time.Second, "the quarantine to end", func() bool { return !x.own.quarantined() })
		waitFor(t, 5*time.Second, "reconciliation", func() bool { return x.Pending() == 0 })
		p := x.Table().Partition(id)
		if got := x.store.get(p, id); got == nil || got.Version != 2 {
			t.Fatalf("after the quarantine the node holds %+v, want v2", got)
		}
	})
}

// A node the others saw disappear and reappear is told to reconcile, so it
// stops serving its stale copies even if it never noticed anything.
func TestReappearedNodeIsToldToReconcile(t *testing.T) {
	forEachLeaseMode(t, func(t *testing.T, mode func(*Config)) {
		c := newTestClusterIn(t, mode, 3, nil)
		x, id := declaredDeadAndBack(t, c, false)
		waitFor(t, 5*time.Second, "the returning node to serve the newer copy", func() bool {
			s, err := x.Get(testCtx(t), id, true)
			return err == nil && s.Version == 2
		})
		if x.stats.Pauses.Load() != 0 {
			t.Fatal("a pause was detected where there was none")
		}
	})
}

// Every caller that finds the heartbeat fresh after a pause also finds the
// quarantine: none of the requests arriving together as the node resumes
// may serve a stale copy while another one is still reporting the pause.
func TestPauseQuarantineIsSeenByEveryConcurrentCaller(t *testing.T) {
	forEachLeaseMode(t, func(t *testing.T, mode func(*Config)) {
		// Virtual time jumps to the next timer while the network is quiet: a
		// quarantine as long as the test keeps a jump from ending it between
		// two callers, which would be a quarantine rightly over.
		c := newTestClusterIn(t, mode, 1, func(cfg *Config) { cfg.PauseQuarantine = 1000 * time.Hour })
		x := c.node("node-0")
		for trial := range 200 {
			x.own.quarantine.Store(0)
			x.beat.Store(int64(x.mono() - time.Hour))
			const callers = 8
			var start, done sync.WaitGroup
			start.Add(1)
			missed := make(chan int, callers)
			for i := range callers {
				done.Add(1)
				go func() {
					defer done.Done()
					start.Wait()
					x.checkPause()
					if !x.own.quarantined() {
						missed <- i
					}
				}()
			}
			start.Done()
			done.Wait()
			close(missed)
			if i, ok := <-missed; ok {
				t.Fatalf("trial %d: caller %d returned from checkPause unquarantined after a pause", trial, i)
			}
		}
		if got := x.stats.Pauses.Load(); got != 200 {
			t.Fatalf("pauses counted: %d, want one per pause (200)", got)
		}
	})
}

// A node that runs again after a pause does not know yet whether it was
// declared dead meanwhile: its copies may hold sessions whose loss the
// cluster reported while it was stopped. Until every member has granted
// it a lease since, telling it, an owner that reconciles with it, or
// fetches from it, takes none of them and tries again; its quarantine
// ending first changes nothing (chaos finding F17, session 588 of the
// 30-minute run at 2e4bd53).
func TestANodeResumedAfterAPauseGivesNoCopyUntilItKnowsItsStanding(t *testing.T) {
	forEachLeaseMode(t, func(t *testing.T, mode func(*Config)) {
		c := newTestClusterIn(t, mode, 3, nil)
		x := c.node("node-2")
		id := idOwnedBy(t, x, true)
		put(t, x, id, "v", 1)
		tab := x.Table()
		p := tab.Partition(id)
		buddy := c.node(tab.OwnersOf(id).Buddy)
		waitFor(t, 5*time.Second, "the buddy to hold the copy", func() bool { return buddy.store.get(p, id) != nil })
		// The buddy's copies went with a loss the cluster reported while x
		// was stopped; x's lease requests go unanswered.
		buddy.store.drop(p)
		for _, name := range []string{"node-0", "node-1"} {
			x.faults.Cut(c.node(name).member.Peer)
		}
		x.beat.Store(int64(x.mono() - time.Hour))
		x.checkPause()
		if !x.own.unconfirmed() {
			t.Fatal("a node that found it was paused took its standing as known")
		}
		waitFor(t, 10*time.Second, "the quarantine to end", func() bool { return !x.own.quarantined() })

		// A reconciliation takes nothing from it; a hand-off waits for it.
		holds, _, _, _, _, err := buddy.pull(testCtx(t), buddy.own.table(), p, x.Name(), sourceAsk{}, nil)
		if err != nil || holds {
			t.Fatalf("reconciling with the node resumed after a pause: holds %v, %v; want no hold, no error", holds, err)
		}
		if _, _, _, _, _, err := buddy.pull(testCtx(t), buddy.own.table(), p, x.Name(), sourceAsk{handoff: true}, nil); !errors.Is(err, errUnconfirmed) {
			t.Fatalf("a hand-off from the node resumed after a pause: %v, want errUnconfirmed", err)
		}
		if got := buddy.store.get(p, id); got != nil {
			t.Fatalf("the owner merged the resumed node's copy v%d of a session it lost", got.Version)
		}
		if err := buddy.fetch(testCtx(t), buddy.own.table(), p, id, &fetchPlan{sources: []string{x.Name()}}); err != nil {
			t.Fatalf("a reconciliation's fetch from the node resumed after a pause: %v", err)
		}
		handOff := &fetchPlan{sources: []string{x.Name()}, ring: buddy.own.table().Fingerprint()}
		if err := buddy.fetch(testCtx(t), buddy.own.table(), p, id, handOff); !errors.Is(err, errUnconfirmed) {
			t.Fatalf("a hand-off's fetch from the node resumed after a pause: %v, want errUnconfirmed", err)
		}
		if got := buddy.store.get(p, id); got != nil {
			t.Fatalf("the owner fetched the resumed node's copy v%d of a session it lost", got.Version)
		}

		// Once every member has granted it a lease (none declared it dead),
		// it answers again.
		x.faults.HealAll()
		waitFor(t, 10*time.Second, "the node to learn its standing", func() bool { return !x.own.unconfirmed() })
		if _, _, _, _, _, err := buddy.pull(testCtx(t), buddy.own.table(), p, x.Name(), sourceAsk{}, nil); err != nil {
			t.Fatalf("reconciling once the node knows its standing: %v", err)
		}
	})
}

// Reconciling with a node that does not know yet whether it was declared
// dead holds up no write: the owners' writes fetch from the reconciliation's
// sources first, and take nothing from it (finding of a review: every write
// failed until the resumed node had heard from every member).
func TestWritesGoOnWhileReconcilingWithAnUnconfirmedNode(t *testing.T) {
	forEachLeaseMode(t, func(t *testing.T, mode func(*Config)) {
		c := newTestClusterIn(t, mode, 3, nil)
		x := c.node("node-2")
		b := c.node("node-0")
		id := idOwnedByPair(b, "node-1")
		put(t, b, id, "v", 1)
		waitFor(t, 10*time.Second, "hand-offs", func() bool {
			return b.Handoffs() == 0 && c.node("node-1").Handoffs() == 0 && x.Handoffs() == 0
		})
		for _, name := range []string{"node-0", "node-1"} {
			x.faults.Cut(c.node(name).member.Peer) // x hears from no one
		}
		x.beat.Store(int64(x.mono() - time.Hour))
		x.checkPause()
		b.reconcileAll([]string{x.Name()}, false)
		if s := put(t, b, id, "v", 2); s.Version != 2 {
			t.Fatalf("write while reconciling with an unconfirmed node made v%d, want v2", s.Version)
		}
		if !x.own.unconfirmed() {
			t.Fatal("the node learned its standing though it heard from no one")
		}
	})
}

// A source that does not know yet whether it was declared dead is waited
// for, as one on another ring is: its answer is neither a hold nor a
// loss, so a returning owner's hand-off does not complete without it.
func TestAPullWaitsForASourceThatDoesNotKnowItsStanding(t *testing.T) {
	tab, err := ring.New(ring.DefaultConfig(), 1, []ring.Member{{Name: "a", Peer: "a"}, {Name: "b", Peer: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	n := New(Config{Name: "a", Caller: unconfirmedSource{}, HandoffTimeout: 300 * time.Millisecond})
	defer n.Close()
	if err := n.SetTable(tab); err != nil {
		t.Fatal(err)
	}
	p := tab.Partition(sessionID(1))
	_, _, _, _, _, err = n.pull(context.Background(), tab, p, "b", sourceAsk{handoff: true}, nil)
	if !errors.Is(err, errUnconfirmed) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("pull from a source that does not know its standing: %v, want errUnconfirmed", err)
	}
	// Well past HandoffTimeout, the hand-offs still wait for it: none
	// is given up and no loss reported.
	time.Sleep(1500 * time.Millisecond) // five HandoffTimeouts: a give-up would have come
	if lost := n.stats.LostPartitions.Load(); lost != 0 {
		t.Fatalf("%d partitions reported lost while their source did not know its standing", lost)
	}
	if n.Handoffs() == 0 {
		t.Fatal("the hand-offs ended without their source")
	}
}

// unconfirmedSource answers every pull as a node that resumed after a
// pause and does not know yet whether it was declared dead.
type unconfirmedSource struct{}

func (unconfirmedSource) Call(_ context.Context, _, method string, args, reply any) error {
	if r, ok := reply.(*pullReply); ok && method == methodPull {
		*r = pullReply{Unconfirmed: true}
		return nil
	}
	return fmt.Errorf("%s: not answered here", method)
}

// A node drained while it does not know yet whether it was declared dead
// during a pause pushes none of its copies and gives no lease back: the
// members it leaves take its partitions over from their other owners, as
// after a crash.
func TestANodeDrainedBeforeItKnowsItsStandingLeavesAsACrashedNodeWould(t *testing.T) {
	c, x, id := primaryAtRest(t)
	// The others took x out of their ring while it was stopped: they
	// grant it no lease, but would take its pushes.
	others := []string{"node-0", "node-1"}
	c.publishTo(map[string][]string{"node-0": others, "node-1": others})
	x.beat.Store(int64(x.mono() - time.Hour))
	x.checkPause()
	sent := x.stats.HandoffSent.Load()
	rest := ringOf(t, c, 1000, others...)
	if err := x.SetTable(rest); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(testCtx(t), 2*time.Second)
	defer cancel()
	if err := x.Drain(ctx, rest); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("drain before the node knows its standing: %v, want ErrUnavailable", err)
	}
	if got := x.stats.HandoffSent.Load(); got != sent {
		t.Fatalf("the node pushed %d copies", got-sent)
	}
	x.stop()
	for _, name := range others {
		o := c.node(name).own
		o.mu.Lock()
		got := o.released[x.Name()]
		o.mu.Unlock()
		if got != nil {
			t.Fatalf("%s got a lease release from the node: %v", name, got)
		}
	}
	if s := put(t, c.node("node-0"), id, "v", 2); s.Version != 2 {
		t.Fatalf("write after the leave made v%d, want v2 (the buddy's v1 kept)", s.Version)
	}
}

// A node whose ring shrank to itself while it was paused (it heard from
// no one and suspects everyone) does not take that ring for the cluster:
// with no member to ask, it stays unconfirmed until members it can ask
// are back in its ring and grant it leases.
func TestANodeAloneInItsRingAfterAPauseStaysUnconfirmed(t *testing.T) {
	forEachLeaseMode(t, func(t *testing.T, mode func(*Config)) {
		c := newTestClusterIn(t, mode, 3, nil)
		x := c.node("node-2")
		waitFor(t, 5*time.Second, "ready", func() bool { return x.Ready() })
		for _, name := range []string{"node-0", "node-1"} {
			x.faults.Cut(c.node(name).member.Peer)
		}
		x.beat.Store(int64(x.mono() - time.Hour))
		x.checkPause()
		c.publishTo(map[string][]string{"node-2": {"node-2"}})
		x.faults.HealAll()
		x.renewLeases()
		if !x.own.unconfirmed() {
			t.Fatal("a node alone in its ring after a pause took its standing as known")
		}
		c.publishTo(map[string][]string{"node-2": {"node-0", "node-1", "node-2"}})
		waitFor(t, 10*time.Second, "the node to learn its standing", func() bool { return !x.own.unconfirmed() })
	})
}
