package replica

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// With AllowMinority (availability over safety), both sides of a cut
// acknowledge writes. After the cut heals, both sides' copies are
// reconciled: the higher version wins, then the higher stamp, then the
// writer's name; a node that was cut off never serves its old copies;
// every session written on both sides is counted as a conflict.
func TestSplitBrainHealsDeterministically(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.AllowMinority = true })
	a, b, x := c.node("node-0"), c.node("node-1"), c.node("node-2")
	const sessions = 60
	for i := range sessions {
		put(t, a, sessionID(i), "side", "before")
	}
	// A session the cut-off node holds a copy of, so both sides start
	// from the same v1.
	contested := 2000
	for !owns(x.Table().OwnersOf(sessionID(contested)), x.Name()) {
		contested++
	}
	put(t, a, sessionID(contested), "side", "before")
	// A session the cut-off node holds, to be deleted on the majority side
	// during the cut: its tombstone must outrank the old copy on heal.
	deleted := contested + 1
	for !owns(x.Table().OwnersOf(sessionID(deleted)), x.Name()) {
		deleted++
	}
	put(t, a, sessionID(deleted), "side", "before")
	waitFor(t, 5*time.Second, "hand-offs", func() bool { return a.Ready() && b.Ready() && x.Ready() })

	// The cut: x sees only itself; a and b see each other.
	for _, n := range []*testNode{a, b} {
		n.faults.Cut(x.member.Peer)
		x.faults.Cut(n.member.Peer)
	}
	c.publishTo(map[string][]string{"node-0": {"node-0", "node-1"}, "node-1": {"node-0", "node-1"}, "node-2": {"node-2"}})

	// The majority side writes every session twice; the cut-off node writes
	// the even ones once. Both sides acknowledge.
	for i := range sessions {
		put(t, a, sessionID(i), "side", "majority-1")
		put(t, b, sessionID(i), "side", "majority-2")
		if i%2 == 0 {
			put(t, x, sessionID(i), "side", "minority")
		}
	}
	// One session written once on each side: two different v2s. The
	// minority writes last, so its stamp is higher and it wins.
	put(t, a, sessionID(contested), "side", "majority")
	c.clock.Advance(time.Second)
	put(t, x, sessionID(contested), "side", "minority")
	if _, err := a.Do(testCtx(t), &Op{Kind: OpDelete, ID: sessionID(deleted)}); err != nil {
		t.Fatalf("delete during the cut: %v", err)
	}
	// A session written only on the cut-off side, to the same version as
	// the majority's: a true conflict, decided by stamp.
	put(t, x, sessionID(1000), "side", "minority-only")

	// The heal.
	for _, n := range []*testNode{a, b, x} {
		n.faults.HealAll()
	}
	c.publish()
	waitFor(t, 10*time.Second, "reconciliation", func() bool { return a.Pending()+b.Pending()+x.Pending() == 0 })

	for i := range sessions {
		for _, n := range []*testNode{a, b, x} {
			s, err := n.Get(testCtx(t), sessionID(i), true)
			if err != nil {
				t.Fatalf("get %s via %s after heal: %v", sessionID(i), n.Name(), err)
			}
			// The majority reached v3 (before + 2 writes); the minority v2.
			var side string
			if err := msgpack.Unmarshal(s.Attributes.value("side"), &side); err != nil || s.Version != 3 || side != "majority-2" {
				t.Fatalf("%s via %s after heal: v%d %q, want v3 majority-2", sessionID(i), n.Name(), s.Version, side)
			}
		}
	}
	// Every even session diverged (the majority's v3 and the minority's
	// v2 both grew from v1): each is a conflict, though the versions
	// differ, and so are the two different v2s.
	conflicts := a.stats.Conflicts.Load() + b.stats.Conflicts.Load() + x.stats.Conflicts.Load()
	if conflicts < sessions/2+2 {
		t.Fatalf("%d conflicts counted; the cut made at least %d", conflicts, sessions/2+2)
	}
	for _, n := range []*testNode{a, b, x} {
		s, err := n.Get(testCtx(t), sessionID(contested), true)
		var side string
		_ = msgpack.Unmarshal(s.Attributes.value("side"), &side)
		if err != nil || s.Version != 2 || side != "minority" {
			t.Fatalf("contested session via %s: v%d %q %v, want v2 minority", n.Name(), s.Version, side, err)
		}
	}
	for _, n := range []*testNode{a, b, x} {
		if _, err := n.Get(testCtx(t), sessionID(deleted), true); !errors.Is(err, ErrNotFound) {
			t.Fatalf("session deleted during the cut came back via %s: %v", n.Name(), err)
		}
	}
	s, err := a.Get(testCtx(t), sessionID(1000), true)
	if err != nil || s.Writer != "node-2" {
		t.Fatalf("the minority-only session after heal: %+v %v", s, err)
	}
	// Every owner of every session holds the same copy.
	for i := range sessions {
		p, bd := c.ownersOf(sessionID(i))
		part := p.Table().Partition(sessionID(i))
		ps, bs := p.store.get(part, sessionID(i)), bd.store.get(part, sessionID(i))
		if ps == nil || bs == nil || ps.Version != bs.Version || ps.Stamp != bs.Stamp {
			t.Fatalf("%s: primary %+v, buddy %+v", sessionID(i), ps, bs)
		}
	}
}

