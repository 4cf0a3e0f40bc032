package replica

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/ring"
)

// A replica is stored marked unconfirmed, in the same step; only a
// confirmation of that very copy removes the mark, and any other store of
// the session, a drop or a rebuild removes it with the copy it was for.
func TestAReplicaIsShownOnlyOnceItsPrimaryConfirmsThatCopy(t *testing.T) {
	s := newStore(4)
	const p = 1
	v1 := &Session{ID: "s", Version: 1, Stamp: 10, Writer: "a"}
	if _, stored, err := s.putReplica(p, v1, nil); err != nil || !stored {
		t.Fatalf("putReplica: stored %v, %v", stored, err)
	}
	if got, unconfirmed := s.getShown(p, "s"); got != v1 || !unconfirmed {
		t.Fatalf("after the replica: %+v unconfirmed=%v, want v1 unconfirmed", got, unconfirmed)
	}
	for _, other := range []copyMark{
		{Version: 1, Stamp: 11, Writer: "a"}, // another write of the same version
		{Version: 1, Stamp: 10, Writer: "b"}, // another writer
		{Version: 2, Stamp: 10, Writer: "a"}, // a later version
	} {
		s.confirm(p, "s", other)
		if _, unconfirmed := s.getShown(p, "s"); !unconfirmed {
			t.Fatalf("confirming %+v removed the mark of %+v", other, markOf(v1))
		}
	}
	s.confirm(p, "s", markOf(v1))
	if _, unconfirmed := s.getShown(p, "s"); unconfirmed {
		t.Fatal("the copy is still unconfirmed after its own confirmation")
	}

	// A later replica is marked again; a touch keeps the mark, a
	// hand-off's merge of a newer copy takes it off.
	v2 := &Session{ID: "s", Version: 2, Stamp: 20, Writer: "a"}
	s.putReplica(p, v2, nil)
	s.touch(p, "s", time.Now(), false)
	if _, unconfirmed := s.getShown(p, "s"); !unconfirmed {
		t.Fatal("a touch took the mark off")
	}
	s.confirm(p, "s", markOf(v1)) // late, for the copy before
	if _, unconfirmed := s.getShown(p, "s"); !unconfirmed {
		t.Fatal("a confirmation of an earlier copy took the mark off the later one")
	}
	s.putIfNewer(p, &Session{ID: "s", Version: 3, Stamp: 30, Writer: "b"})
	if _, unconfirmed := s.getShown(p, "s"); unconfirmed {
		t.Fatal("a copy merged from elsewhere is marked with the replica's mark")
	}

	// A replica refused (not newer) leaves the copy as it was.
	s.putReplica(p, v2, nil)
	if got, unconfirmed := s.getShown(p, "s"); got.Version != 3 || unconfirmed {
		t.Fatalf("an older replica refused: %+v unconfirmed=%v", got, unconfirmed)
	}

	s.putReplica(p, &Session{ID: "s", Version: 4, Stamp: 40, Writer: "a"}, nil)
	s.rebuilt(p, 0)
	if _, unconfirmed := s.getShown(p, "s"); unconfirmed {
		t.Fatal("a rebuilt partition keeps a mark: its copies are all of it")
	}
	s.putReplica(p, &Session{ID: "s", Version: 5, Stamp: 50, Writer: "a", Gen: s.generation(p)}, nil)
	s.drop(p)
	s.putIfNewer(p, &Session{ID: "s", Version: 5, Stamp: 50, Writer: "a", Gen: s.generation(p)})
	if _, unconfirmed := s.getShown(p, "s"); unconfirmed {
		t.Fatal("a mark outlived the drop of its partition")
	}
}

