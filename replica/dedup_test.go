package replica

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// A write retried after its first attempt was applied — its answer lost
// to a timeout or a crash — is recognised and not applied again, on the
// same primary or on the buddy promoted in its place.
func TestRetriedWritesApplyOnce(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	id := sessionID(1)
	primary, buddy := c.ownersOf(id)
	put(t, primary, id, "n", 0)

	patch := &Op{Kind: OpPatch, ID: id, RequestID: "req-1", Set: map[string]msgpack.RawMessage{"n": value(t, 1)}}
	first, err := primary.Do(testCtx(t), patch)
	if err != nil || first.Version != 2 {
		t.Fatalf("first attempt: %+v %v", first, err)
	}
	again, err := c.list()[0].Do(testCtx(t), patch)
	if err != nil || again.Version != 2 {
		t.Fatalf("retry: %+v %v, want v2 again", again, err)
	}
	// A conditional put that took effect does not answer "conflict" when
	// retried.
	cas := &Op{Kind: OpPut, ID: id, RequestID: "req-2", IfVersion: 2}
	if s, err := primary.Do(testCtx(t), cas); err != nil || s.Version != 3 {
		t.Fatalf("conditional put: %+v %v", s, err)
	}
	if s, err := primary.Do(testCtx(t), cas); err != nil || s.Version != 3 {
		t.Fatalf("retried conditional put: %+v %v, want v3 again", s, err)
	}

	// Superseded: the retry cannot be answered with its own result.
	put(t, primary, id, "n", 9)
	if _, err := primary.Do(testCtx(t), cas); !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("retry after a later write: %v, want ErrIndeterminate", err)
	}

	// Failover: the promoted buddy knows the requests the session took.
	last := &Op{Kind: OpPatch, ID: id, RequestID: "req-3", Set: map[string]msgpack.RawMessage{"n": value(t, 3)}}
	s, err := primary.Do(testCtx(t), last)
	if err != nil {
		t.Fatal(err)
	}
	c.kill(primary.Name())
	if again, err := buddy.Do(testCtx(t), last); err != nil || again.Version != s.Version {
		t.Fatalf("retry on the promoted buddy: %+v %v, want v%d", again, err, s.Version)
	}
	if got := primary.stats.Duplicates.Load() + buddy.stats.Duplicates.Load(); got < 3 {
		t.Fatalf("%d duplicates recognised, want at least 3", got)
	}
}

// A retry is answered only once the buddy holds the copy that took it,
// as a first attempt is. The copy that took it may have reached the
// primary alone: a first attempt that only the previous buddy stored
// (its primary's ring changed before it could store it), brought to the
// new primary by its hand-off. Answered from the primary's copy alone, the
// write was acknowledged with one copy, and lost when that copy was (CHAOS.md
// F26: replaced after the primary learned it had been declared dead).
func TestARetryIsAnsweredOnlyOnceTheBuddyHoldsItsCopy(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	id := sessionID(5)
	primary, buddy := c.ownersOf(id)
	first := put(t, primary, id, "n", 0)
	p := primary.Table().Partition(id)

	retried := &Op{Kind: OpPatch, ID: id, RequestID: "req-alone", Set: map[string]msgpack.RawMessage{"n": value(t, 1)}}
	now := primary.wall()
	alone, err := apply(retried, first, now, primary.clock.now(now), primary.Name(), primary.lim)
	if err != nil {
		t.Fatal(err)
	}
	if err := primary.merge(p, alone, nil); err != nil {
		t.Fatal(err)
	}
	if got := buddy.store.get(p, id); got.Version != first.Version {
		t.Fatalf("before the retry the buddy holds v%d, want v%d", got.Version, first.Version)
	}

	s, err := primary.Do(testCtx(t), retried)
	if err != nil || s.Version != alone.Version {
		t.Fatalf("retry: %+v %v, want v%d", s, err, alone.Version)
	}
	if got := buddy.store.get(p, id); got.Version != alone.Version {
		t.Fatalf("the retry was answered v%d while the buddy holds v%d", s.Version, got.Version)
	}
}

