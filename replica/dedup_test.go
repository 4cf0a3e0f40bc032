package replica

import (
	"errors"
	"testing"

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
