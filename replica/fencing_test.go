package replica

import (
	"errors"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/ring"
)

// ringOf returns the ring of the named members of c, as every node would
// build it, named by epoch.
func ringOf(t *testing.T, c *testCluster, epoch uint64, names ...string) *ring.Table {
	t.Helper()
	var members []ring.Member
	for _, name := range names {
		members = append(members, c.node(name).member)
	}
	tab, err := ring.New(ring.DefaultConfig(), epoch, members)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// movedSession returns a session id whose owners under before and after
// satisfy moved.
func movedSession(t *testing.T, before, after *ring.Table, moved func(old, now ring.Owners) bool) (id string, old, now ring.Owners) {
	t.Helper()
	for i := range 100000 {
		id := sessionID(i)
		if old, now := before.OwnersOf(id), after.OwnersOf(id); moved(old, now) {
			return id, old, now
		}
	}
	t.Fatal("no session moves as wanted")
	return "", ring.Owners{}, ring.Owners{}
}

// lagBehindJoin starts node-3 in a cluster of node-0..2 and gives the new
// ring to every node but the lagging one, which keeps the old ring, as a
// node does that has not yet heard of the join.
func lagBehindJoin(t *testing.T, c *testCluster, lagging string) {
	t.Helper()
	all := []string{"node-0", "node-1", "node-2", "node-3"}
	views := map[string][]string{}
	for _, name := range all {
		if name != lagging {
			views[name] = all
		}
	}
	c.publishTo(views)
}

// tryPut writes id through n within d and returns the error.
func tryPut(t *testing.T, n *testNode, id string, v int, d time.Duration) error {
	ctx, cancel := within(n, d)
	defer cancel()
	_, err := n.Do(ctx, &Op{Kind: OpPut, ID: id, Principal: "user-" + id, Attributes: map[string]msgpack.RawMessage{"v": value(t, v)}})
	return err
}

// joinMoving starts node-3 in a cluster of node-0..2, each tuned by tune,
// and returns it with a session whose owners before and after the join
// satisfy moved. No node has the new ring yet.
func joinMoving(t *testing.T, tune func(*Config), moved func(old, now ring.Owners) bool) (c *testCluster, joiner *testNode, id string, old ring.Owners) {
	t.Helper()
	c = newTestCluster(t, 3, tune)
	before := c.node("node-0").Table()
	joiner = c.start("node-3", tune)
	id, old, _ = movedSession(t, before, ringOf(t, c, 0, "node-0", "node-1", "node-2", "node-3"), moved)
	return c, joiner, id, old
}

// refusedWhileLagging keeps x on the ring before the join while every
// other node moves to the new one, and checks that a write through writer
// is refused meanwhile.
func refusedWhileLagging(t *testing.T, c *testCluster, x, writer *testNode, id string) {
	t.Helper()
	lagBehindJoin(t, c, x.Name())
	if err := tryPut(t, writer, id, 2, 300*time.Millisecond); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("write through %s while %s still serves by the old ring: %v, want ErrUnavailable", writer.Name(), x.Name(), err)
	}
}

// catchUp gives lagging node x the whole ring at last, and checks that a
// write through writer then goes through and reads back through x.
func catchUp(t *testing.T, c *testCluster, x, writer *testNode, id string) {
	t.Helper()
	c.publishTo(map[string][]string{x.Name(): {"node-0", "node-1", "node-2", "node-3"}})
	if s := put(t, writer, id, "v", 2); s.Version != 2 {
		t.Fatalf("write once every node moved made v%d, want v2", s.Version)
	}
	if s, err := x.Get(testCtx(t), id, true); err != nil || s.Version != 2 {
		t.Fatalf("read through %s after the write: %+v %v, want v2", x.Name(), s, err)
	}
}