// A write the gate admitted just before the node learned it was declared
// dead is not stored, nor acknowledged, once the node distrusts the
// partition: the node is about to replace its copies with an owner's,
// which may lack it. The buddy stored it, so the session is in doubt, and
// settled from the buddy's copy once the node has caught up.
func TestAWriteIsNotStoredOnceItsPartitionIsDistrusted(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	id := sessionID(6)
	primary, _ := c.ownersOf(id)
	first := put(t, primary, id, "n", 0)
	waitFor(t, 10*time.Second, "every node to hold its partitions", func() bool {
		return !slices.ContainsFunc(c.list(), func(n *testNode) bool { return n.Pending() > 0 })
	})
	tab := primary.Table()
	p := tab.Partition(id)

	// Admitted (this call is past the gate), then the mark.
	primary.own.reconcile(nil, true, primary.mono())
	if !primary.own.load().distrusts(p) {
		t.Fatal("the primary does not distrust the partition after it learned it was declared dead")
	}
	op := &Op{Kind: OpPatch, ID: id, RequestID: "req-late", Set: map[string]msgpack.RawMessage{"n": value(t, 1)}}
	s, err := primary.write(testCtx(t), tab, p, op)
	if err == nil {
		t.Fatalf("a write stored and answered (v%d) after the node distrusts its partition", s.Version)
	}
	if !inDoubt(err) {
		t.Fatalf("write: %v, want the session in doubt (stored by the buddy only)", err)
	}
	if got := primary.store.get(p, id); got.Version != first.Version {
		t.Fatalf("the primary stored v%d, want its copy left at v%d", got.Version, first.Version)
	}
}

// The mirror case, on the buddy: a node declared dead that stored a
// replica just before it learned replaces its copies with its primary's,
// and the primary stores its own copy only after the buddy's answer. The
// primary reads the first batch of a distrusting pull only once the writes
// under way are stored or have failed, so the batch holds that write.
func TestADistrustingPullWaitsForTheWritesUnderWay(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	id := sessionID(7)
	primary, _ := c.ownersOf(id)
	first := put(t, primary, id, "n", 0)
	tab := primary.Table()
	p := tab.Partition(id)
	body, err := msgpack.Marshal(pullRequest{Partition: p, MaxBytes: 1 << 20, From: "x", Distrusting: true})
	if err != nil {
		t.Fatal(err)
	}

	// A write under way: its lock held, its replica at the buddy, its
	// own copy not stored yet.
	unlock := primary.store.lock(id)
	replies := make(chan pullReply, 1)
	go func() {
		reply, err := primary.servePull(testCtx(t), tab, body)
		if err != nil {
			t.Error(err)
		}
		r, _ := reply.(pullReply)
		replies <- r
	}()
	// Given the time to read a batch, it must not have: the write is
	// still under way. (Waiting proves nothing when it passes; it fails
	// whenever the pull does not wait.)
	select {
	case r := <-replies:
		t.Fatalf("the distrusting pull answered (%d copies) while a write was under way", len(r.Sessions))
	case <-time.After(100 * time.Millisecond):
	}
	next := *first
	next.Version++
	if _, _, err := primary.store.putUnder(p, &next, false, nil); err != nil {
		t.Fatal(err)
	}
	unlock()

	r := <-replies
	i := slices.IndexFunc(r.Sessions, func(s *Session) bool { return s.ID == id })
	if i < 0 || r.Sessions[i].Version != next.Version {
		t.Fatalf("the distrusting pull's batch holds %+v, want v%d: read before the write under way was stored", r.Sessions, next.Version)
	}
}