// Two copies of the same version are ordered by stamp, then writer name,
// the same way on every node.
func TestNewerIsATotalOrder(t *testing.T) {
	v := func(version, stamp uint64, writer string) *Session {
		return &Session{ID: "x", Version: version, Stamp: stamp, Writer: writer}
	}
	cases := []struct {
		a, b *Session
		want bool
	}{
		{v(2, 1, "a"), v(1, 9, "z"), true},
		{v(1, 9, "a"), v(2, 1, "z"), false},
		{v(3, 5, "a"), v(3, 4, "z"), true},
		{v(3, 5, "b"), v(3, 5, "a"), true},
		{v(3, 5, "a"), v(3, 5, "a"), false},
		{v(1, 1, "a"), nil, true},
	}
	for _, tc := range cases {
		if got := newer(tc.a, tc.b); got != tc.want {
			t.Errorf("newer(%+v, %+v) = %v", tc.a, tc.b, got)
		}
		if tc.b != nil && tc.want && newer(tc.b, tc.a) {
			t.Errorf("newer is not antisymmetric for %+v, %+v", tc.a, tc.b)
		}
	}
	if !conflicting(v(3, 5, "a"), v(3, 6, "a")) || conflicting(v(3, 5, "a"), v(3, 5, "a")) || conflicting(v(3, 5, "a"), v(4, 6, "b")) {
		t.Error("conflicting misjudges")
	}
}