// Chaos finding F23: a replica whose answer the primary never got was
// shown by the buddy to a reader that could not reach the primary, and
// was then gone (the primary settled its doubt against a new buddy; the
// old one, declared dead, replaced its copies). The buddy now shows such
// a copy only once the primary confirms it: while the primary is out of
// its reach it refuses the read, and when it can reach it, it answers
// what the primary answers.
func TestABuddyDoesNotShowAReplicaItsPrimaryHasNotConfirmed(t *testing.T) {
	w := writeShownByBothOwners(t)
	primary, buddy, id, first, tab, p := w.primary, w.buddy, w.id, w.first, w.tab, w.p

	// The replica of a write whose answer was lost: the buddy stored it,
	// the primary did not. The buddy cannot reach the primary meanwhile,
	// so it cannot tell the primary of the copy either (unconfirmed.go).
	buddy.faults.Cut(primary.member.Peer)
	lost := storeLostReplica(t, primary, buddy, first)

	refused := buddy.Stats().UnconfirmedRefused.Load()
	s, err := buddy.readAsOwner(testCtx(t), tab, p, id, false)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a buddy read with the primary out of reach answered %+v, %v; want ErrUnavailable, not the unconfirmed v%d", s, err, lost.Version)
	}
	if got := buddy.Stats().UnconfirmedRefused.Load(); got != refused+1 {
		t.Fatalf("UnconfirmedRefused = %d, want %d", got, refused+1)
	}
	s, err = buddy.readAsOwner(testCtx(t), tab, p, id, true)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a buddy read that could not ask the primary answered %+v, %v; want ErrUnavailable", s, err)
	}
	buddy.faults.HealAll()
	// Asked, the primary answers its own copy: the first write, or the
	// lost one if the buddy has told it of its copy since.
	s, err = buddy.readAsOwner(testCtx(t), tab, p, id, true)
	if err != nil || (s.Version != first.Version && s.Version != lost.Version) {
		t.Fatalf("a buddy read that could ask the primary answered %+v, %v; want the primary's v%d or v%d", s, err, first.Version, lost.Version)
	}

	// The primary settles its doubt with the buddy's copy: both hold it
	// now, and the buddy shows it once told.
	primary.doubts.add(p, id)
	if s, err := primary.Get(testCtx(t), id, true); err != nil || s.Version != lost.Version {
		t.Fatalf("read at the primary: %+v, %v; want the settled v%d", s, err, lost.Version)
	}
	waitFor(t, 10*time.Second, "the buddy to show the settled copy", func() bool {
		s, err := buddy.readAsOwner(testCtx(t), tab, p, id, false)
		return err == nil && s.Version == lost.Version
	})

	// A write acknowledged is shown once its confirmation arrives.
	next := put(t, primary, id, "n", 2)
	waitFor(t, 10*time.Second, "the buddy to show an acknowledged write", func() bool {
		s, err := buddy.readAsOwner(testCtx(t), tab, p, id, false)
		return err == nil && s.Version == next.Version
	})
}

// shownWrite is a session written once on a 3-node cluster, and where.
type shownWrite struct {
	primary, buddy *testNode
	id             string
	first          *Session
	tab            *ring.Table
	p              int
}

// writeShownByBothOwners starts a 3-node cluster, writes a session through
// its primary and returns once the hand-offs have settled and the buddy
// shows the write, confirmed. A primary still being handed its partition
// would fetch the session from the other owners first, and take the
// buddy's copy.
func writeShownByBothOwners(t *testing.T) shownWrite {
	t.Helper()
	c := newTestCluster(t, 3, nil)
	id := sessionID(8)
	primary, buddy := c.ownersOf(id)
	first := put(t, primary, id, "n", 0)
	c.settle(t, "every node to hold its partitions")
	tab := primary.Table()
	p := tab.Partition(id)
	waitFor(t, 10*time.Second, "the buddy to show the first write", func() bool {
		s, unconfirmed := buddy.store.getShown(p, id)
		return s != nil && s.Version == first.Version && !unconfirmed
	})
	return shownWrite{primary: primary, buddy: buddy, id: id, first: first, tab: tab, p: p}
}

// storeLostReplica stores at buddy the replica of a patch of first that
// primary never stored: a write whose answer was lost.
func storeLostReplica(t *testing.T, primary, buddy *testNode, first *Session) *Session {
	t.Helper()
	tab := primary.Table()
	op := &Op{Kind: OpPatch, ID: first.ID, RequestID: "req-lost", Set: map[string]msgpack.RawMessage{"n": value(t, 1)}}
	now := primary.wall()
	lost, err := apply(op, first, now, primary.clock.now(now), primary.Name(), primary.lim)
	if err != nil {
		t.Fatal(err)
	}
	req := replicateRequest{From: primary.Name(), Epoch: tab.Epoch(), Partition: tab.Partition(first.ID), Session: lost}
	if err := buddy.storeReplica(testCtx(t), buddy.Table(), &req); err != nil {
		t.Fatalf("replica: %v", err)
	}
	return lost
}

// TestConfirmQueueBoundsBatchesAndSendsOneBatchPerBuddyAtATime checks the
// queue without I/O: a buddy's confirmations are taken in batches of at
// most maxConfirmBatch, in the order queued; past maxConfirms a buddy's
// queue drops what comes; and while a batch is on its way to a buddy, no
// second one starts for it, while another buddy's may.
func TestConfirmQueueBoundsBatchesAndSendsOneBatchPerBuddyAtATime(t *testing.T) {
	q := newConfirmQueue()
	for i := range maxConfirms + 10 {
		q.add("b", i%7, &Session{ID: "s", Version: uint64(i + 1)})
	}
	q.add("c", 3, &Session{ID: "t", Version: 1})

	total := 0
	for {
		batch := q.take("b")
		if len(batch) == 0 {
			break
		}
		if len(batch) > maxConfirmBatch {
			t.Fatalf("a batch of %d, want at most %d", len(batch), maxConfirmBatch)
		}
		if got, want := batch[0].Mark.Version, uint64(total+1); got != want {
			t.Fatalf("batch starts at version %d, want %d (the order queued)", got, want)
		}
		total += len(batch)
	}
	if total != maxConfirms {
		t.Fatalf("took %d confirmations for b, want the bound %d", total, maxConfirms)
	}

	if !q.startSending("b") {
		t.Fatal("no batch on its way to b, yet startSending refused")
	}
	if q.startSending("b") {
		t.Fatal("a second batch started for b while one is on its way")
	}
	if !q.startSending("c") {
		t.Fatal("a batch on its way to b held up c's")
	}
	q.doneSending("b")
	if !q.startSending("b") {
		t.Fatal("b's batch is done, yet the next did not start")
	}
	if got := q.take("c"); len(got) != 1 || got[0].ID != "t" || got[0].Partition != 3 {
		t.Fatalf("c's queue = %+v, want the one confirmation of t in partition 3", got)
	}
}