// A session remembers a bounded number of requests.
func TestRecentRequestsAreBounded(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	n := c.list()[0]
	id := sessionID(2)
	for range 3 * recentRequests {
		if _, err := n.Do(testCtx(t), &Op{Kind: OpPut, ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := n.Get(testCtx(t), id, true)
	if len(s.Recent) != recentRequests || s.Recent[len(s.Recent)-1].Version != s.Version {
		t.Fatalf("session remembers %d requests, last %+v; want %d ending at v%d", len(s.Recent), s.Recent[len(s.Recent)-1], recentRequests, s.Version)
	}
}

// A retry the session no longer remembers — more than recentRequests
// writes came since its first attempt — is refused as indeterminate when
// it says when its first attempt was sent, rather than applied a second
// time (chaos finding F18: a put applied at v8 and again at v58). A retry
// first sent after the session last forgot a request cannot have been
// forgotten, and applies; one that does not say is taken for a new
// request, as before.
func TestARetryOlderThanTheSessionsMemoryIsIndeterminate(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	n := c.list()[0]
	id := sessionID(3)
	sent := n.wall()
	first := &Op{Kind: OpPatch, ID: id, RequestID: "first", Set: map[string]msgpack.RawMessage{"n": value(t, 1)}}
	put(t, n, id, "n", 0)
	if _, err := n.Do(testCtx(t), first); err != nil {
		t.Fatal(err)
	}
	for range recentRequests + 1 {
		put(t, n, id, "n", 2)
	}
	before, _ := n.Get(testCtx(t), id, true)
	if before.Forgot == 0 {
		t.Fatal("the session forgot requests and does not say when")
	}
	retry := *first
	retry.FirstSent = sent.UnixNano()
	if s, err := n.Do(testCtx(t), &retry); !errors.Is(err, ErrIndeterminate) {
		t.Fatalf("retry first sent before the session forgot it: %+v, %v; want ErrIndeterminate", s, err)
	}
	if after, _ := n.Get(testCtx(t), id, true); after.Version != before.Version {
		t.Fatalf("the refused retry changed the session: v%d, was v%d", after.Version, before.Version)
	}
	fresh := &Op{Kind: OpPatch, ID: id, RequestID: "fresh", Set: map[string]msgpack.RawMessage{"n": value(t, 3)},
		FirstSent: n.wall().Add(2 * TransitSkew).UnixNano()}
	if s, err := n.Do(testCtx(t), fresh); err != nil || s.Version != before.Version+1 {
		t.Fatalf("retry first sent after the session last forgot a request: %+v, %v; want v%d", s, err, before.Version+1)
	}
	unsaid := *first
	if s, err := n.Do(testCtx(t), &unsaid); err != nil || s.Version != before.Version+2 {
		t.Fatalf("retry that does not say when it was first sent: %+v, %v; want it applied as new, v%d", s, err, before.Version+2)
	}
}

// Forgot is when the request whose record a write drops was applied, and
// writes that drop none keep it.
func TestASessionSaysWhenItForgotARequest(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var s *Session
	for i := range recentRequests + 1 {
		next, err := apply(&Op{Kind: OpPut, ID: sessionID(4), RequestID: fmt.Sprintf("r%d", i)}, s, now, uint64(i+1)<<16, "a", limits{})
		if err != nil {
			t.Fatal(err)
		}
		// The ninth write drops the first request's record: Forgot is when
		// that request was applied.
		if wantForgot := i == recentRequests; (next.Forgot != 0) != wantForgot || wantForgot && next.Forgot != 1<<16 {
			t.Fatalf("write %d: Forgot %d with %d remembered", i, next.Forgot, len(next.Recent))
		}
		s = next
	}
	// The forgotten request was applied 1 ms after the epoch: a request
	// sent before then, or within TransitSkew after, may be it; one sent
	// later may not.
	forgot := time.UnixMilli(1)
	for sent, want := range map[time.Time]bool{forgot.Add(-time.Second): true, forgot.Add(TransitSkew): true, forgot.Add(TransitSkew + time.Millisecond): false} {
		if got := s.mayHaveForgotten(sent.UnixNano()); got != want {
			t.Errorf("a request first sent %v after the forgetting write: may have been forgotten %v, want %v", sent.Sub(forgot), got, want)
		}
	}
	if s.mayHaveForgotten(0) {
		t.Error("a request that does not say when it was first sent is taken for a retry the session forgot")
	}
}

// A first-sent time says when a retried request was first sent: one
// without a request id is no retry, and is refused, as a negative one is.
func TestAFirstSentTimeNeedsARequestID(t *testing.T) {
	op := &Op{Kind: OpPut, ID: sessionID(5), FirstSent: 1}
	if err := op.Validate(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("first-sent time without a request id: %v, want ErrInvalid", err)
	}
	op.RequestID = "r"
	if err := op.Validate(); err != nil {
		t.Fatalf("first-sent time with a request id: %v", err)
	}
	op.FirstSent = -1
	if err := op.Validate(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("negative first-sent time: %v, want ErrInvalid", err)
	}
}