// A join moves a partition's buddy role away from a node that has not yet
// heard of it, and which could still answer reads from its buddy copy by
// the old ring. The primary acknowledges no write to the partition until
// that node has moved to the new ring (and said so in a lease reply);
// then writes go through and the previous buddy reads them back.
func TestPrimaryWaitsForALaggingPreviousBuddyBeforeAcknowledging(t *testing.T) {
	c, _, id, old := joinMoving(t, nil, func(old, now ring.Owners) bool {
		return now.Primary == old.Primary && !owns(now, old.Buddy)
	})
	primary, x := c.node(old.Primary), c.node(old.Buddy)
	put(t, primary, id, "v", 1)

	refusedWhileLagging(t, c, x, primary, id)
	if primary.stats.DisplacedWaits.Load() == 0 {
		t.Fatal("the primary never waited for the previous buddy")
	}

	catchUp(t, c, x, primary, id)
}

// A node that joins takes a partition over only from previous owners on
// its own ring: a previous owner that has not yet heard of the join
// refuses to hand the partition over, so the joiner neither serves nor
// acknowledges writes to it until that node has moved.
func TestJoinerTakesOverOnlyFromPreviousOwnersOnItsRing(t *testing.T) {
	c, joiner, id, old := joinMoving(t, nil, func(old, now ring.Owners) bool {
		return now.Primary == "node-3" && !owns(now, old.Buddy)
	})
	x := c.node(old.Buddy)
	put(t, x, id, "v", 1)

	refusedWhileLagging(t, c, x, joiner, id)
	if x.stats.HandoffRefusals.Load() == 0 {
		t.Fatal("the lagging previous owner never refused the joiner")
	}
	if joiner.Ready() {
		t.Fatal("the joiner is ready while a previous owner has not handed its partitions over")
	}

	catchUp(t, c, x, joiner, id)
	waitFor(t, 10*time.Second, "the joiner to be ready", joiner.Ready)
}

// A write routed by a ring the node has since left is not stored, neither
// by the primary nor by the buddy: the new owners may already have pulled
// the partition or acknowledged writes of their own to it. The caller's
// retry, by the new ring, goes through.
func TestNothingIsStoredByARingTheNodeHasLeft(t *testing.T) {
	forEachLeaseMode(t, func(t *testing.T, mode func(*Config)) {
		c := newTestClusterIn(t, mode, 3, nil)
		x := c.node("node-0")
		id := idOwnedBy(t, x, true)
		old := x.Table()
		p := old.Partition(id)
		buddy := c.node(old.Owners(p).Buddy)
		c.publish() // the same members, but a ring x has moved to since

		op := &Op{Kind: OpPut, ID: id, RequestID: NewRequestID(), Attributes: map[string]msgpack.RawMessage{"v": value(t, 1)}}
		if _, err := x.serveAsPrimary(testCtx(t), old, p, op); !errors.Is(err, ErrNotOwner) {
			t.Fatalf("write by the old ring: %v, want ErrNotOwner", err)
		}
		if s := x.store.get(p, id); s != nil {
			t.Fatalf("the primary stored v%d by a ring it had left", s.Version)
		}
		replica := &Session{ID: id, Version: 1, Writer: x.Name(), Stamp: 1}
		if err := buddy.storeReplica(testCtx(t), old, &replicateRequest{From: x.Name(), Partition: p, Session: replica}); !errors.Is(err, ErrNotOwner) {
			t.Fatalf("replica by the old ring: %v, want ErrNotOwner", err)
		}

		s, err := x.Do(testCtx(t), op)
		if err != nil || s.Version != 1 {
			t.Fatalf("retry by the new ring: %+v %v, want v1", s, err)
		}
		if got := buddy.store.get(p, id); got == nil || got.Stamp != s.Stamp {
			t.Fatalf("the buddy holds %+v, want the acknowledged v1 %+v", got, s)
		}
	})
}

