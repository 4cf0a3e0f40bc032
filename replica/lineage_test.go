package replica

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tandem-io/tandem/ring"
)

// A node taking a partition over does not hold it until its hand-off is
// done, and only a node that holds a partition completes another's
// hand-off of it. CHAOS.md F13: a restarted owner took a partition over
// from a member that owned it by its rings but had never received it (its
// own hand-off was waiting on a frozen owner); when the frozen owner was
// declared dead, each of the two completed its hand-off on the other,
// both empty, and no node reported the loss. Both owners that held the
// session had failed, a loss the guarantees allow only when reported: the
// hand-offs must wait for a holder, give up, and report it.
func TestAChainOfTakeOversDoesNotPassAnEmptyPartitionOnAsHeld(t *testing.T) {
	c := newTestCluster(t, 5, nil)
	id := sessionID(77)
	a, b := c.ownersOf(id)
	put(t, a, id, "v", "acked")
	p := a.Table().Partition(id)
	// Every node outlives its first HandoffTimeout: the cluster is no
	// longer new (Node.blank).
	for _, n := range c.list() {
		serving(n.Node)
	}
	c.sleep(2 * a.cfg.HandoffTimeout)

	// b freezes: cut off from everyone, still in the rings for now.
	for _, n := range c.list() {
		if n != b {
			n.faults.Cut(b.member.Peer)
			b.faults.Cut(n.member.Peer)
		}
	}
	// a crashes; the new owner that replaces it waits on frozen b.
	name := a.Name()
	c.kill(name)
	r1 := b.Table()
	x := c.node(r1.Owners(p).Primary)
	if x == b {
		x = c.node(r1.Owners(p).Buddy)
	}
	if x.Handoffs() == 0 || x.own.load().holds(p) {
		t.Fatalf("%s took partition %d over from frozen %s at once", x.Name(), p, b.Name())
	}
	// a restarts, empty, under its name: it takes the partition over
	// from the owners of the ring without it, b (frozen) and x (waiting).
	restarted := c.start(name, nil)
	restarted.faults.Cut(b.member.Peer) // b is still frozen
	serving(restarted.Node)
	c.publish()
	// b is declared dead.
	var rest []string
	for _, n := range c.list() {
		if n != b {
			rest = append(rest, n.Name())
		}
	}
	views := map[string][]string{}
	for _, n := range rest {
		views[n] = rest
	}
	c.publishTo(views)
	owners := restarted.Table().Owners(p)
	if !owns(owners, name) {
		t.Skipf("partition %d moved away from %s in the ring without %s (%v): the chain needs it back", p, name, b.Name(), owners)
	}

	// Neither of the partition's owners now held it: the loss is
	// reported, and the session reads as gone rather than as a copy
	// passed on empty without a word.
	waitFor(t, 20*time.Second, "a node to report partition lost", func() bool {
		for _, n := range c.list() {
			serving(n.Node)
			if n != b && slices.Contains(n.Lost().Partitions, p) {
				return true
			}
		}
		return false
	})
	for _, n := range c.list() {
		if n == b {
			continue
		}
		if s, err := n.Get(testCtx(t), id, true); !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrUnavailable) {
			t.Fatalf("via %s, the session lost with its owners reads %+v, %v", n.Name(), s, err)
		}
	}
}

// The rules of partState.held, without I/O: the cluster's first node
// holds what it owns; a node taking a partition over holds it once its
// hand-off is done, or given up (a reported loss), and no longer once it
// drops its copies or is declared dead.
func TestWhoHoldsAPartition(t *testing.T) {
	alone := tableOf(t, 1, "a")
	pair := tableOf(t, 2, "a", "b")
	a := installed(t, "a", alone)
	for p := range alone.Partitions() {
		if !a.load().holds(p) {
			t.Fatalf("the cluster's first node does not hold partition %d", p)
		}
	}
	if !a.young(a.handoff-time.Millisecond) || a.young(a.handoff) {
		t.Fatalf("young: %v just before HandoffTimeout, %v at it", a.young(a.handoff-time.Millisecond), a.young(a.handoff))
	}
	b := installed(t, "b", pair)
	moved := partitionWhere(t, pair, func(o ring.Owners) bool { return owns(o, "b") })
	if b.load().holds(moved) {
		t.Fatalf("a joiner holds partition %d before its hand-off", moved)
	}
	b.finishTransfer(pair, moved, b.load().parts[moved].transfer)
	if !b.load().holds(moved) {
		t.Fatalf("the joiner does not hold partition %d after its hand-off", moved)
	}
	b.forget(moved)
	if b.load().holds(moved) {
		t.Fatalf("partition %d is held after its copies were dropped", moved)
	}

	// A hand-off given up for time is a reported loss: what the node has
	// is the partition from then on.
	c := installed(t, "b", pair)
	_, _, lost, _ := c.dueTransfers(pair, time.Second+c.handoff+time.Millisecond)
	if len(lost) == 0 || !c.load().holds(lost[0]) {
		t.Fatalf("a hand-off given up (lost %v) is not held", lost)
	}
	// Declared dead: it holds nothing until it has caught up.
	c.reconcile(nil, true, 2*time.Second+c.handoff)
	for p := range pair.Partitions() {
		if c.load().holds(p) {
			t.Fatalf("a node declared dead holds partition %d", p)
		}
	}
}