// Two copies diverged when the newer one's history does not pass through
// the older one, whatever versions they reached.
func TestDiverged(t *testing.T) {
	copyOf := func(version uint64, stamp uint64, requests ...string) *Session {
		s := &Session{ID: "x", Version: version, Stamp: stamp, Writer: "a"}
		for i, r := range requests {
			s.Recent = append(s.Recent, Applied{Request: r, Version: version - uint64(len(requests)-1-i), Hash: 7})
		}
		return s
	}
	cases := []struct {
		name string
		a, b *Session
		want bool
	}{
		{"the same copy", copyOf(2, 5, "r1", "r2"), copyOf(2, 5, "r1", "r2"), false},
		{"one version, two copies", copyOf(2, 5, "r1", "r2"), copyOf(2, 6, "r1", "x2"), true},
		{"a newer copy grown from the older", copyOf(2, 5, "r1", "r2"), copyOf(4, 9, "r1", "r2", "r3", "r4"), false},
		{"a newer copy grown from elsewhere", copyOf(2, 5, "r1", "r2"), copyOf(4, 9, "r1", "x2", "x3", "x4"), true},
		{"either order", copyOf(4, 9, "r1", "x2", "x3", "x4"), copyOf(2, 5, "r1", "r2"), true},
		{"too far apart to tell", copyOf(2, 5, "r1", "r2"), copyOf(20, 9, "x19", "x20"), false},
		{"an older copy without a request", &Session{ID: "x", Version: 2}, copyOf(4, 9, "x3", "x4"), false},
		{"nothing to compare", nil, copyOf(2, 5, "r2"), false},
	}
	for _, tc := range cases {
		if got := diverged(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: diverged = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestHLCNeverGoesBackwards(t *testing.T) {
	var c hlc
	wall := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := c.now(wall)
	b := c.now(wall.Add(-time.Hour)) // the wall clock stepped back
	if b <= a {
		t.Fatalf("stamp went backwards: %d then %d", a, b)
	}
	c.observe(b + 1000)
	if d := c.now(wall); d <= b+1000 {
		t.Fatalf("stamp %d not past an observed %d", d, b+1000)
	}
}

// By default the side of a cut that its failure detector has shrunk to a
// minority of the members acknowledges nothing and serves nothing: the
// quorum is a majority of the members known, not of the ring.
func TestTheMinoritySideOfACutServesNothing(t *testing.T) {
	forEachLeaseMode(t, func(t *testing.T, mode func(*Config)) {
		c := newTestClusterIn(t, mode, 3, nil)
		a, x := c.node("node-0"), c.node("node-2")
		id := idOwnedBy(t, x, true)
		put(t, a, id, "side", "before")
		for _, n := range []*testNode{c.node("node-0"), c.node("node-1")} {
			n.faults.Cut(x.member.Peer)
			x.faults.Cut(n.member.Peer)
		}
		c.publishTo(map[string][]string{"node-0": {"node-0", "node-1"}, "node-1": {"node-0", "node-1"}, "node-2": {"node-2"}})

		ctx, cancel := within(x, 300*time.Millisecond)
		defer cancel()
		if _, err := x.Do(ctx, &Op{Kind: OpPut, ID: id, Attributes: map[string]msgpack.RawMessage{"side": value(t, "minority")}}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("write on the minority side: %v, want ErrUnavailable", err)
		}
		if _, err := x.Get(ctx, id, true); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("read on the minority side: %v, want ErrUnavailable", err)
		}
		if x.Ready() {
			t.Fatal("the minority side reports ready")
		}
		if s := put(t, a, id, "side", "majority"); s.Version != 2 {
			t.Fatalf("the majority's write made v%d, want v2", s.Version)
		}
	})
}

// Both owners of a partition gone, one frozen past the failure detector
// and one crashed: the side that goes on (a majority of the members)
// rebuilds the partition from nothing, under a new generation, and
// acknowledges writes to it. When the frozen owner thaws with its older
// copies, they lose to those writes whatever their versions (chaos
// finding F11): every node serves what was acknowledged after the loss.
func TestAFrozenOwnersCopiesDoNotReplaceWritesMadeAfterTheLoss(t *testing.T) {
	forEachLeaseMode(t, func(t *testing.T, mode func(*Config)) {
		c := newTestClusterIn(t, mode, 5, nil)
		id := sessionID(31)
		frozen, crashed := c.ownersOf(id)
		for v := 1; v <= 3; v++ {
			put(t, frozen, id, "side", "before")
		}
		// A session of the same partition that nobody writes after the loss:
		// the loss took it, and it must not come back with the frozen owner.
		part := frozen.Table().Partition(id)
		untouched := ""
		for i := 32; untouched == ""; i++ {
			if frozen.Table().Partition(sessionID(i)) == part {
				untouched = sessionID(i)
			}
		}
		for v := 1; v <= 5; v++ {
			put(t, frozen, untouched, "side", "before")
		}
		var rest []*testNode
		var restNames []string
		for _, n := range c.list() {
			if n != frozen && n != crashed {
				rest = append(rest, n)
				restNames = append(restNames, n.Name())
			}
		}
		waitFor(t, 10*time.Second, "ready", func() bool { return frozen.Ready() && rest[0].Ready() })

		// The freeze: nothing reaches the frozen owner or comes from it, and
		// its view stays as it was. The crash: the other owner is gone.
		for _, n := range rest {
			n.faults.Cut(frozen.member.Peer)
			frozen.faults.Cut(n.member.Peer)
		}
		c.mu.Lock()
		delete(c.nodes, crashed.Name())
		c.mu.Unlock()
		crashed.stop()
		views := map[string][]string{}
		for _, n := range rest {
			views[n.Name()] = restNames
		}
		c.publishTo(views)
		// Both new owners rebuilt the partition, each under a floor of its
		// own; each tells the other, and before any write both hold the
		// higher: a floor one owner alone knew would go if it crashed.
		newOwners := rest[0].Table().Owners(part)
		waitFor(t, 10*time.Second, "the new owners to agree on the partition's floor", func() bool {
			a, b := c.node(newOwners.Primary).store.floor(part), c.node(newOwners.Buddy).store.floor(part)
			return a != 0 && a == b
		})
		if s, err := rest[0].Get(testCtx(t), id, true); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the lost session read as %v, %v; want not found", s, err)
		}
		after := put(t, rest[0], id, "side", "after")
		if after.Version != 1 {
			t.Fatalf("the first write after the loss made v%d, want v1", after.Version)
		}

		// The thaw: the frozen owner is back, with its v3.
		for _, n := range append(rest, frozen) {
			n.faults.HealAll()
		}
		all := append([]string{frozen.Name()}, restNames...)
		views = map[string][]string{}
		for _, name := range all {
			views[name] = all
		}
		c.publishTo(views)
		waitFor(t, 10*time.Second, "reconciliation", func() bool {
			pending := frozen.Pending()
			for _, n := range rest {
				pending += n.Pending()
			}
			return pending == 0
		})
		for _, n := range append(rest, frozen) {
			s, err := n.Get(testCtx(t), id, true)
			if err != nil {
				t.Fatalf("get via %s after the thaw: %v", n.Name(), err)
			}
			var side string
			if err := msgpack.Unmarshal(s.Attributes.value("side"), &side); err != nil || side != "after" {
				t.Fatalf("via %s after the thaw: v%d %q; want the write acknowledged after the loss", n.Name(), s.Version, side)
			}
			if s, err := n.Get(testCtx(t), untouched, true); !errors.Is(err, ErrNotFound) {
				t.Fatalf("via %s after the thaw, the session lost with the partition and not written since reads %+v, %v; want not found", n.Name(), s, err)
			}
		}
		if s := frozen.store.get(part, untouched); s != nil {
			t.Fatalf("the frozen owner still holds v%d of generation %d of %s, below the partition's floor %d", s.Version, s.Gen, untouched, frozen.store.floor(part))
		}
		if frozen.stats.DroppedBelowFloor.Load() == 0 {
			t.Fatal("the frozen owner dropped no copy from before the loss")
		}
	})
}

// A node declared dead comes back with old copies and has not caught up
// (the members it would catch up from are out of its reach) when the two
// that held the partition since both crash. The new owner must not take
// the partition over from the returning node's old copies, which would
// serve v3 after v6 was acknowledged: nothing is left that holds the
// partition, so it is lost, reported, and rebuilt, and the returning
// node's old copies are dropped (chaos finding F12).
func TestANewOwnerDoesNotTakeOverFromADeclaredDeadNodesOldCopies(t *testing.T) {
	c := newTestCluster(t, 6, nil)
	id := sessionID(41)
	a, b := c.ownersOf(id)
	for range 3 {
		put(t, a, id, "v", "before")
	}
	p := a.Table().Partition(id)
	waitFor(t, 10*time.Second, "ready", func() bool {
		for _, n := range c.list() {
			if !n.Ready() {
				return false
			}
		}
		return true
	})
	names := func(skip ...*testNode) []string {
		var out []string
		for _, n := range c.list() {
			if !slices.Contains(skip, n) {
				out = append(out, n.Name())
			}
		}
		return out
	}
	cut := func(x *testNode, from ...*testNode) {
		for _, n := range from {
			n.faults.Cut(x.member.Peer)
			x.faults.Cut(n.member.Peer)
		}
	}
	views := func(nodes []string, members []string) map[string][]string {
		out := map[string][]string{}
		for _, n := range nodes {
			out[n] = members
		}
		return out
	}

	// a freezes past the failure detector; b and a new owner, cNode, hold
	// the partition and take v4–v6.
	var others []*testNode
	for _, n := range c.list() {
		if n != a {
			others = append(others, n)
		}
	}
	cut(a, others...)
	rest := names(a)
	c.publishTo(views(rest, rest))
	cNode := c.node(b.Table().Owners(p).Primary)
	if cNode == b {
		cNode = c.node(b.Table().Owners(p).Buddy)
	}
	for range 3 {
		put(t, b, id, "v", "after")
	}
	waitFor(t, 10*time.Second, "the new owner to hold v6", func() bool {
		s := cNode.store.get(p, id)
		return s != nil && s.Version == 6
	})

	// a thaws, but stays cut off from the two that hold the partition:
	// it learns it was declared dead and cannot catch up.
	for _, n := range others {
		if n != b && n != cNode {
			n.faults.HealAll()
			a.faults.Heal(n.member.Peer)
		}
	}
	all := names()
	c.publishTo(views(all, all))
	waitFor(t, 10*time.Second, a.Name()+" to distrust its copies", func() bool {
		serving(a.Node)
		return a.own.load().distrusts(p)
	})

	// b and cNode crash together.
	for _, n := range []*testNode{b, cNode} {
		c.mu.Lock()
		delete(c.nodes, n.Name())
		c.mu.Unlock()
		n.stop()
	}
	left := names()
	c.publishTo(views(left, left))
	owner := c.node(a.Table().Owners(p).Primary)
	if owner == a {
		owner = c.node(a.Table().Owners(p).Buddy)
	}
	waitFor(t, 10*time.Second, "a node to report the partition lost", func() bool {
		for _, n := range c.list() {
			if slices.Contains(n.Lost().Partitions, p) {
				return true
			}
		}
		return false
	})
	waitFor(t, 10*time.Second, "hand-offs to settle", func() bool { return a.Pending()+owner.Pending() == 0 })
	for _, n := range c.list() {
		if s, err := n.Get(testCtx(t), id, true); !errors.Is(err, ErrNotFound) {
			t.Fatalf("via %s, the session lost with its partition reads %+v, %v; want not found, never the old v3", n.Name(), s, err)
		}
	}
	if s := a.store.get(p, id); s != nil {
		t.Fatalf("%s still holds v%d from before the loss", a.Name(), s.Version)
	}
	if s := put(t, owner, id, "v", "new"); s.Version != 1 {
		t.Fatalf("the first write after the loss made v%d; want v1", s.Version)
	}
}
