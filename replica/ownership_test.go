package replica

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-io/tandem/ring"
)

// These tests cover the rules of docs/ARCHITECTURE.md "Fencing" on
// ownership alone: no sockets, no goroutines, no sleeps. Time is a number
// handed to each transition.

const testLease = 600 * time.Millisecond

// tableOf builds a ring of the named members at epoch.
func tableOf(t *testing.T, epoch uint64, names ...string) *ring.Table {
	t.Helper()
	var members []ring.Member
	for _, n := range names {
		members = append(members, ring.Member{Name: n, Peer: n + ":7947"})
	}
	tab, err := ring.New(ring.DefaultConfig(), epoch, members)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// setMinMembers changes o's MinMembers and republishes what it needs.
func setMinMembers(o *ownership, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.minMembers = n
	o.edit(func(s *ownState) { s.need = o.quorum() })
}

// ownershipOf returns the ownership of node self, with min members.
func ownershipOf(self string, minMembers int) *ownership {
	return newOwnership(Config{Name: self, MinMembers: minMembers, LeaseDuration: testLease}.withDefaults())
}

// installed returns the ownership of self after installing tabs in turn,
// at time 0, 1s, 2s….
func installed(t *testing.T, self string, tabs ...*ring.Table) *ownership {
	t.Helper()
	o := ownershipOf(self, 1)
	for i, tab := range tabs {
		if _, err := o.install(tab, time.Duration(i)*time.Second, noCopies); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

// noCopies is a store with no copies, for install: a node that has just
// started.
func noCopies(int) bool { return false }

// partitionWhere returns a partition of tab whose owners satisfy cond.
func partitionWhere(t *testing.T, tab *ring.Table, cond func(ring.Owners) bool) int {
	t.Helper()
	for p := range tab.Partitions() {
		if cond(tab.Owners(p)) {
			return p
		}
	}
	t.Fatal("no partition matches")
	return -1
}

// holdAllLeases records leases from every other member of tab, asked at
// asked, so the lease rule passes.
func holdAllLeases(o *ownership, tab *ring.Table, asked time.Duration) {
	for _, m := range tab.Members() {
		if m.Name != o.self {
			o.recordLease(m.Name, leaseReply{Fingerprint: tab.Fingerprint()}, asked, asked)
		}
	}
}

// What the gate answers, rule by rule, for a node "a" of a three-node ring
// that holds its leases and owns its partitions outright.
func TestGateRules(t *testing.T) {
	tab := tableOf(t, 1, "a", "b", "c")
	older := tableOf(t, 0, "a", "b", "c")
	primaryP := partitionWhere(t, tab, func(o ring.Owners) bool { return o.Primary == "a" })
	buddyP := partitionWhere(t, tab, func(o ring.Owners) bool { return o.Buddy == "a" })
	otherP := partitionWhere(t, tab, func(o ring.Owners) bool { return !owns(o, "a") })
	buddyPrimary := tab.Owners(buddyP).Primary

	type want struct {
		err       error // a sentinel the refusal wraps, or nil
		otherRing bool
		leases    bool
	}
	cases := []struct {
		name  string
		setup func(o *ownership)
		a     admission
		want  want
	}{
		{"a read on the primary is served", nil, admission{entry: entryRead, tab: tab, p: primaryP}, want{}},
		{"a write on the primary is served", nil, admission{entry: entryWrite, tab: tab, p: primaryP}, want{}},
		{"a read on a node that is not primary is refused", nil, admission{entry: entryRead, tab: tab, p: buddyP}, want{err: ErrNotOwner}},
		{"a write routed by an older ring is refused", nil, admission{entry: entryWrite, tab: older, p: primaryP}, want{err: ErrNotOwner}},
		{"a replica routed by an older ring is refused", nil, admission{entry: entryReplica, tab: older, p: buddyP, from: buddyPrimary}, want{err: ErrNotOwner}},
		{"a read routed by an older ring is served", nil, admission{entry: entryRead, tab: older, p: primaryP}, want{}},
		{"a buddy read on the buddy is served", nil, admission{entry: entryBuddyRead, tab: tab, p: buddyP}, want{}},
		{"a buddy read on a non-owner is refused", nil, admission{entry: entryBuddyRead, tab: tab, p: otherP}, want{err: ErrNotOwner}},
		{"a replica from the primary is stored", nil, admission{entry: entryReplica, tab: tab, p: buddyP, from: buddyPrimary}, want{}},
		{"a replica from another node is refused", nil, admission{entry: entryReplica, tab: tab, p: buddyP, from: "a"}, want{err: ErrNotOwner}},
		{"a replica on a node that is not buddy is refused", nil, admission{entry: entryReplica, tab: tab, p: primaryP, from: "b"}, want{err: ErrNotOwner}},
		{"a lease for a member is granted", nil, admission{entry: entryLease, tab: tab, from: "b"}, want{}},
		{"a lease for a stranger is refused", nil, admission{entry: entryLease, tab: tab, from: "z"}, want{err: ErrNotOwner}},
		{"a lease for itself is refused", nil, admission{entry: entryLease, tab: tab, from: "a"}, want{err: ErrNotOwner}},
		{"a fetch from the same ring is answered", nil, admission{entry: entryTransfer, tab: tab, p: otherP, ring: tab.Fingerprint()}, want{}},
		{"a fetch with no ring (a reconciliation) is answered", nil, admission{entry: entryTransfer, tab: tab, p: otherP}, want{}},
		{"a fetch from another ring is answered OtherRing", nil, admission{entry: entryTransfer, tab: tab, p: otherP, ring: 42}, want{otherRing: true}},
		{"without leases a read asks for them", func(o *ownership) { o.dropLeases() }, admission{entry: entryRead, tab: tab, p: primaryP}, want{leases: true}},
		{"without leases a buddy read asks for them", func(o *ownership) { o.dropLeases() }, admission{entry: entryBuddyRead, tab: tab, p: buddyP}, want{leases: true}},
		{"without leases, having asked, a write is refused", func(o *ownership) { o.dropLeases() }, admission{entry: entryWrite, tab: tab, p: primaryP, askedLeases: true}, want{err: ErrUnavailable}},
		{"without leases, two members unreachable, the node is cut off", func(o *ownership) { o.dropLeases() }, admission{entry: entryWrite, tab: tab, p: primaryP, askedLeases: true, unreachable: 2}, want{err: errCutOff}},
		{"without leases a replica is still stored", func(o *ownership) { o.dropLeases() }, admission{entry: entryReplica, tab: tab, p: buddyP, from: buddyPrimary}, want{}},
		{"leases granted under another ring do not count", func(o *ownership) {
			o.dropLeases()
			holdAllLeases(o, older, time.Second)
		}, admission{entry: entryRead, tab: tab, p: primaryP}, want{leases: true}},
		{"one lease of two others is enough", func(o *ownership) {
			o.dropLeases()
			o.recordLease("b", leaseReply{Fingerprint: tab.Fingerprint()}, 2*time.Second, 2*time.Second)
		}, admission{entry: entryRead, tab: tab, p: primaryP}, want{}},
		{"a lapsed lease does not count", func(o *ownership) {
			o.dropLeases()
			o.recordLease("b", leaseReply{Fingerprint: tab.Fingerprint()}, 0, 0)
		}, admission{entry: entryRead, tab: tab, p: primaryP}, want{leases: true}},
		{"quarantined, a read is refused", func(o *ownership) { o.setQuarantine(time.Hour) }, admission{entry: entryRead, tab: tab, p: primaryP}, want{err: ErrUnavailable}},
		{"quarantined, a lease is refused", func(o *ownership) { o.setQuarantine(time.Hour) }, admission{entry: entryLease, tab: tab, from: "b"}, want{err: ErrUnavailable}},
		{"quarantined, a request is still routed", func(o *ownership) { o.setQuarantine(time.Hour) }, admission{entry: entryRoute, tab: tab, p: primaryP}, want{}},
		{"quarantined, a replica is still stored", func(o *ownership) { o.setQuarantine(time.Hour) }, admission{entry: entryReplica, tab: tab, p: buddyP, from: buddyPrimary}, want{}},
		{"below min members, a request is not even routed", func(o *ownership) { setMinMembers(o, 4) }, admission{entry: entryRoute, tab: tab, p: primaryP}, want{err: errCutOff}},
		{"below min members, a lease is refused", func(o *ownership) { setMinMembers(o, 4) }, admission{entry: entryLease, tab: tab, from: "b"}, want{err: ErrUnavailable}},
		{"below min members, a fetch is answered", func(o *ownership) { setMinMembers(o, 4) }, admission{entry: entryTransfer, tab: tab, p: otherP}, want{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := installed(t, "a", tab)
			now := 2 * time.Second
			holdAllLeases(o, tab, now)
			if tc.setup != nil {
				tc.setup(o)
			}
			v := o.admit(tc.a, now)
			switch {
			case tc.want.err != nil && !errors.Is(v.err, tc.want.err):
				t.Fatalf("err = %v, want %v", v.err, tc.want.err)
			case tc.want.err == nil && v.err != nil:
				t.Fatalf("refused: %v", v.err)
			case v.otherRing != tc.want.otherRing:
				t.Fatalf("otherRing = %v, want %v", v.otherRing, tc.want.otherRing)
			case (len(v.leases) > 0) != tc.want.leases:
				t.Fatalf("leases to ask = %v, want some: %v", v.leases, tc.want.leases)
			}
		})
	}
}

// The gate with no ring refuses everything as not the owner.
func TestGateWithoutARing(t *testing.T) {
	o := ownershipOf("a", 1)
	for _, e := range []entry{entryRoute, entryRead, entryWrite, entryBuddyRead, entryReplica, entryTransfer, entryLease} {
		if v := o.admit(admission{entry: e}, 0); !errors.Is(v.err, ErrNotOwner) {
			t.Errorf("entry %d: %v, want ErrNotOwner", e, v.err)
		}
	}
	if _, err := o.grant("b", "", 0); err == nil {
		t.Error("a node with no ring granted a lease")
	}
}

// The lease quorum: all other members but one, and at least one.
func TestLeaseQuorum(t *testing.T) {
	for others, want := range map[int]int{0: 0, 1: 1, 2: 1, 3: 2, 4: 3, 9: 8} {
		if got := leaseQuorum(others); got != want {
			t.Errorf("leaseQuorum(%d) = %d, want %d", others, got, want)
		}
	}
}

// The lease seats, until the seat protocol is wired: every other member
// of the ring, all but one needed; a node outside the ring leases from all
// of its members.
func TestLeaseSeatsAreEveryOtherMemberAllButOneNeeded(t *testing.T) {
	for _, tc := range []struct {
		members   []string
		self      string
		want      []string
		need, spr int
	}{
		{[]string{"a"}, "a", nil, 0, 0},
		{[]string{"a", "b"}, "a", []string{"b"}, 1, 0},
		{[]string{"a", "b", "c"}, "b", []string{"a", "c"}, 1, 1},
		{[]string{"a", "b", "c", "d", "e"}, "c", []string{"a", "b", "d", "e"}, 3, 1},
		{[]string{"a", "b", "c"}, "x", []string{"a", "b", "c"}, 2, 1},
	} {
		l := leaseSeatsOf(tableOf(t, 1, tc.members...), tc.self)
		if !slices.Equal(l.names, tc.want) || l.need != tc.need || l.spare() != tc.spr {
			t.Errorf("seats of %s in %v: %v, need %d, spare %d; want %v, %d, %d", tc.self, tc.members, l.names, l.need, l.spare(), tc.want, tc.need, tc.spr)
		}
	}
	// The installed state carries them, and a node asks them for leases.
	o := ownershipOf("b", 1)
	tab := tableOf(t, 1, "a", "b", "c")
	if _, err := o.install(tab, 0, nil); err != nil {
		t.Fatal(err)
	}
	if got := o.seats(tab).names; !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("installed seats %v", got)
	}
	if got := o.missingLeases(tab, 0); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("missing leases %v before any grant", got)
	}
}

// A departure fences the partitions the departed member owned until this
// node's grant to it lapses, and until the other members have moved on
// for a lease's time (fenceWait): writes wait, replicas are refused, reads
// are served. A member that never had this node's lease is still fenced
// by the others'; one that gave its leases back fences nothing.
func TestDepartureFencesUntilTheGrantLapses(t *testing.T) {
	whole := tableOf(t, 1, "a", "b", "c")
	rest := tableOf(t, 2, "a", "b")
	cases := []struct {
		name      string
		grant     bool
		release   bool
		wantFence bool
	}{
		{"granted", true, false, true},
		{"granted and given back", true, true, false},
		{"never granted", false, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := installed(t, "a", whole)
			now := time.Second
			if tc.grant {
				if _, err := o.grant("c", "", now); err != nil {
					t.Fatal(err)
				}
			}
			if tc.release {
				o.release("c", "", now, allPartitions(o))
			}
			ch, err := o.install(rest, now, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ch.departed, []string{"c"}) {
				t.Fatalf("departed = %v", ch.departed)
			}
			holdAllLeases(o, rest, now+time.Millisecond) // asked once the ring was installed
			p := partitionOwnedBefore(t, whole, rest, func(old, now ring.Owners) bool {
				return now.Primary == "a" && (old.Primary == "c" || old.Buddy == "c")
			})
			w := o.admit(admission{entry: entryWrite, tab: rest, p: p}, now)
			if got := w.fence > 0; got != tc.wantFence || (ch.fenced > 0) != tc.wantFence {
				t.Fatalf("write fenced = %v (fenced %d partitions), want %v", got, ch.fenced, tc.wantFence)
			}
			if tc.wantFence {
				if w.fence < testLease {
					t.Fatalf("fenced for %v, want at least the lease %v", w.fence, testLease)
				}
				if v := o.admit(admission{entry: entryRead, tab: rest, p: p}, now); v.err != nil || v.fence != 0 {
					t.Fatalf("a read of a fenced partition: %+v", v)
				}
				if v := o.admit(admission{entry: entryWrite, tab: rest, p: p}, now+w.fence); v.fence != 0 {
					t.Fatalf("still fenced once the grant lapsed: %v", v.fence)
				}
			}
		})
	}
}

