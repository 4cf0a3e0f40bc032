package replica

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tandem-io/tandem/ring"
)

// cutOff cuts x off from every other node of c, both ways.
func cutOff(c *testCluster, x *testNode) {
	for _, n := range c.list() {
		if n != x {
			n.faults.Cut(x.member.Peer)
			x.faults.Cut(n.member.Peer)
		}
	}
}

// cutCallsFrom cuts x's calls to every other node of c, one way: the
// others still reach x.
func cutCallsFrom(c *testCluster, x *testNode) {
	for _, n := range c.list() {
		if n != x {
			x.faults.Cut(n.member.Peer)
		}
	}
}

// idOwnedBy returns a session id whose owners in x's ring give x the role
// asked for: primary, or buddy.
func idOwnedBy(t *testing.T, x *testNode, primary bool) string {
	t.Helper()
	for i := range 10000 {
		o := x.Table().OwnersOf(sessionID(i))
		if (primary && o.Primary == x.Name()) || (!primary && o.Buddy == x.Name()) {
			return sessionID(i)
		}
	}
	t.Fatal("no session with the wanted owner")
	return ""
}

// read is one read's outcome, for the staleness check.
type read struct {
	invoked time.Time
	version uint64
}

// readUntil reads id through x until stop is closed, and returns every
// read that succeeded. It calls first after the first one.
func readUntil(x *testNode, id string, stop <-chan struct{}, first func()) []read {
	var out []read
	defer func() {
		if len(out) == 0 {
			first()
		}
	}()
	for {
		select {
		case <-stop:
			return out
		default:
		}
		at := time.Now()
		ctx, cancel := within(x, 50*time.Millisecond)
		s, err := x.Get(ctx, id, true)
		cancel()
		if err == nil {
			out = append(out, read{at, s.Version})
			if len(out) == 1 {
				first()
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// A node cut off from everyone, gossip too, goes on seeing its old ring.
// It must stop serving its copies (as primary, and as buddy of a primary
// it cannot reach) before the others, who have declared it dead, take its
// partitions over and acknowledge writes: no read through it returns a
// version older than one acknowledged before the read began.
func TestCutOffNodeStopsServingBeforeTheOthersTakeOver(t *testing.T) {
	forEachLeaseMode(t, func(t *testing.T, mode func(*Config)) {
		c := newTestClusterIn(t, mode, 3, nil)
		x := c.node("node-2")
		asPrimary, asBuddy := idOwnedBy(t, x, true), idOwnedBy(t, x, false)
		for _, id := range []string{asPrimary, asBuddy} {
			put(t, c.node("node-0"), id, "v", 1)
		}
		waitFor(t, 10*time.Second, "leases", func() bool { serving(x.Node); return len(x.own.missingLeases(x.Table(), x.mono())) == 0 })

		stop := make(chan struct{})
		var wg sync.WaitGroup
		reads := map[string][]read{}
		var mu sync.Mutex
		var started sync.WaitGroup
		for _, id := range []string{asPrimary, asBuddy} {
			started.Add(1)
			wg.Go(func() {
				r := readUntil(x, id, stop, started.Done)
				mu.Lock()
				reads[id] = r
				mu.Unlock()
			})
		}
		started.Wait()
		cutOff(c, x)
		others := []string{"node-0", "node-1"}
		c.publishTo(map[string][]string{"node-0": others, "node-1": others})
		acked := map[string]time.Time{}
		for _, id := range []string{asPrimary, asBuddy} {
			if s := put(t, c.node("node-0"), id, "v", 2); s.Version != 2 {
				t.Fatalf("write to %s while x was cut off made v%d", id, s.Version)
			}
			acked[id] = time.Now()
		}
		c.sleep(200 * time.Millisecond) // x keeps being asked after the writes
		close(stop)
		wg.Wait()

		for _, id := range []string{asPrimary, asBuddy} {
			if len(reads[id]) == 0 {
				t.Fatalf("x never served %s, even before the cut", id)
			}
			for _, r := range reads[id] {
				if r.invoked.After(acked[id]) && r.version < 2 {
					t.Fatalf("x served v%d of %s in a read begun %v after v2 was acknowledged", r.version, id, r.invoked.Sub(acked[id]))
				}
			}
		}
		fenced := uint64(0)
		for _, name := range others {
			fenced += c.node(name).stats.FenceWaits.Load()
		}
		if fenced == 0 {
			t.Fatal("the new owners acknowledged writes without waiting for x's leases to lapse")
		}
		if x.stats.LeaseMisses.Load() == 0 {
			t.Fatal("x never found itself without leases")
		}
	})
}

// A node the others declared dead and took back learns it from its next
// lease, even if nothing else tells it (here the others cannot reach it to
// ask it to reconcile), and pulls every partition it owns before serving.
func TestNodeDeclaredDeadPullsEverythingBeforeServing(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	x, id := declaredDeadAndBack(t, c, true)
	s, err := x.Get(testCtx(t), id, true)
	if err != nil || s.Version != 2 {
		t.Fatalf("read through x after it was taken back: %+v %v, want v2", s, err)
	}
	if x.stats.Rejoins.Load() == 0 {
		t.Fatal("x never learned it had been declared dead")
	}
	waitFor(t, 5*time.Second, "x to pull its partitions", x.Ready)
	p := x.Table().Partition(id)
	if got := x.store.get(p, id); got == nil || got.Version != 2 {
		t.Fatalf("x holds %+v, want v2", got)
	}
}

// A node in a ring smaller than MinMembers serves nothing, grants no
// lease and is not ready; grown back, it serves again.
func TestTooFewMembersServesNothing(t *testing.T) {
	forEachLeaseMode(t, func(t *testing.T, mode func(*Config)) {
		c := newTestClusterIn(t, mode, 3, func(cfg *Config) { cfg.MinMembers = 2 })
		x := c.node("node-2")
		id := idOwnedBy(t, x, true)
		put(t, x, id, "v", 1)
		c.publishTo(map[string][]string{"node-2": {"node-2"}})
		ctx, cancel := within(x, 200*time.Millisecond)
		defer cancel()
		if _, err := x.Get(ctx, id, true); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("read alone with MinMembers 2: %v, want ErrUnavailable", err)
		}
		if x.Ready() {
			t.Fatal("a node below MinMembers reports ready")
		}
		if _, err := x.own.grant("node-0", "", x.mono()); err == nil {
			t.Fatal("a node below MinMembers granted a lease")
		}
		c.publish()
		if s, err := x.Get(testCtx(t), id, true); err != nil || s.Version != 1 {
			t.Fatalf("read with the ring whole again: %+v %v", s, err)
		}
	})
}

// A drained node gives its leases back, so the owners taking over its
// partitions acknowledge writes at once; a crashed node's leases make them
// wait until they lapse.
func TestDrainGivesLeasesBack(t *testing.T) {
	forEachLeaseMode(t, func(t *testing.T, mode func(*Config)) {
		for _, drain := range []bool{true, false} {
			c := newTestClusterIn(t, mode, 3, nil)
			x := c.node("node-2")
			id := idOwnedBy(t, x, true)
			put(t, x, id, "v", 1)
			waitFor(t, 10*time.Second, "leases", func() bool { serving(x.Node); return len(x.own.missingLeases(x.Table(), x.mono())) == 0 })
			// Holding every partition it owns: a node still being handed
			// some gives no lease back (TestALeaverStillBeingHandedPartitionsGivesNoLeaseBack).
			waitFor(t, 10*time.Second, "hand-offs", func() bool { return x.Handoffs() == 0 })
			others := []string{"node-0", "node-1"}
			rest := ringOf(t, c, 1000, others...)
			if drain {
				if err := x.SetTable(rest); err != nil {
					t.Fatal(err)
				}
				if err := x.Drain(testCtx(t), rest); err != nil {
					t.Fatal(err)
				}
			} else {
				x.stop()
			}
			c.publishTo(map[string][]string{"node-0": others, "node-1": others})
			put(t, c.node("node-0"), id, "v", 2)
			fenced := c.node("node-0").stats.FenceWaits.Load() + c.node("node-1").stats.FenceWaits.Load()
			if drain && fenced != 0 {
				t.Fatalf("writes waited %d times for the leases of a node that gave them back", fenced)
			}
			if !drain && fenced == 0 {
				t.Fatal("writes to a crashed node's partitions did not wait for its leases")
			}
		}
	})
}

// primaryAtRest returns a 3-node cluster, its node-2, and a session
// node-2 is primary of, written once, with node-2's hand-offs done.
func primaryAtRest(t *testing.T) (*testCluster, *testNode, string) {
	t.Helper()
	c := newTestCluster(t, 3, nil)
	x := c.node("node-2")
	id := idOwnedBy(t, x, true)
	put(t, x, id, "v", 1)
	waitFor(t, 10*time.Second, "hand-offs", func() bool { return x.Handoffs() == 0 })
	return c, x, id
}

// idOwnedByPair returns a session whose primary is b and whose buddy is
// the member named buddy.
func idOwnedByPair(b *testNode, buddy string) string {
	for i := 0; ; i++ {
		if o := b.Table().OwnersOf(sessionID(i)); o.Primary == b.Name() && o.Buddy == buddy {
			return sessionID(i)
		}
	}
}

// A leaving node keeps its copies however long its drain takes: copies of
// partitions a node does not own are dropped HandoffTimeout after a ring
// change, but a node out of its own ring is draining them.
func TestALeaverKeepsItsCopiesUntilItHasDrainedThem(t *testing.T) {
	c, x, id := primaryAtRest(t)
	others := []string{"node-0", "node-1"}
	rest := ringOf(t, c, 1000, others...)
	if err := x.SetTable(rest); err != nil {
		t.Fatal(err)
	}
	c.sleep(3 * x.cfg.HandoffTimeout) // the drain is slow to start
	if got := x.store.get(rest.Partition(id), id); got == nil {
		t.Fatal("the leaver dropped its copy before draining it")
	}
	if err := x.Drain(testCtx(t), rest); err != nil {
		t.Fatal(err)
	}
	x.stop()
	c.publishTo(map[string][]string{"node-0": others, "node-1": others})
	if s := put(t, c.node("node-0"), id, "v", 2); s.Version != 2 {
		t.Fatalf("write after the drain made v%d, want v2", s.Version)
	}
}

// An idle node asks for no leases: the background renewal runs only while
// the node serves requests that need them, and stops a lease after the
// last one. The first request after a quiet spell asks on demand and is
// served.
func TestAnIdleNodeAsksForNoLeases(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	id := sessionID(7)
	primary, _ := c.ownersOf(id)
	put(t, primary, id, "v", 1)
	lease := primary.cfg.LeaseDuration
	asked := func() time.Duration {
		latest := time.Duration(0)
		for _, l := range *primary.own.held.Load() {
			latest = max(latest, l.asked)
		}
		return latest
	}
	// While it serves, it renews: its newest lease keeps moving.
	first := asked()
	for end := c.before(lease); end(); {
		if _, err := primary.Get(testCtx(t), id, true); err != nil {
			t.Fatal(err)
		}
		c.sleep(lease / 12)
	}
	if asked() <= first {
		t.Fatalf("no lease renewed while the node served for %v", lease)
	}
	// Quiet for four leases: after the first, nothing more is asked.
	c.sleep(lease + lease/6)
	quiet := asked()
	c.sleep(3 * lease)
	if got := asked(); got != quiet {
		t.Fatalf("an idle node asked for a lease at %v, %v after it went quiet", got, got-quiet)
	}
	if missing := primary.own.missingLeases(primary.Table(), primary.mono()); len(missing) != 2 {
		t.Fatalf("after four idle leases the node still holds leases: missing only %v", missing)
	}
	// The next request asks on demand and is served.
	if s, err := primary.Get(testCtx(t), id, true); err != nil || s.Version != 1 {
		t.Fatalf("first read after the quiet spell: %v, %v", s, err)
	}
	if asked() <= quiet {
		t.Fatal("the first read after the quiet spell was served without asking for leases")
	}
}

// A member that joins while an owner is cut off from it granted that
// owner nothing, and so fences nothing. Ring {0,1,2,3}; node-3 (d) is cut
// off, peer links only, from node-2 (its partition's other owner) and
// from the joiner node-4 (x); the rest install {0,1,2,4}, and the
// partition moves from (d, node-2) to (node-2, x). node-2's own grant to
// d has lapsed, x never granted one, and d still holds node-0's and
// node-1's. The new owners must still not acknowledge a write while d
// can serve its old copy: node-2 waits, besides its own grant, until a
// member of the ring d departed from has answered it under the new ring
// and a lease since has lapsed (ownership.fenceWait). Before, the write
// was acknowledged at once and d served v1 after it, about one run in
// five (docs/ARCHITECTURE.md, "A gap in that argument").
func TestAJoinerTakingOverFromACutOffOwnerWaitsOutItsLeases(t *testing.T) {
	c := newTestCluster(t, 4, nil)
	d, other := c.node("node-3"), c.node("node-2")
	x := c.start("node-4", nil)
	rest := []string{"node-0", "node-1", "node-2", "node-4"}
	id, _, _ := movedSession(t, d.Table(), ringOf(t, c, 0, rest...), func(old, now ring.Owners) bool {
		return owns(old, "node-3") && owns(old, "node-2") && owns(now, "node-2") && owns(now, "node-4")
	})
	put(t, c.node("node-0"), id, "v", 1)
	waitFor(t, 10*time.Second, "the first ring's hand-offs", func() bool {
		return c.node("node-0").Ready() && c.node("node-1").Ready() && other.Ready() && d.Ready()
	})
	for _, pair := range [][2]*testNode{{d, other}, {other, d}, {d, x}, {x, d}} {
		pair[0].faults.Cut(pair[1].member.Peer)
	}
	stop, first := make(chan struct{}), make(chan struct{})
	var reads []read
	var wg sync.WaitGroup
	wg.Go(func() { reads = readUntil(d, id, stop, func() { close(first) }) })
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		close(stop)
		wg.Wait()
		_, err := d.Get(testCtx(t), id, true)
		t.Fatalf("d never served %s once cut off from node-2 (owners %+v): %v", id, d.Table().OwnersOf(id), err)
	}
	c.sleep(1500 * time.Millisecond) // the other owner's grant lapses; d renews with the rest
	if missing := d.own.missingLeases(d.Table(), d.mono()); !slices.Equal(missing, []string{"node-2"}) {
		t.Fatalf("d lacks the leases of %v, want node-2's alone", missing)
	}
	c.publishTo(map[string][]string{"node-0": rest, "node-1": rest, "node-2": rest, "node-4": rest})
	if s := put(t, c.node("node-0"), id, "v", 2); s.Version != 2 {
		t.Fatalf("the write after d was declared dead made v%d", s.Version)
	}
	acked := time.Now()
	c.sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if len(reads) == 0 {
		t.Fatalf("d never served %s, even before the cut", id)
	}
	for _, r := range reads {
		if r.invoked.After(acked) && r.version < 2 {
			t.Fatalf("d served v%d of %s in a read begun %v after v2 was acknowledged", r.version, id, r.invoked.Sub(acked))
		}
	}
}

// A node that serves sends about 10 × (N − 1) lease requests a second at
// the default LeaseDuration: a renewal to every other member every
// LeaseDuration/6 (renewLeases), and a few asked on demand. This pins the
// cost that grows with the cluster, step 0 of the plan in
// docs/design/LEASES-AT-SCALE.md: once leases come from a bounded set of
// seats, the bound becomes 10 × min(N − 1, seats).
func TestLeaseMessagesPerNode(t *testing.T) {
	for _, size := range []int{3, 5, 9} {
		t.Run(fmt.Sprintf("%d nodes", size), func(t *testing.T) {
			c := newTestCluster(t, size, nil)
			// One session per node, with the node its primary: every node
			// serves reads, and so renews.
			ids := sessionPerPrimary(t, c)
			lease := c.list()[0].cfg.LeaseDuration
			sent := func() map[string]int { return c.sentBy(methodLease) }
			readAll := func() { readAtPrimaries(t, c, ids) }
			readAll()
			c.sleep(lease) // every node renewing at its steady rate
			before, began := sent(), c.ticks.Now()
			for end := c.before(5 * time.Second); end(); {
				readAll()
				c.sleep(lease / 12)
			}
			after, elapsed := sent(), c.ticks.Now().Sub(began).Seconds()
			want := 10 * float64(size-1)
			for _, n := range c.list() {
				rate := float64(after[n.Name()]-before[n.Name()]) / elapsed
				t.Logf("%s: %.1f lease requests sent a second", n.Name(), rate)
				if rate < want*0.85 || rate > want*1.15 {
					t.Errorf("%s sent %.1f lease requests a second over %.1f s; want 10 × (N − 1) = %.0f within 15 %%", n.Name(), rate, elapsed, want)
				}
			}
		})
	}
}
