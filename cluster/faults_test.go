package cluster

import (
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// Cutting a node's gossip both ways makes each side declare the other
// dead; healing lets the periodic re-join merge the cluster again.
func TestGossipCutIsolatesAndHealMerges(t *testing.T) {
	t.Parallel()
	faults := map[string]*FaultyTransport{}
	withFaults := func(name string) func(*Config) {
		return func(c *Config) {
			c.RejoinInterval = 300 * time.Millisecond
			c.WrapTransport = func(inner memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
				faults[name] = NewFaultyTransport(inner)
				return faults[name]
			}
		}
	}
	a := startWith(t, "a", withFaults("a"))
	b := startWith(t, "b", withFaults("b"), a.Addr())
	c := startWith(t, "c", withFaults("c"), a.Addr())
	nodes := []*node{a, b, c}
	for _, n := range nodes {
		waitFor(t, converge, n.Name()+" to see a, b, c", hasRing(n, "a", "b", "c"))
	}

	for _, n := range []*node{a, b} {
		faults["c"].Cut(n.Addr())
		faults[n.Name()].Cut(c.Addr())
	}
	for _, n := range []*node{a, b} {
		waitFor(t, converge, n.Name()+" to drop the cut-off c", hasRing(n, "a", "b"))
	}
	waitFor(t, converge, "c to be alone", hasRing(c, "c"))

	for _, f := range faults {
		f.HealAll()
	}
	for _, n := range nodes {
		waitFor(t, converge, n.Name()+" to see a, b, c again", hasRing(n, "a", "b", "c"))
	}
}