// A departed owner's partition, taken over by this node and a member
// that was not in the departed owner's ring (a joiner, which granted it
// nothing), waits (fenceWait, which the gate applies to writes and
// replicas) until the other members of that ring, all but one, have
// answered a lease under the new ring and a lease's time has passed
// since, though this node never granted the departed owner a lease. Its
// giving its leases back lifts that wait.
func TestADepartedOwnersLeasesFromTheOthersAreWaitedOut(t *testing.T) {
	whole := tableOf(t, 1, "a", "b", "c", "d")
	joined := tableOf(t, 2, "a", "b", "c", "x")
	p := partitionOwnedBefore(t, whole, joined, func(old, now ring.Owners) bool {
		return owns(old, "d") && owns(now, "c") && owns(now, "x")
	})
	for _, release := range []bool{false, true} {
		o := installed(t, "c", whole)
		now := time.Second
		ch, err := o.install(joined, now, nil)
		if err != nil {
			t.Fatal(err)
		}
		if ch.fenced == 0 {
			t.Fatalf("no partition fenced when d departed and x joined")
		}
		wait := func(at time.Duration) time.Duration { return o.fenceWait(o.load(), o.load().parts[p], at) }
		o.recordLease("x", leaseReply{Fingerprint: joined.Fingerprint()}, now, now) // the joiner's answer proves nothing of d
		if w := wait(now); w <= 0 || w > testLease {
			t.Fatalf("partition %d, taken over with joiner x, no member of d's ring answered under the new ring: fenced for %v, want a short wait to look again", p, w)
		}
		if release {
			o.release("d", "", now, nil)
			if w := wait(now); w > 0 {
				t.Fatalf("d gave its leases back, and partition %d is still fenced for %v", p, w)
			}
			continue
		}
		o.recordLease("a", leaseReply{Fingerprint: joined.Fingerprint()}, now-time.Millisecond, now+time.Millisecond) // asked before the ring was installed
		if w := wait(now + time.Millisecond); w <= 0 || w > testLease {
			t.Fatalf("a answered a request sent before the new ring was installed: fenced for %v, want a short wait to look again", w)
		}
		answered := now + 50*time.Millisecond
		o.recordLease("a", leaseReply{Fingerprint: joined.Fingerprint()}, now+10*time.Millisecond, answered)
		o.recordLease("a", leaseReply{Fingerprint: joined.Fingerprint()}, now+100*time.Millisecond, now+120*time.Millisecond) // a renewal: the first answer counts
		until := answered + o.lease + o.margin()
		if w := wait(answered); w != until-answered {
			t.Fatalf("a, one of a and b (all but one), answered under the new ring at %v: fenced for %v, want %v", answered, w, until-answered)
		}
		if w := wait(until); w > 0 {
			t.Fatalf("a lease's time after a moved on: still fenced for %v", w)
		}
		// Waited out, the departure is forgotten at the next answer: a
		// later ring, which resets the answers, does not fence again.
		o.recordLease("b", leaseReply{Fingerprint: joined.Fingerprint()}, until, until)
		if left := o.load().parts[p].departed; len(left) > 0 {
			t.Fatalf("partition %d still waits for %v once its fence was waited out", p, left)
		}
	}
}