// A member that left and came back makes the ring's fingerprint what it
// was before it left. An answer a displaced owner gave under the old ring
// before then must not count as having moved to the new one: here the
// displaced node took the partition over while the member was away (its
// answers lost on the way back), and still serves by that ring.
func TestOnlyAnAnswerSinceTheRingChangedConfirmsADisplacedOwner(t *testing.T) {
	c := newTestCluster(t, 4, nil)
	all := []string{"node-0", "node-1", "node-2", "node-3"}
	whole := c.node("node-0").Table()
	var id string
	var away string
	var before, during ring.Owners
	for _, d := range all {
		var rest []string
		for _, m := range all {
			if m != d {
				rest = append(rest, m)
			}
		}
		without := ringOf(t, c, 0, rest...)
		for i := range 10000 {
			if old, now := whole.OwnersOf(sessionID(i)), without.OwnersOf(sessionID(i)); old.Buddy == d && now.Primary == old.Primary {
				id, away, before, during = sessionID(i), d, old, now
				break
			}
		}
		if id != "" {
			break
		}
	}
	if id == "" {
		t.Fatal("no session whose buddy leaves while its primary stays")
	}
	primary, x := c.node(before.Primary), c.node(during.Buddy)
	put(t, primary, id, "v", 1)
	waitFor(t, 10*time.Second, "the primary to hold a lease from "+x.Name(), func() bool {
		serving(primary.Node)
		return primary.own.onRing(x.Name(), whole, 0)
	})

	// away leaves; x becomes the buddy and pulls the partition. The
	// primary's lease requests to x are lost from now on.
	primary.faults.Cut(x.member.Peer)
	var rest []string
	for _, m := range all {
		if m != away {
			rest = append(rest, m)
		}
	}
	views := map[string][]string{}
	for _, m := range rest {
		views[m] = rest
	}
	c.publishTo(views)
	p := whole.Partition(id)
	waitFor(t, 5*time.Second, x.Name()+" to pull the partition", func() bool { t := x.own.load().parts[p].transfer; return t == nil || t.reconcile })
	waitFor(t, 5*time.Second, "the departure's fence to lapse", func() bool { return primary.own.load().parts[p].fence <= primary.mono() })

	// away comes back: the whole ring again, with the fingerprint it had,
	// for everyone but x.
	views = map[string][]string{}
	for _, m := range all {
		if m != x.Name() {
			views[m] = all
		}
	}
	c.publishTo(views)
	waits := primary.stats.DisplacedWaits.Load()
	if err := tryPut(t, primary, id, 2, 300*time.Millisecond); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("write while %s, displaced, still serves by the ring without %s: %v, want ErrUnavailable", x.Name(), away, err)
	}
	if primary.stats.DisplacedWaits.Load() == waits {
		t.Fatal("the primary never waited for the displaced buddy")
	}

	primary.faults.HealAll()
	c.publishTo(map[string][]string{x.Name(): all})
	if s := put(t, primary, id, "v", 2); s.Version != 2 {
		t.Fatalf("write once every node moved made v%d, want v2", s.Version)
	}
}

// A new owner does not give up on a hand-off while a previous owner
// answers that it serves by another ring: that node may still serve the
// partition, so serving without it after HandoffTimeout could serve, and
// build on, a stale copy.
func TestHandoffDoesNotTimeOutWhileAPreviousOwnerLags(t *testing.T) {
	const timeout = 300 * time.Millisecond
	c, joiner, id, old := joinMoving(t, func(cfg *Config) { cfg.HandoffTimeout = timeout }, func(old, now ring.Owners) bool {
		return now.Primary == "node-3" && !owns(now, old.Buddy)
	})
	x := c.node(old.Buddy)
	put(t, x, id, "v", 1)

	lagBehindJoin(t, c, x.Name())
	for still := c.before(4 * timeout); still(); {
		if joiner.Ready() {
			t.Fatalf("the joiner gave up on its hand-off while %s, alive, still served by the old ring", x.Name())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := tryPut(t, joiner, id, 2, 100*time.Millisecond); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("write through the joiner after %v while %s still lags: %v, want ErrUnavailable", 4*timeout, x.Name(), err)
	}

	catchUp(t, c, x, joiner, id)
	waitFor(t, 10*time.Second, "the joiner to be ready", joiner.Ready)
}
