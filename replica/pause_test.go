package replica

import (
	"errors"
	"sync"
	"testing"
	"time"
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
	c := newTestCluster(t, 3, nil)
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
}

// A node the others saw disappear and reappear is told to reconcile, so it
// stops serving its stale copies even if it never noticed anything.
func TestReappearedNodeIsToldToReconcile(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	x, id := declaredDeadAndBack(t, c, false)
	waitFor(t, 5*time.Second, "the returning node to serve the newer copy", func() bool {
		s, err := x.Get(testCtx(t), id, true)
		return err == nil && s.Version == 2
	})
	if x.stats.Pauses.Load() != 0 {
		t.Fatal("a pause was detected where there was none")
	}
}

// Every caller that finds the heartbeat fresh after a pause also finds the
// quarantine: none of the requests arriving together as the node resumes
// may serve a stale copy while another one is still reporting the pause.
func TestPauseQuarantineIsSeenByEveryConcurrentCaller(t *testing.T) {
	// Virtual time jumps to the next timer while the network is quiet: a
	// quarantine as long as the test keeps a jump from ending it between
	// two callers, which would be a quarantine rightly over.
	c := newTestCluster(t, 1, func(cfg *Config) { cfg.PauseQuarantine = 1000 * time.Hour })
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
}

// A node that runs again after a pause does not know yet whether it was
// declared dead meanwhile: its copies may hold sessions whose loss the
// cluster reported while it was stopped. Until it knows, an owner that
// reconciles with it, or fetches from it, takes none of them (chaos
// finding F17, session 588 of the 30-minute run at 2e4bd53).
func TestANodeRecoveringFromAPauseGivesNoOwnerItsCopies(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.PauseQuarantine = 1000 * time.Hour })
	x := c.node("node-2")
	id := ""
	for i := 0; id == ""; i++ {
		if x.Table().OwnersOf(sessionID(i)).Primary == x.Name() {
			id = sessionID(i)
		}
	}
	put(t, x, id, "v", 1)
	tab := x.Table()
	p := tab.Partition(id)
	buddy := c.node(tab.OwnersOf(id).Buddy)
	waitFor(t, 5*time.Second, "the buddy to hold the copy", func() bool { return buddy.store.get(p, id) != nil })
	// The buddy's copies went with a loss the cluster reported while x
	// was stopped.
	buddy.store.drop(p)
	x.beat.Store(int64(x.mono() - time.Hour))
	x.checkPause()
	if !x.own.quarantined() {
		t.Fatal("pause not detected")
	}

	holds, settled, _, err := buddy.pull(testCtx(t), buddy.own.table(), p, x.Name(), false, false)
	if err != nil {
		t.Fatalf("reconciling with the paused node: %v", err)
	}
	if holds || settled {
		t.Errorf("the paused node's pull answer: holds %v, settled %v; want neither", holds, settled)
	}
	if got := buddy.store.get(p, id); got != nil {
		t.Fatalf("the owner merged the paused node's copy v%d of a session it lost", got.Version)
	}
	plan := &fetchPlan{sources: []string{x.Name()}}
	if err := buddy.fetch(testCtx(t), buddy.own.table(), p, id, plan); err != nil {
		t.Fatalf("fetching from the paused node: %v", err)
	}
	if got := buddy.store.get(p, id); got != nil {
		t.Fatalf("the owner fetched the paused node's copy v%d of a session it lost", got.Version)
	}
}

// A node that drains while recovering from a pause pushes none of its
// copies (it does not know yet whether they are distrusted) and gives no
// lease back: the owners that follow wait for its leases to lapse and
// take its partitions over from their other owners, as after a crash.
func TestANodeDrainingWhileRecoveringFromAPauseLeavesAsACrashedNodeWould(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.PauseQuarantine = 1000 * time.Hour })
	x := c.node("node-2")
	id := idOwnedBy(t, x, true)
	put(t, x, id, "v", 1)
	waitFor(t, 10*time.Second, "hand-offs", func() bool { return x.Handoffs() == 0 })
	x.beat.Store(int64(x.mono() - time.Hour))
	x.checkPause()
	sent := x.stats.HandoffSent.Load()
	others := []string{"node-0", "node-1"}
	rest := ringOf(t, c, 1000, others...)
	if err := x.SetTable(rest); err != nil {
		t.Fatal(err)
	}
	if err := x.Drain(testCtx(t), rest); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("drain while recovering from a pause: %v, want ErrUnavailable", err)
	}
	if got := x.stats.HandoffSent.Load(); got != sent {
		t.Fatalf("the paused node pushed %d copies", got-sent)
	}
	x.stop()
	c.publishTo(map[string][]string{"node-0": others, "node-1": others})
	if s := put(t, c.node("node-0"), id, "v", 2); s.Version != 2 {
		t.Fatalf("write after the leave made v%d, want v2 (the buddy's v1 kept)", s.Version)
	}
	if c.node("node-0").stats.FenceWaits.Load()+c.node("node-1").stats.FenceWaits.Load() == 0 {
		t.Fatal("writes did not wait for the leases of a node that gave none back")
	}
}