// A replica arriving for a fenced partition is refused, not waited for:
// its primary retries.
func TestFencedReplicaIsRefused(t *testing.T) {
	whole := tableOf(t, 1, "a", "b", "c")
	rest := tableOf(t, 2, "a", "b")
	o := installed(t, "a", whole)
	if _, err := o.grant("c", "", time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := o.install(rest, time.Second, nil); err != nil {
		t.Fatal(err)
	}
	p := partitionOwnedBefore(t, whole, rest, func(old, now ring.Owners) bool {
		return now.Buddy == "a" && (old.Primary == "c" || old.Buddy == "c")
	})
	v := o.admit(admission{entry: entryReplica, tab: rest, p: p, from: rest.Owners(p).Primary}, time.Second)
	if !errors.Is(v.err, errFenced) || !errors.Is(v.err, ErrUnavailable) {
		t.Fatalf("replica to a fenced partition: %v, want a fence refusal", v.err)
	}
}

// partitionOwnedBefore returns a partition whose owners in before and
// after satisfy cond.
func partitionOwnedBefore(t *testing.T, before, after *ring.Table, cond func(old, now ring.Owners) bool) int {
	t.Helper()
	for p := range after.Partitions() {
		if cond(before.Owners(p), after.Owners(p)) {
			return p
		}
	}
	t.Fatal("no partition matches")
	return -1
}

// Both owners of a partition leaving at once loses it, and says so.
func TestBothOwnersLeavingLosesThePartition(t *testing.T) {
	whole := tableOf(t, 1, "a", "b", "c", "d", "e")
	rest := tableOf(t, 2, "a", "b", "c") // still a quorum: three of five
	o := installed(t, "a", whole)
	for q := range whole.Partitions() {
		o.finishTransfer(whole, q, o.load().parts[q].transfer) // a's own hand-offs are done
	}
	ch, err := o.install(rest, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for p := range whole.Partitions() {
		if old := whole.Owners(p); !rest.Has(old.Primary) && !rest.Has(old.Buddy) {
			want = append(want, p)
		}
	}
	if len(want) == 0 || !slices.Equal(ch.lost, want) || !slices.Equal(o.lostPartitions().Partitions, want) {
		t.Fatalf("lost %v (recorded %v), want %v", ch.lost, o.lostPartitions().Partitions, want)
	}
}

// A node that joins takes each partition it gains from the owners the ring
// had without it: a hand-off, fetched first by ring, making it unready
// until pulled; a rejoin after a cut reconciles what it already owned.
func TestJoiningOwnershipFetchesByRingUntilPulled(t *testing.T) {
	tab := tableOf(t, 5, "a", "b", "c")
	o := installed(t, "a", tab)
	s := o.load()
	if s.transfers(false) == 0 {
		t.Fatal("a joining node expects no hand-off")
	}
	without := tableWithout(tab, "a")
	for p := range tab.Partitions() {
		tr := s.parts[p].transfer
		if !owns(tab.Owners(p), "a") {
			if tr != nil {
				t.Fatalf("partition %d: a transfer for a partition not owned", p)
			}
			continue
		}
		old := without.Owners(p)
		if tr == nil || tr.reconcile || !slices.Equal(tr.sources, sourcesIn(tab, "a", old.Primary, old.Buddy)) {
			t.Fatalf("partition %d: transfer %+v, want a hand-off from %+v", p, tr, old)
		}
	}
	p := partitionWhere(t, tab, func(ow ring.Owners) bool { return ow.Primary == "a" })
	holdAllLeases(o, tab, time.Second)
	v := o.admit(admission{entry: entryRead, tab: tab, p: p}, time.Second)
	if v.fetch == nil || v.fetch.ring != tab.Fingerprint() || len(v.fetch.sources) == 0 {
		t.Fatalf("a read during a hand-off: fetch %+v, want the previous owners by ring", v.fetch)
	}
	// Once pulled, the partition is served from the node's own copy.
	for q := range tab.Partitions() {
		o.finishTransfer(tab, q, o.load().parts[q].transfer)
	}
	if v := o.admit(admission{entry: entryRead, tab: tab, p: p}, time.Second); v.fetch != nil {
		t.Fatalf("fetch after the hand-off: %+v", v.fetch)
	}
}

// Members that reappear are reconciled with: no hand-off, so the node
// stays ready, reads as buddy need not wait, and reads as primary fetch
// without a ring.
func TestReappearedMembersAreReconciled(t *testing.T) {
	whole := tableOf(t, 1, "a", "b", "c")
	alone := tableOf(t, 2, "a", "b")
	back := tableOf(t, 3, "a", "b", "c")
	o := installed(t, "a", whole)
	for q := range whole.Partitions() {
		o.finishTransfer(whole, q, o.load().parts[q].transfer)
	}
	if _, err := o.install(alone, time.Second, nil); err != nil {
		t.Fatal(err)
	}
	for q := range alone.Partitions() {
		o.finishTransfer(alone, q, o.load().parts[q].transfer)
	}
	ch, err := o.install(back, 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ch.appeared, []string{"c"}) {
		t.Fatalf("appeared = %v", ch.appeared)
	}
	s := o.load()
	if s.transfers(false) != 0 || s.transfers(true) == 0 {
		t.Fatalf("hand-offs %d, reconciliations %d: want only reconciliations", s.transfers(false), s.transfers(true))
	}
	holdAllLeases(o, back, 2*time.Second)
	primary := partitionOwnedBefore(t, alone, back, func(old, now ring.Owners) bool { return now.Primary == "a" && old.Primary == "a" })
	v := o.admit(admission{entry: entryRead, tab: back, p: primary}, 2*time.Second)
	if v.fetch == nil || v.fetch.ring != 0 || !slices.Contains(v.fetch.sources, "c") {
		t.Fatalf("a primary read while reconciling: fetch %+v, want from c without a ring", v.fetch)
	}
	buddy := partitionOwnedBefore(t, alone, back, func(old, now ring.Owners) bool { return now.Buddy == "a" && old.Buddy == "a" })
	if v := o.admit(admission{entry: entryBuddyRead, tab: back, p: buddy}, 2*time.Second); v.fetch != nil {
		t.Fatalf("a buddy read while reconciling waits for a fetch: %+v", v.fetch)
	}
}

// An owner that keeps a partition while another owner of it is displaced
// acknowledges no write until the displaced owner has answered a lease
// request sent since the ring changed, under the new ring.
func TestDisplacedOwnersConfirmBeforeWrites(t *testing.T) {
	before := tableOf(t, 1, "a", "b", "c")
	after := tableOf(t, 2, "a", "b", "c", "d")
	o := installed(t, "a", before)
	installedAt := 5 * time.Second
	if _, err := o.install(after, installedAt, nil); err != nil {
		t.Fatal(err)
	}
	p := partitionOwnedBefore(t, before, after, func(old, now ring.Owners) bool {
		return now.Primary == "a" && old.Primary == "a" && old.Buddy != now.Buddy && after.Has(old.Buddy)
	})
	displaced := before.Owners(p).Buddy
	now := installedAt + time.Second
	// A lease asked before the change, even under the same fingerprint
	// (a ring that came back), does not confirm; nor does one asked at the
	// very instant of the change, which may have gone out just before it.
	o.recordLease(displaced, leaseReply{Fingerprint: after.Fingerprint()}, installedAt, installedAt)
	for _, m := range after.Members() {
		if m.Name != "a" && m.Name != displaced {
			o.recordLease(m.Name, leaseReply{Fingerprint: after.Fingerprint()}, now, now)
		}
	}
	for q := range after.Partitions() {
		o.finishTransfer(after, q, o.load().parts[q].transfer)
	}
	v := o.admit(admission{entry: entryWrite, tab: after, p: p}, installedAt)
	if !slices.Equal(v.displaced, []string{displaced}) {
		t.Fatalf("write: displaced %v, want to ask %s", v.displaced, displaced)
	}
	if v := o.admit(admission{entry: entryWrite, tab: after, p: p, askedDisplaced: true}, installedAt); !errors.Is(v.err, errDisplaced) {
		t.Fatalf("write after asking, unanswered: %v, want errDisplaced", v.err)
	}
	if v := o.admit(admission{entry: entryRead, tab: after, p: p}, installedAt); v.err != nil || len(v.displaced) > 0 {
		t.Fatalf("a read waits for displaced owners: %+v", v)
	}
	o.recordLease(displaced, leaseReply{Fingerprint: after.Fingerprint()}, now, now)
	v = o.admit(admission{entry: entryWrite, tab: after, p: p}, now)
	if v.err != nil || !v.confirmed {
		t.Fatalf("write once the displaced owner answered: %+v", v)
	}
	o.confirmDisplaced(after, p)
	if got := o.load().parts[p].displaced; got != nil {
		t.Fatalf("displaced after confirming: %v", got)
	}
}

// pullsFailed records, for every transfer o has pending, a pull begun at
// at that failed, as Node.pullJob does.
func pullsFailed(o *ownership, at time.Duration) {
	for p, part := range o.load().parts {
		if part.transfer != nil {
			o.transferTried(p, part.transfer, at)
		}
	}
}

// Transfers whose sources all left, or that waited longer than
// HandoffTimeout and whose pull begun past it failed, are given up; a
// source that answers from another ring restarts the wait.
func TestDueTransfers(t *testing.T) {
	tab := tableOf(t, 1, "a", "b", "c")
	timeout := newOwnership(Config{Name: "a"}.withDefaults()).handoff
	o := installed(t, "a", tab)
	jobs, gaveUp, _, _ := o.dueTransfers(tab, timeout/2)
	if len(jobs) < 2 || len(gaveUp) != 0 {
		t.Fatalf("at half the timeout: %d jobs, gave up %v", len(jobs), gaveUp)
	}
	answered := jobs[0].p
	// An answer for a transfer the partition no longer has restarts
	// nothing.
	o.transferAnswered(jobs[1].p, &transfer{}, timeout/2)
	o.transferAnswered(answered, jobs[0].transfer, timeout/2)
	// The node distrusts its copies of another (it was declared dead).
	distrusted := jobs[1].p
	o.mu.Lock()
	o.edit(func(s *ownState) { s.parts[distrusted].distrusted = true })
	o.mu.Unlock()
	// Past the timeout, nothing is given up until a pull begun past it
	// has failed: a slow round may not have tried them yet (chaos finding
	// F17, session 386-r0001). A pull begun at the timeout, not past it,
	// does not count.
	for _, at := range []time.Duration{0, timeout} {
		if at > 0 {
			pullsFailed(o, at)
		}
		if _, gaveUp, lost, _, pending := o.due(tab, 2*timeout, false); pending || gaveUp != nil || lost != nil {
			t.Fatalf("past the timeout, the latest failed pull begun at %v: pending %v, gave up %v, lost %v; want nothing due to be given up", at, pending, gaveUp, lost)
		}
	}
	pullsFailed(o, timeout+time.Millisecond)
	// Asked without giving up, it changes nothing and says some are due:
	// the caller gives them up holding the store, so that no read takes
	// the copies the loss drops (Node.pullDue).
	held := o.load()
	if _, gaveUp, lost, drop, pending := o.due(tab, timeout+time.Millisecond, false); !pending || gaveUp != nil || lost != nil || drop != nil {
		t.Fatalf("past the timeout, not giving up: pending %v, gave up %v, lost %v, drop %v; want pending and nothing given up", pending, gaveUp, lost, drop)
	}
	if st := o.load(); !st.distrusts(distrusted) || st.parts[distrusted].transfer != held.parts[distrusted].transfer || o.lostPartitions().Partitions != nil {
		t.Fatalf("past the timeout, not giving up: partition %d %+v, lost %+v; want it still distrusted and handed over, no loss", distrusted, st.parts[distrusted], o.lostPartitions())
	}
	jobs, gaveUp, lost, drop := o.dueTransfers(tab, timeout+time.Millisecond)
	if !slices.Equal(drop, []int{distrusted}) || o.load().distrusts(distrusted) {
		t.Fatalf("past the timeout: drop %v, want only partition %d, whose copies the node distrusted, and no more distrust", drop, distrusted)
	}
	if len(jobs) != 1 || jobs[0].p != answered || len(gaveUp) == 0 {
		t.Fatalf("past the timeout: jobs %v, gave up %d, want only partition %d left", jobs, len(gaveUp), answered)
	}
	// Hand-offs given up for time are losses, reported: no previous
	// owner answered, so what they held that this node lacks is gone.
	if len(lost) != len(gaveUp) || !slices.Equal(o.lostPartitions().Partitions, lost) || o.lostPartitions().Epoch != tab.Epoch() {
		t.Fatalf("past the timeout: lost %v, reported %+v, want the %d given up", lost, o.lostPartitions(), len(gaveUp))
	}
	// Judged by a ring the node has left, nothing is given up: a ring
	// installed since the caller read it brought the transfers.
	grown := tableOf(t, 2, "a", "b", "c", "d")
	if _, err := o.install(grown, timeout, nil); err != nil {
		t.Fatal(err)
	}
	before := o.load().transfers(true)
	if jobs, gaveUp, _, _ := o.dueTransfers(tableOf(t, 1, "a"), timeout+time.Millisecond); len(jobs) != 0 || len(gaveUp) != 0 || o.load().transfers(true) != before {
		t.Fatalf("by a stale ring: jobs %v, gave up %v, transfers %d of %d", jobs, gaveUp, o.load().transfers(true), before)
	}
	// A ring below the quorum (the smaller side of a cut) loses nothing
	// and gives nothing up, its sources gone or not: the hand-offs wait
	// for the cut to heal, and no partition becomes held empty.
	lostBefore := o.lostPartitions()
	handoffs := o.load().transfers(false)
	shrunk := tableOf(t, 3, "a")
	if _, err := o.install(shrunk, timeout, nil); err != nil {
		t.Fatal(err)
	}
	jobs, gaveUp, _, _ = o.dueTransfers(shrunk, 10*timeout)
	if len(jobs) != 0 || len(gaveUp) != 0 || o.load().transfers(false) < handoffs || o.lostPartitions().Epoch != lostBefore.Epoch {
		t.Fatalf("below the quorum, every source gone: jobs %v, gave up %v, hand-offs %d (were %d), lost %+v; want the hand-offs kept, nothing given up or lost",
			jobs, gaveUp, o.load().transfers(false), handoffs, o.lostPartitions())
	}
	for p := range shrunk.Partitions() {
		if tr := o.load().parts[p].transfer; tr != nil && !tr.reconcile && o.load().holds(p) {
			t.Fatalf("partition %d below the quorum: held while still handed over", p)
		}
	}
}

// A pull begun before a partition was marked again (the node learned it
// was declared dead) does not end the new transfer: only a pull for it
// does.
func TestAnOlderPullDoesNotEndANewerTransfer(t *testing.T) {
	tab := tableOf(t, 1, "a", "b", "c")
	o := installed(t, "a", tab)
	jobs, _, _, _ := o.dueTransfers(tab, 0)
	if len(jobs) == 0 {
		t.Fatal("no transfers to work on")
	}
	j := jobs[0]
	o.reconcile(nil, true, time.Millisecond) // marked again while j's pull runs
	if o.finishTransfer(tab, j.p, j.transfer); o.load().parts[j.p].transfer == nil {
		t.Fatal("a pull begun before the partition was marked again ended its transfer")
	}
	jobs, _, _, _ = o.dueTransfers(tab, time.Millisecond)
	for _, k := range jobs {
		o.finishTransfer(tab, k.p, k.transfer)
	}
	if n := o.load().transfers(true); n != 0 {
		t.Fatalf("%d transfers left after pulls for them", n)
	}
}

// A lease reply that counts more departures than the last one says the
// node was declared dead meanwhile; with distrust it hands every owned
// partition over again.
func TestDeclaredDeadDistrustsOwnCopies(t *testing.T) {
	tab := tableOf(t, 1, "a", "b", "c")
	o := installed(t, "a", tab)
	for q := range tab.Partitions() {
		o.finishTransfer(tab, q, o.load().parts[q].transfer)
	}
	if o.recordLease("b", leaseReply{Fingerprint: tab.Fingerprint(), Departed: 1}, 0, 0) {
		t.Fatal("the first reply cannot say the node was declared dead")
	}
	if o.recordLease("b", leaseReply{Fingerprint: tab.Fingerprint(), Departed: 1}, time.Second, time.Second) {
		t.Fatal("the same count again says declared dead")
	}
	if !o.recordLease("b", leaseReply{Fingerprint: tab.Fingerprint(), Departed: 2}, 2*time.Second, 2*time.Second) {
		t.Fatal("a grown count does not say declared dead")
	}
	// Not recorded yet: a request served between this lease and the
	// marking below would be served from copies the node distrusts.
	if l := (*o.held.Load())["b"]; l.asked == 2*time.Second {
		t.Fatal("the lease that says declared dead counted before the partitions were marked")
	}
	o.reconcile(nil, true, 2*time.Second)
	if o.recordLease("b", leaseReply{Fingerprint: tab.Fingerprint(), Departed: 2}, 2*time.Second, 2*time.Second) {
		t.Fatal("recorded again after the marking, it still says declared dead")
	}
	if l := (*o.held.Load())["b"]; l.asked != 2*time.Second {
		t.Fatal("recorded again after the marking, the lease does not count")
	}
	owned := 0
	for p := range tab.Partitions() {
		if owns(tab.Owners(p), "a") {
			owned++
		}
	}
	if got := o.load().transfers(false); got != owned {
		t.Fatalf("%d hand-offs after distrust, want every owned partition (%d)", got, owned)
	}
}

// A node restarted under its name is a new run: a lease reply tells it of
// its own run's departures, never of the old run's. Told of the old run's
// (counted by name), the new run took the old one's drain for news that
// it had been declared dead, distrusted every partition it had just taken
// over, and waited on owners that waited on it (CHAOS.md F19). A node of
// an older version, which names no run, is answered for the run in the
// granter's ring.
func TestANewRunIsToldOnlyOfItsOwnDepartures(t *testing.T) {
	granter := installed(t, "a", tableOfRuns(t, 1, "a@1", "b@1", "c@1"))
	newRun := installed(t, "b", tableOfRuns(t, 1, "a@1", "b@2", "c@1"))
	ask := func(incarnation string) leaseReply {
		t.Helper()
		r, err := granter.grant("b", incarnation, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// The new run asks while the granter's ring still has the old run.
	if newRun.recordLease("a", ask("2"), 3*time.Second, 3*time.Second) {
		t.Fatal("a new run's first lease says it was declared dead")
	}
	// The granter takes the old run out and the new one in.
	if _, err := granter.install(tableOfRuns(t, 2, "a@1", "b@2", "c@1"), 4*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if r := ask("1"); r.Departed != 1 {
		t.Fatalf("the old run's departures: %d, want 1", r.Departed)
	}
	if r := ask(""); r.Departed != 0 {
		t.Fatalf("a request naming no run, from the run in the ring: departures %d, want 0", r.Departed)
	}
	r := ask("2")
	if r.Departed != 0 || r.Incarnation != "1" {
		t.Fatalf("the new run's reply: %+v, want no departures, from the granter's run 1", r)
	}
	if newRun.recordLease("a", r, 5*time.Second, 5*time.Second) {
		t.Fatal("the new run was told it was declared dead when its old run left")
	}
	// The new run declared dead itself: told so.
	if _, err := granter.install(tableOfRuns(t, 3, "a@1", "c@1"), 6*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := granter.install(tableOfRuns(t, 4, "a@1", "b@2", "c@1"), 7*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if r := ask("2"); !newRun.recordLease("a", r, 8*time.Second, 8*time.Second) {
		t.Fatalf("the new run, declared dead, was not told (reply %+v)", r)
	}
}

// A grant under a ring, then the install of a ring that drops the holder:
// the grant is seen by the fence, whichever order the two take.
func TestGrantAndDepartureAreOrdered(t *testing.T) {
	whole := tableOf(t, 1, "a", "b", "c")
	rest := tableOf(t, 2, "a", "b")
	o := installed(t, "a", whole)
	if _, err := o.install(rest, time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := o.grant("c", "", time.Second); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("a grant to a departed member: %v, want ErrNotOwner", err)
	}
	if got := o.departures[run{name: "c"}]; got != 1 {
		t.Fatalf("departures of c = %d, want 1", got)
	}
	if r, err := o.grant("b", "", time.Second); err != nil || r.Fingerprint != rest.Fingerprint() {
		t.Fatalf("grant to b: %+v %v", r, err)
	}
}

// An older or repeated ring changes nothing.
func TestStaleRingIsIgnored(t *testing.T) {
	o := installed(t, "a", tableOf(t, 3, "a", "b"))
	before := o.load()
	ch, err := o.install(tableOf(t, 3, "a", "b", "c"), time.Second, nil)
	if err != nil || !ch.stale || o.load() != before {
		t.Fatalf("a repeated epoch: %+v %v", ch, err)
	}
	if _, err := o.install(tableOf(t, 4, "a"), time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := o.install(mustPartitions(t, 17), time.Second, nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a ring of another partition count: %v", err)
	}
}

// mustPartitions returns a ring with another partition count.
func mustPartitions(t *testing.T, n int) *ring.Table {
	cfg := ring.DefaultConfig()
	cfg.Partitions = n
	tab, err := ring.New(cfg, 9, []ring.Member{{Name: "a"}})
	if err != nil {
		t.Fatal(fmt.Errorf("ring of %d partitions: %w", n, err))
	}
	return tab
}

// Installing rings while writes are stored and leases are asked for: the
// locks nest one way only (every store partition, then ownership's), and
// no write is lost or stored by a ring the node has left. Run under -race.
func TestRingInstallsRaceWritesAndGrants(t *testing.T) {
	n := New(Config{Name: "a", Caller: nil})
	defer n.Close()
	if err := n.SetTable(tableOf(t, 1, "a")); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var installs sync.WaitGroup
	installs.Go(func() {
		for epoch := uint64(2); ; epoch++ {
			select {
			case <-done:
				return
			default:
			}
			if err := n.SetTable(tableOf(t, epoch, "a")); err != nil {
				t.Error(err)
				return
			}
			_, _ = n.own.grant("b", "", n.mono())
		}
	})
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Go(func() {
			for i := range 50 {
				id := sessionID(w*1000 + i)
				if _, err := n.Do(testCtx(t), &Op{Kind: OpPut, ID: id}); err != nil {
					t.Errorf("put %s: %v", id, err)
					return
				}
				if s, err := n.Get(testCtx(t), id, true); err != nil || s.Version != 1 {
					t.Errorf("get %s: %+v %v", id, s, err)
					return
				}
			}
		})
	}
	writers.Wait()
	close(done)
	installs.Wait()
}

// Only a node that joins or was declared dead is kept unready by its
// hand-offs; a ready node taking over a departed member's partitions stays
// ready while it pulls them (and fetches first meanwhile), so balancers'
// health checks do not flap on a failover.
func TestWhichHandoffsKeepANodeUnready(t *testing.T) {
	whole := tableOf(t, 1, "a", "b", "c", "d")
	rest := tableOf(t, 2, "a", "b", "c")
	o := installed(t, "a", whole)
	if o.load().gating() == 0 {
		t.Fatal("a joining node's hand-offs do not keep it unready")
	}
	for p := range whole.Partitions() {
		o.finishTransfer(whole, p, o.load().parts[p].transfer)
	}
	if _, err := o.install(rest, time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if s := o.load(); s.transfers(false) == 0 || s.gating() != 0 {
		t.Fatalf("after a departure: %d hand-offs, %d keeping the node unready; want some, none", s.transfers(false), s.gating())
	}
	o.reconcile(nil, true, 2*time.Second)
	if o.load().gating() == 0 {
		t.Fatal("a node declared dead is not kept unready by its hand-offs")
	}
}

// The quorum follows the membership: a node serves only in a ring holding
// a majority of the members it knows, crashed ones included, so the side
// of a cut its failure detector shrank to a minority serves nothing. A
// graceful leave (the member gives its leases back) lowers it;
// AllowMinority drops it.
func TestQuorumFollowsTheMembership(t *testing.T) {
	seven := tableOf(t, 1, "a", "b", "c", "d", "e", "f", "g")
	three := tableOf(t, 2, "a", "b", "c")
	four := tableOf(t, 3, "a", "b", "c", "d")
	need := func(o *ownership) int { return o.load().need }

	o := ownershipOf("a", 0)
	if got := need(o); got != 1 {
		t.Fatalf("alone, before any ring: need %d, want 1", got)
	}
	if _, err := o.install(tableOf(t, 0, "a", "b", "c"), 0, nil); err != nil {
		t.Fatal(err)
	}
	if got := need(o); got != 2 {
		t.Fatalf("three members: need %d, want 2", got)
	}
	if _, err := o.install(seven, 0, nil); err != nil {
		t.Fatal(err)
	}
	if got := need(o); got != 4 {
		t.Fatalf("grown to seven: need %d, want 4", got)
	}
	// A 3/4 cut: the side of three, its ring shrunk by its failure
	// detector, serves nothing; the side of four does.
	if _, err := o.install(three, time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if v := o.admit(admission{entry: entryRoute, tab: three}, time.Second); !errors.Is(v.err, errCutOff) {
		t.Fatalf("three of seven: %v, want cut off", v.err)
	}
	if _, err := o.install(four, 2*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if v := o.admit(admission{entry: entryRoute, tab: four}, 2*time.Second); v.err != nil {
		t.Fatalf("four of seven: %v, want served", v.err)
	}
	// e, f and g leave gracefully: the quorum is a majority of four.
	for _, m := range []string{"e", "f", "g"} {
		o.release(m, "", 3*time.Second, allPartitions(o))
	}
	if got := need(o); got != 3 {
		t.Fatalf("after three graceful leaves: need %d, want 3", got)
	}
	if v := o.admit(admission{entry: entryRoute, tab: four}, 3*time.Second); v.err != nil {
		t.Fatalf("four of four: %v", v.err)
	}

	loose := newOwnership(Config{Name: "a", AllowMinority: true, LeaseDuration: testLease}.withDefaults())
	if _, err := loose.install(seven, 0, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := loose.install(tableOf(t, 2, "a"), time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if v := loose.admit(admission{entry: entryRoute, tab: loose.table()}, time.Second); v.err != nil {
		t.Fatalf("alone with AllowMinority: %v, want served", v.err)
	}
}

// A graceful leave lowers the quorum for good: a ring installed after the
// leaver gave its leases back, from a membership view that has not yet
// heard it left, does not count it again, so a crash after a drain leaves
// the survivors the majority they were promised. Only a new run of the
// leaver counts again.
func TestAStaleRingDoesNotUndoAGracefulLeave(t *testing.T) {
	need := func(o *ownership) int { return o.load().need }
	o := ownershipOf("a", 0)
	if _, err := o.install(tableOfRuns(t, 1, "a@1", "b@1", "c@1", "d@1"), 0, nil); err != nil {
		t.Fatal(err)
	}
	o.release("d", "1", time.Second, allPartitions(o))
	if got := need(o); got != 2 {
		t.Fatalf("after d left gracefully: need %d, want 2", got)
	}
	// A membership view that still lists d's run, then one that lost b.
	if _, err := o.install(tableOfRuns(t, 2, "a@1", "b@1", "c@1", "d@1"), 2*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if got := need(o); got != 2 {
		t.Fatalf("a later ring still listing the run that left: need %d, want 2", got)
	}
	if _, err := o.install(tableOfRuns(t, 3, "a@1", "c@1"), 3*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if v := o.admit(admission{entry: entryRoute, tab: o.table()}, 3*time.Second); errors.Is(v.err, errCutOff) {
		t.Fatalf("two of the three members left after a graceful leave: %v, want not cut off", v.err)
	}
	// d back as a new run: a member again.
	if _, err := o.install(tableOfRuns(t, 4, "a@1", "c@1", "d@2"), 4*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	if got := need(o); got != 3 {
		t.Fatalf("after d came back as a new run: need %d, want 3 (a majority of a, b, c, d)", got)
	}
}

// Both owners of a partition leaving the ring is a reported loss on a
// ring that is still a quorum; on the smaller side of a cut (a ring below
// the quorum) they are out of reach, not gone, and nothing is reported.
func TestLossIsReportedOnlyByAQuorum(t *testing.T) {
	five := tableOf(t, 1, "a", "b", "c", "d", "e")
	p := partitionWhere(t, five, func(o ring.Owners) bool { return !owns(o, "a") && !owns(o, "b") && !owns(o, "c") })
	gone := five.Owners(p)

	o := installed(t, "a", five)
	var rest []string
	for _, m := range []string{"a", "b", "c", "d", "e"} {
		if m != gone.Primary && m != gone.Buddy {
			rest = append(rest, m)
		}
	}
	ch, err := o.install(tableOf(t, 2, rest...), time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ch.lost, p) || !slices.Contains(o.lostPartitions().Partitions, p) {
		t.Fatalf("three of five, partition %d's owners %v both gone: lost %v, reported %+v", p, gone, ch.lost, o.lostPartitions())
	}

	minority := installed(t, "a", five)
	ch, err = minority.install(tableOf(t, 2, "a"), time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.lost) != 0 || len(minority.lostPartitions().Partitions) != 0 {
		t.Fatalf("alone of five: lost %v, reported %+v; want nothing (a cut, not a loss)", ch.lost, minority.lostPartitions())
	}
}

// tableOfRuns builds a ring at epoch of members given as "name@boot":
// each run of a node is its own incarnation.
func tableOfRuns(t *testing.T, epoch uint64, runs ...string) *ring.Table {
	t.Helper()
	var members []ring.Member
	for _, r := range runs {
		name, boot, _ := strings.Cut(r, "@")
		members = append(members, ring.Member{Name: name, Incarnation: boot, Peer: name + ":7947"})
	}
	tab, err := ring.New(ring.DefaultConfig(), epoch, members)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// A member restarted under its name, seen by a node that never saw it
// leave (the restart was quicker than the failure detector), is a
// departure and an appearance: what the old run held is gone. The
// partitions it co-owned with this node are fenced until this node's
// grant to the old run lapses and reconciled with the new run; a
// hand-off it was the only source of is reported lost, never pulled from
// the empty new run; a partition it held with another member that left
// at the same time is reported lost (CHAOS.md F6).
func TestARestartUnderTheSameNameIsADepartureAndAnAppearance(t *testing.T) {
	before := tableOfRuns(t, 1, "a@1", "b@1", "c@1", "d@1", "e@1")
	o := installed(t, "a", before)
	for q := range before.Partitions() {
		o.finishTransfer(before, q, o.load().parts[q].transfer)
	}
	holdAllLeases(o, before, time.Second)
	if _, err := o.grant("b", "", 2*time.Second); err != nil {
		t.Fatal(err)
	}

	restarted := tableOfRuns(t, 2, "a@1", "b@2", "c@1", "d@1", "e@1")
	if restarted.Fingerprint() == before.Fingerprint() {
		t.Fatal("a ring whose member restarted has the fingerprint of the ring before")
	}
	ch, err := o.install(restarted, 2100*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ch.departed, []string{"b"}) || !slices.Equal(ch.appeared, []string{"b"}) {
		t.Fatalf("departed %v, appeared %v; want b in both", ch.departed, ch.appeared)
	}
	shared := partitionWhere(t, restarted, func(ow ring.Owners) bool { return owns(ow, "a") && owns(ow, "b") })
	part := o.load().parts[shared]
	if part.fence <= 2100*time.Millisecond {
		t.Fatalf("partition %d, co-owned with b's old run, is not fenced (fence %v)", shared, part.fence)
	}
	if part.transfer == nil || !part.transfer.reconcile || !slices.Equal(part.transfer.sources, []string{"b"}) {
		t.Fatalf("partition %d: transfer %+v, want a reconciliation with b's new run", shared, part.transfer)
	}
	if len(ch.lost) != 0 {
		t.Fatalf("lost %v with only b restarted: a still holds every partition it shared with b", ch.lost)
	}

	// A node that takes over partitions from b when d leaves, with b
	// restarting before it handed them over: the new b has none of them.
	o = installed(t, "a", before)
	for q := range before.Partitions() {
		o.finishTransfer(before, q, o.load().parts[q].transfer)
	}
	dGone := tableOfRuns(t, 2, "a@1", "b@1", "c@1", "e@1")
	if _, err := o.install(dGone, time.Second, nil); err != nil {
		t.Fatal(err)
	}
	pending := -1
	for p, ps := range o.load().parts {
		if ps.transfer != nil && !ps.transfer.reconcile && slices.Equal(ps.transfer.sources, []string{"b"}) {
			pending = p
			break
		}
	}
	if pending < 0 {
		t.Fatal("no hand-off from b alone in this ring")
	}
	ch, err = o.install(tableOfRuns(t, 3, "a@1", "b@2", "c@1", "e@1"), 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(ch.lost, pending) || !slices.Contains(o.lostPartitions().Partitions, pending) {
		t.Fatalf("partition %d, handed over from b's old run alone, is not reported lost (lost %v)", pending, ch.lost)
	}
	if tr := o.load().parts[pending].transfer; tr != nil && !tr.reconcile {
		t.Fatalf("partition %d still waits for a hand-off from %v", pending, tr.sources)
	}

	// Both owners gone at once, one of them by a restart: lost.
	o = installed(t, "a", before)
	for q := range before.Partitions() {
		o.finishTransfer(before, q, o.load().parts[q].transfer)
	}
	after := tableOfRuns(t, 2, "a@1", "b@2", "c@1", "e@1")
	ch, err = o.install(after, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	both := partitionWhere(t, before, func(ow ring.Owners) bool { return owns(ow, "b") && owns(ow, "d") })
	if !slices.Contains(ch.lost, both) {
		t.Fatalf("partition %d, owned by b's old run and d, both gone: not reported lost (lost %v)", both, ch.lost)
	}
}

// A departed owner that gives its leases back (a graceful leave) lifts
// the fences that wait for it at once; a partition that also waits for
// another departed owner's grant keeps waiting for that one.
func TestAReleaseLiftsTheFencesItHoldsUp(t *testing.T) {
	whole := tableOf(t, 1, "a", "b", "c", "d", "e")
	o := installed(t, "a", whole)
	for q := range whole.Partitions() {
		o.finishTransfer(whole, q, o.load().parts[q].transfer)
	}
	for _, m := range []string{"b", "c"} {
		if _, err := o.grant(m, "", time.Second); err != nil {
			t.Fatal(err)
		}
	}
	rest := tableOf(t, 2, "a", "d", "e")
	if _, err := o.install(rest, 1100*time.Millisecond, nil); err != nil {
		t.Fatal(err)
	}
	onlyB := partitionOwnedBefore(t, whole, rest, func(old, now ring.Owners) bool {
		return now.Primary == "a" && owns(old, "b") && !owns(old, "c")
	})
	bothGone := partitionOwnedBefore(t, whole, rest, func(old, now ring.Owners) bool {
		return now.Primary == "a" && owns(old, "b") && owns(old, "c")
	})
	now := 1200 * time.Millisecond
	for _, p := range []int{onlyB, bothGone} {
		if o.load().parts[p].fence <= now {
			t.Fatalf("partition %d not fenced after b and c left", p)
		}
	}
	holdAllLeases(o, rest, now)
	if v := o.admit(admission{entry: entryWrite, tab: rest, p: onlyB}, now); v.fence <= 0 || v.err != nil {
		t.Fatalf("partition %d: %+v before b gave its leases back, want a fence", onlyB, v)
	}
	o.release("b", "", now, allPartitions(o))
	if v := o.admit(admission{entry: entryWrite, tab: rest, p: onlyB}, now); v.fence > 0 || v.err != nil {
		t.Fatalf("partition %d still fenced for %v after b gave its leases back", onlyB, v.fence)
	}
	if v := o.admit(admission{entry: entryWrite, tab: rest, p: bothGone}, now); v.fence <= 0 || v.err != nil {
		t.Fatalf("partition %d, also held by c whose grant runs on, is no longer fenced", bothGone)
	}
}

// Only a ring holding a majority of the members the node knows declares
// the members it lacks dead (lease replies carry the count): the smaller
// side of a cut does not, for the members it cannot see are the ones that
// went on, and theirs are the copies to keep: a majority node told by a
// cut-off one that it had left would distrust its copies and replace them
// with a settled owner's, which could be the cut-off node's stale ones.
func TestOnlyAMajorityDeclaresMembersDead(t *testing.T) {
	all := tableOf(t, 1, "a", "b", "c", "d", "e")
	alone := tableOf(t, 2, "a")
	o := installed(t, "a", all, alone)
	for _, m := range []string{"b", "c", "d", "e"} {
		if n := o.departures[run{name: m}]; n != 0 {
			t.Fatalf("alone of five, a counted %s's departure %d times; want 0", m, n)
		}
	}
	most := tableOf(t, 2, "a", "b", "c")
	o = installed(t, "a", all, most)
	if o.departures[run{name: "d"}] != 1 || o.departures[run{name: "e"}] != 1 {
		t.Fatalf("three of five counted departures %v; want d and e once", o.departures)
	}
}

// allPartitions lists every partition of o: a leaver that held them all.
func allPartitions(o *ownership) []int {
	out := make([]int, o.partitions)
	for p := range out {
		out[p] = p
	}
	return out
}

// A former owner's hold of a partition ends only the hand-offs of the runs
// it stopped owning the partition in favour of (ownState.vouches, chaos
// finding F17): once they have taken it over they write where it does not,
// so a run that replaced one of them, or a member that owned the partition
// neither then nor now, must not take the partition from its old copies.
func TestAFormerOwnerVouchesOnlyForTheRunsItHandedThePartitionTo(t *testing.T) {
	alone := tableOfRuns(t, 1, "a@1")
	grown := tableOfRuns(t, 2, "a@1", "b@1", "c@1", "d@1", "e@1")
	p := partitionWhere(t, grown, func(o ring.Owners) bool { return !owns(o, "a") })
	kept := partitionWhere(t, grown, func(o ring.Owners) bool { return o.Primary == "a" })
	x, y := grown.Owners(p).Primary, grown.Owners(p).Buddy
	var other string
	for _, m := range grown.Members() {
		if m.Name != "a" && !owns(grown.Owners(p), m.Name) {
			other = m.Name
			break
		}
	}
	o := installed(t, "a", alone) // the cluster's first node holds every partition
	if _, err := o.install(grown, time.Second, func(int) bool { return true }); err != nil {
		t.Fatal(err)
	}
	member := func(tab *ring.Table, name string) ring.Member {
		m, ok := tab.Member(name)
		if !ok {
			t.Fatalf("%s is not in %v", name, tab.Members())
		}
		return m
	}
	st := o.load()
	for _, c := range []struct {
		who  string
		want bool
	}{{x, true}, {y, true}, {other, false}} {
		if got := st.vouches("a", p, member(grown, c.who)); got != c.want {
			t.Errorf("partition %d handed to %s and %s: vouches for %s = %v, want %v", p, x, y, c.who, got, c.want)
		}
	}
	if !st.vouches("a", kept, member(grown, other)) {
		t.Errorf("partition %d, which a still owns: not vouched for %s; an owner's hold ends anyone's hand-off", kept, other)
	}
	if !st.vouches("a", p, ring.Member{}) {
		t.Errorf("a requester that does not name itself (an older peer) is not vouched for")
	}

	// x restarts: its new run remembers nothing, and the partition's
	// latest copies are with y, or gone with both.
	var runs []string
	for _, m := range grown.Members() {
		run := m.Name + "@1"
		if m.Name == x {
			run = x + "@2"
		}
		runs = append(runs, run)
	}
	restarted := tableOfRuns(t, 3, runs...)
	if _, err := o.install(restarted, 2*time.Second, func(int) bool { return true }); err != nil {
		t.Fatal(err)
	}
	st = o.load()
	if st.vouches("a", p, member(restarted, x)) {
		t.Errorf("partition %d: vouches for %s's new run, which never took it from a", p, x)
	}
	if !st.vouches("a", p, member(restarted, y)) {
		t.Errorf("partition %d: no longer vouches for %s, the run it handed the partition to", p, y)
	}
}

// A node taking a partition over drops the copies it has of it
// (ringChange.superseded), unless a leaver pushed them here (its drain may
// arrive before the ring without it, and its copies are the partition) or
// AllowMinority lets both sides of a cut acknowledge writes: those are
// kept, unvouched until the hand-off ends.
func TestATakeOverKeepsPushedAndMinorityCopies(t *testing.T) {
	whole := tableOf(t, 1, "a", "b", "c", "d", "e")
	rest := tableOf(t, 2, "a", "b", "d", "e")
	o := installed(t, "a", whole)
	var pushed, other = -1, -1
	for p := range whole.Partitions() {
		if owns(whole.Owners(p), "a") || !owns(rest.Owners(p), "a") {
			continue
		}
		if pushed < 0 {
			pushed = p // c's, moving to a as c leaves
		} else if other < 0 {
			other = p
		}
	}
	if other < 0 {
		t.Skip("fewer than two partitions move to a as c leaves")
	}
	o.setLeaving([]string{"c"})
	o.notePush("c", pushed, time.Second)
	ch, err := o.install(rest, 2*time.Second, func(int) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(ch.superseded, pushed) || !o.load().parts[pushed].unvouched {
		t.Fatalf("partition %d, pushed by leaver c before the ring without it: dropped %v, unvouched %v; want kept, vouched for by no one until the hand-off ends",
			pushed, slices.Contains(ch.superseded, pushed), o.load().parts[pushed].unvouched)
	}
	if !slices.Contains(ch.superseded, other) || o.load().parts[other].unvouched {
		t.Fatalf("partition %d, taken over with copies c did not push: superseded %v, unvouched %v; want its copies dropped", other, ch.superseded, o.load().parts[other].unvouched)
	}

	// With AllowMinority, copies may be writes acknowledged on this
	// node's side of a cut: kept, and merged.
	cfg := Config{Name: "a", AllowMinority: true, LeaseDuration: testLease}.withDefaults()
	m := newOwnership(cfg)
	for i, tab := range []*ring.Table{whole, rest} {
		ch, err = m.install(tab, time.Duration(i)*time.Second, func(int) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(ch.superseded) > 0 || !m.load().parts[other].unvouched {
		t.Fatalf("with AllowMinority: superseded %v, partition %d unvouched %v; want nothing dropped", ch.superseded, other, m.load().parts[other].unvouched)
	}
}

// A ring below the quorum is the smaller side of a cut: a partition being
// taken over whose sources are all on the other side is neither lost nor
// held (held, it would hand an empty partition on with no loss reported:
// chaos finding F17, the 30-minute run at 61d35d9). When the cut heals,
// the members that appear are its sources.
func TestARingBelowTheQuorumLosesNothing(t *testing.T) {
	whole := tableOf(t, 1, "a", "b", "c", "d", "e")
	o := installed(t, "a", whole)
	p := -1
	for q := range whole.Partitions() {
		if tr := o.load().parts[q].transfer; tr != nil && !tr.reconcile && !slices.Contains(tr.sources, "e") {
			p = q
			break
		}
	}
	if p < 0 {
		t.Skip("no partition a takes over from others than e")
	}
	cut := tableOf(t, 2, "a", "e")
	ch, err := o.install(cut, time.Second, noCopies)
	if err != nil {
		t.Fatal(err)
	}
	st := o.load()
	if len(ch.lost) > 0 || st.holds(p) || st.parts[p].transfer == nil || st.parts[p].transfer.reconcile {
		t.Fatalf("below the quorum: lost %v, partition %d held %v, transfer %+v; want nothing lost, the hand-off still pending", ch.lost, p, st.holds(p), st.parts[p].transfer)
	}
	if _, gaveUp, lost, _ := o.dueTransfers(cut, time.Hour); len(gaveUp) > 0 || len(lost) > 0 || o.load().holds(p) {
		t.Fatalf("below the quorum, an hour on: gave up %v, lost %v, held %v; want nothing given up", gaveUp, lost, o.load().holds(p))
	}
	healed := tableOf(t, 3, "a", "b", "c", "d", "e")
	if _, err := o.install(healed, time.Hour, noCopies); err != nil {
		t.Fatal(err)
	}
	st = o.load()
	if tr := st.parts[p].transfer; tr == nil || tr.reconcile || len(tr.sources) == 0 || st.holds(p) {
		t.Fatalf("after the cut healed: partition %d transfer %+v, held %v; want a hand-off from the members that appeared", p, tr, st.holds(p))
	}
}

// A node that resumed after a pause is unconfirmed until every other
// member of its ring has granted it a lease asked after the pause: a
// grant that says the member saw it leave is not recorded before the
// caller has marked its partitions (recordLease), so it does not count;
// a first grant from a member that ever saw it leave counts as having
// been declared dead; a ring below the quorum confirms nothing.
func TestConfirmingANodesStandingAfterAPause(t *testing.T) {
	tab := tableOf(t, 1, "a", "b", "c")
	o := installed(t, "a", tab)
	o.recordLease("b", leaseReply{Fingerprint: tab.Fingerprint()}, time.Second, time.Second)
	o.recordLease("c", leaseReply{Fingerprint: tab.Fingerprint()}, time.Second, time.Second)
	if o.unconfirmed() || o.confirm(tab) {
		t.Fatal("a node never paused is unconfirmed")
	}

	pause := 10 * time.Second
	o.startUnconfirmed(pause)
	if !o.unconfirmed() {
		t.Fatal("not unconfirmed after a pause")
	}
	o.recordLease("b", leaseReply{Fingerprint: tab.Fingerprint()}, pause-time.Millisecond, pause-time.Millisecond) // asked before the pause
	if o.confirm(tab) {
		t.Fatal("confirmed by a lease asked before the pause")
	}
	if dead := o.recordLease("b", leaseReply{Fingerprint: tab.Fingerprint(), Departed: 1}, pause+time.Second, pause+time.Second); !dead {
		t.Fatal("a grant saying b saw the node leave did not tell it it was declared dead")
	}
	if o.confirm(tab) {
		t.Fatal("confirmed before the declared-dead grant was recorded")
	}
	o.recordLease("b", leaseReply{Fingerprint: tab.Fingerprint(), Departed: 1}, pause+time.Second, pause+time.Second) // marked: recorded now
	o.recordLease("c", leaseReply{Fingerprint: tab.Fingerprint()}, pause+time.Second, pause+time.Second)
	if !o.confirm(tab) || o.unconfirmed() {
		t.Fatal("not confirmed once every member granted a lease after the pause")
	}

	// A first grant, from a member never asked before, that ever saw
	// the node leave: declared dead while unconfirmed, not otherwise.
	fresh := installed(t, "a", tab)
	if fresh.recordLease("b", leaseReply{Departed: 2}, time.Second, time.Second) {
		t.Fatal("a first grant counted as a death while the node was not unconfirmed")
	}
	fresh.startUnconfirmed(pause)
	if !fresh.recordLease("c", leaseReply{Departed: 2}, pause+time.Second, pause+time.Second) {
		t.Fatal("an unconfirmed node took a first grant from a member that saw it leave as no death")
	}

	// Below the quorum: no member to hear from is no confirmation.
	alone := installed(t, "a", tab, tableOf(t, 2, "a"))
	alone.startUnconfirmed(pause)
	if alone.confirm(tableOf(t, 2, "a")) {
		t.Fatal("confirmed by a ring of the node alone, below the quorum")
	}
}

// A pull that completed a transfer completes it even if the transfer was
// marked again while the pull ran, for nothing new (a member that saw
// this node appear told it to reconcile with sources it already had);
// marked for more — a source the pull did not ask, or distrust — it
// stays pending. (Chaos finding F17, session 302 of the 30-minute run at
// 803bf8d: the completion was thrown away, and the hand-off given up as
// a loss.)
func TestAPullCompletesATransferMarkedAgainForNothingNew(t *testing.T) {
	tab := tableOf(t, 1, "a", "b", "c")
	o := installed(t, "c", tab) // c's first ring: a hand-off of every owned partition from a and b
	var owned []int
	for p := range tab.Partitions() {
		if o.load().parts[p].transfer != nil {
			owned = append(owned, p)
		}
	}
	if len(owned) < 3 {
		t.Fatalf("c takes over %d partitions, want at least 3", len(owned))
	}
	same, more, dead := owned[0], owned[1], owned[2]

	// Marked again for a source it already had: the pull completes it.
	pulled := o.load().parts[same].transfer
	o.reconcile([]string{"a"}, false, time.Second)
	if o.load().parts[same].transfer == pulled {
		t.Fatal("reconcile kept the transfer as it was; the test needs it copied")
	}
	o.finishTransfer(tab, same, pulled)
	if part := o.load().parts[same]; part.transfer != nil || !part.held {
		t.Fatalf("partition %d after a pull from every source, marked again for nothing new: transfer %+v, held %v; want done and held", same, part.transfer, part.held)
	}

	// Marked again for a source the pull did not ask: still pending.
	o.mu.Lock()
	o.edit(func(s *ownState) {
		u := *s.parts[more].transfer
		u.sources = []string{"a"}
		s.parts[more].transfer = &u
	})
	o.mu.Unlock()
	pulled = o.load().parts[more].transfer
	o.reconcile([]string{"b"}, false, 2*time.Second)
	o.finishTransfer(tab, more, pulled)
	if o.load().parts[more].transfer == nil {
		t.Fatalf("partition %d: a pull from [a] completed a transfer marked again with b", more)
	}

	// Marked again with distrust (the node learnt it was declared dead):
	// still pending.
	pulled = o.load().parts[dead].transfer
	o.reconcile(nil, true, 3*time.Second)
	o.finishTransfer(tab, dead, pulled)
	if part := o.load().parts[dead]; part.transfer == nil || !part.transfer.distrust {
		t.Fatalf("partition %d: a pull before the node learnt it was declared dead completed its distrusted hand-off: %+v", dead, part.transfer)
	}

	// Declared dead again while a pull of the distrusted hand-off ran:
	// the copy looks the same (every member a source, distrust), but
	// writes may have been acknowledged without the node since the pull
	// began. Still pending (found in review).
	pulled = o.load().parts[dead].transfer
	o.reconcile(nil, true, 4*time.Second)
	o.finishTransfer(tab, dead, pulled)
	if part := o.load().parts[dead]; part.transfer == nil || !part.distrusted {
		t.Fatalf("partition %d: a pull begun before the node was declared dead a second time completed its hand-off: %+v", dead, part)
	}
}

// A partition this node owns and distrusts, given no hand-off by a ring
// change or only a reconciliation, is taken from every other member, as a
// node declared dead takes its partitions (reconcile with distrust): a
// hand-off that gates the node and ends only on a settled owner.
func TestADistrustedPartitionIsTakenOver(t *testing.T) {
	tab := tableOf(t, 1, "a", "b", "c")
	for _, given := range []*transfer{nil, {since: time.Second, reconcile: true, sources: []string{"b"}}} {
		got := distrustedTakeOver(given, tab, "a", 2*time.Second)
		if got.reconcile || !got.gates || !got.distrust {
			t.Errorf("from %+v: %+v; want a gating distrust hand-off", given, got)
		}
		if !slices.Equal(slices.Sorted(slices.Values(got.sources)), []string{"b", "c"}) {
			t.Errorf("from %+v: sources %v; want every other member", given, got.sources)
		}
		if given != nil && given.reconcile == false {
			t.Errorf("the transfer given was changed in place: %+v", given)
		}
	}
}

// A lease tells its asker whether the cluster served before
// (leaseReply.Past): the granter has run for HandoffTimeout, or was told
// by a lease in turn. A young run told it knows the past for good, and
// passes it on; a young run that never was says nothing of a past
// (CHAOS.md F22).
func TestALeaseTellsTheClusterServedBefore(t *testing.T) {
	tab := tableOf(t, 1, "a", "b", "c")
	old := installed(t, "a", tab) // its first ring at 0
	fresh := installed(t, "b", tab)
	other := installed(t, "c", tab)
	grant := func(granter *ownership, to string, now time.Duration) leaseReply {
		t.Helper()
		r, err := granter.grant(to, "", now)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Young, and told nothing: no past, either way.
	if r := grant(old, "b", old.handoff-time.Millisecond); r.Past {
		t.Fatal("a granter younger than HandoffTimeout says the cluster served before")
	}
	fresh.recordLease("a", grant(old, "b", old.handoff-time.Millisecond), 0, 0)
	if fresh.knowsPast() {
		t.Fatal("a lease from a young granter taught its asker a past")
	}
	// The granter has run for HandoffTimeout: its lease says so.
	r := grant(old, "b", old.handoff)
	if !r.Past {
		t.Fatal("a granter that ran for HandoffTimeout says nothing of a past")
	}
	fresh.recordLease("a", r, old.handoff, old.handoff)
	if !fresh.knowsPast() || !fresh.young(0) {
		t.Fatalf("after an old granter's lease: knows the past %v, young %v; want both", fresh.knowsPast(), fresh.young(0))
	}
	// Still young, the run told passes it on.
	if r := grant(fresh, "c", time.Millisecond); !r.Past {
		t.Fatal("a young run that knows the past does not pass it on")
	}
	other.recordLease("b", grant(fresh, "c", time.Millisecond), 0, 0)
	if !other.knowsPast() {
		t.Fatal("the past was not passed on")
	}
}

// A young run asks every member for a lease, idle or not, until it has
// heard from each member's run once or learned the past
// (ownership.learningPast): one grant from each says all there is. An
// idle run that asked none took a cluster restarted run by run for a new
// one (CHAOS.md F22).
func TestAYoungRunAsksEachMemberOnce(t *testing.T) {
	tab := tableOfRuns(t, 1, "a@1", "b@1", "c@1")
	o := installed(t, "a", tab)
	if !o.learningPast(tab, 0) {
		t.Fatal("a run just started, told nothing, is not asking")
	}
	o.recordLease("b", leaseReply{Incarnation: "1"}, 0, 0)
	if !o.learningPast(tab, 0) {
		t.Fatal("stopped asking before c answered")
	}
	o.recordLease("c", leaseReply{Incarnation: "0"}, 0, 0) // an earlier run of c
	if !o.learningPast(tab, 0) {
		t.Fatal("an earlier run's grant counted for c's run in the ring")
	}
	o.recordLease("c", leaseReply{Incarnation: "1"}, 0, 0)
	if o.learningPast(tab, 0) {
		t.Fatal("still asking after every member's run answered")
	}
	if o.knowsPast() {
		t.Fatal("grants that said nothing of a past taught one")
	}
	// A member restarts: its new run has not answered yet.
	next := tableOfRuns(t, 2, "a@1", "b@1", "c@2")
	if !o.learningPast(next, 0) {
		t.Fatal("not asking c's new run")
	}
	// Told the past, or no longer young: nothing more to learn.
	if o.learningPast(next, o.handoff) {
		t.Fatal("asking after HandoffTimeout")
	}
	o.recordLease("b", leaseReply{Incarnation: "1", Past: true}, 0, 0)
	if o.learningPast(next, 0) {
		t.Fatal("asking after a grant told the past")
	}
}
