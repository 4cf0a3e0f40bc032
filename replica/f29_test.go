package replica

import (
	"fmt"
	"testing"
)

// A new cluster whose members join faster than a hand-off (each ring
// one member larger, the joiners' first ring already the next) reports
// no partition lost: the first node holds every partition from the start
// with no copy in it, and that is no sign of a past (Node.blank; chaos
// finding F29: two of five nodes reported 13 partitions lost, every run).
func TestANewClusterJoinedAllAtOnceReportsNoLoss(t *testing.T) {
	c := newTestCluster(t, 0, nil)
	var names []string
	for i := range 5 {
		names = append(names, c.start(fmt.Sprintf("node-%d", i), nil).Name())
	}
	for k := 1; k <= len(names); k++ {
		views := map[string][]string{}
		for _, n := range names[:k] {
			views[n] = names[:k]
		}
		c.publishTo(views)
	}
	handoff := c.list()[0].cfg.HandoffTimeout
	c.sleep(2 * handoff)
	for _, n := range c.list() {
		if lost := n.Lost().Partitions; len(lost) > 0 {
			t.Errorf("%s reported partitions %v lost in a new cluster", n.Name(), lost)
		}
		if p := n.Pending(); p > 0 {
			t.Errorf("%s still has %d partitions to take over after twice the hand-off timeout", n.Name(), p)
		}
	}
	// And the cluster serves: a write and a read through every node.
	for i, n := range c.list() {
		id := sessionID(900 + i)
		put(t, n, id, "v", i)
		if _, err := n.Get(testCtx(t), id, true); err != nil {
			t.Fatalf("read %s through %s: %v", id, n.Name(), err)
		}
	}
}