// A copy the buddy holds unconfirmed, which no confirmation will ever
// reach (the primary's doubt about it ended without it: CHAOS.md F24),
// is not left there: the buddy tells the primary, and the two owners end
// up holding one copy, confirmed, whichever of them was ahead.
func TestOwnersAgreeOnACopyTheBuddyHeldUnconfirmed(t *testing.T) {
	for _, ahead := range []string{"buddy", "primary"} {
		t.Run(ahead+" ahead", func(t *testing.T) {
			w := writeShownByBothOwners(t)
			primary, buddy, id, first, tab, p := w.primary, w.buddy, w.id, w.first, w.tab, w.p

			// The buddy holds a replica the primary never stored, and the
			// primary does not hold the session in doubt. The buddy cannot
			// tell the primary of it until the copies are set up.
			buddy.faults.Cut(primary.member.Peer)
			want := storeLostReplica(t, primary, buddy, first)
			if ahead == "primary" {
				// The primary holds a newer copy the buddy never got.
				op := &Op{Kind: OpPatch, ID: id, RequestID: "req-newer", Set: map[string]msgpack.RawMessage{"m": value(t, 2)}}
				now := primary.wall()
				newer, err := apply(op, want, now, primary.clock.now(now), primary.Name(), primary.lim)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := primary.store.putUnder(p, newer, false, nil); err != nil {
					t.Fatal(err)
				}
				want = newer
			}
			if primary.doubts.has(p, id) {
				t.Fatal("the primary holds the session in doubt; the case is one it does not")
			}
			buddy.faults.HealAll()

			waitFor(t, 10*time.Second, "both owners to hold one copy, confirmed", func() bool {
				mine := primary.store.get(p, id)
				theirs, unconfirmed := buddy.store.getShown(p, id)
				return mine != nil && theirs != nil && markOf(mine) == markOf(want) && markOf(theirs) == markOf(want) && !unconfirmed
			})
			if got := buddy.Stats().UnconfirmedReported.Load(); got == 0 {
				t.Fatal("UnconfirmedReported = 0: the buddy never told the primary")
			}
			if got := primary.Stats().CopiesResent.Load(); (ahead == "primary") != (got > 0) {
				t.Fatalf("CopiesResent = %d with the %s ahead", got, ahead)
			}
			if s, err := buddy.readAsOwner(testCtx(t), tab, p, id, false); err != nil || markOf(s) != markOf(want) {
				t.Fatalf("the buddy shows %+v, %v; want v%d", s, err, want.Version)
			}
		})
	}
}

// A buddy tells the primary only of copies unconfirmed, with the same
// mark, at two looks in a row: one made since the last look, or whose
// mark changed (a newer replica), waits for the next.
func TestOnlyCopiesUnconfirmedSinceTheLastLookAreOverdue(t *testing.T) {
	var w unconfirmedWatch
	a, b, c := doubtKey{1, "a"}, doubtKey{2, "b"}, doubtKey{3, "c"}
	m1, m2 := copyMark{Version: 1, Stamp: 1, Writer: "p"}, copyMark{Version: 2, Stamp: 2, Writer: "p"}
	if got := w.overdue(map[doubtKey]copyMark{a: m1, b: m1}); len(got) != 0 {
		t.Fatalf("first look: overdue %v, want none", got)
	}
	got := w.overdue(map[doubtKey]copyMark{a: m1, b: m2, c: m1})
	if len(got) != 1 || got[0] != a {
		t.Fatalf("second look: overdue %v, want only %v (b's mark changed, c is new)", got, a)
	}
	got = w.overdue(map[doubtKey]copyMark{b: m2, c: m1})
	slices.SortFunc(got, func(x, y doubtKey) int { return x.p - y.p })
	if !slices.Equal(got, []doubtKey{b, c}) {
		t.Fatalf("third look: overdue %v, want %v and %v (a was confirmed)", got, b, c)
	}
}
