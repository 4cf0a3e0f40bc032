package replica

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// seated is a test tuning: the seats guard the leases, k of them.
func seated(k int) func(*Config) { return func(c *Config) { c.Seats = k } }

// servesAsPrimary asks n's gate whether it may serve id from its primary
// copy now, asking its seats for grants first if it must (rule 6): the
// read itself would go to the buddy when the primary refuses.
func servesAsPrimary(t *testing.T, n *testNode, id string) error {
	tab := n.Table()
	return n.admit(testCtx(t), admission{entry: entryRead, tab: tab, p: tab.Partition(id), id: id})
}

// primaryOutside returns a session id whose primary is not one of seats,
// and that primary.
func primaryOutside(c *testCluster, seats []string) (string, *testNode) {
	for i := 0; ; i++ {
		id := sessionID(i)
		if p, _ := c.ownersOf(id); !slices.Contains(seats, p.Name()) {
			return id, p
		}
	}
}

// With seats, a serving node asks only its seats for grants: no lease
// request to the other members, and as many grant asks a second as a
// node asks of K seats (6 a lease each), whatever the members number.
func TestSeatedNodesAskOnlyTheirSeats(t *testing.T) {
	c := newTestCluster(t, 7, seated(3))
	cfg := waitForSeatsThat(t, c, "three of seven", threeOf(c))
	ids := sessionPerPrimary(t, c)
	lease := c.list()[0].cfg.LeaseDuration
	sent := c.sentBy
	readAll := func() { readAtPrimaries(t, c, ids) }
	readAll()
	c.sleep(lease)
	leasesBefore, seatsBefore, began := sent(methodLease), sent(methodSeat), c.ticks.Now()
	for end := c.before(5 * time.Second); end(); {
		readAll()
		c.sleep(lease / 12)
	}
	leasesAfter, seatsAfter, elapsed := sent(methodLease), sent(methodSeat), c.ticks.Now().Sub(began).Seconds()
	grantAsks := 6 / lease.Seconds() * float64(len(cfg.Seats)) // a node renews from each seat six times a lease
	for _, n := range c.list() {
		leases := float64(leasesAfter[n.Name()]-leasesBefore[n.Name()]) / elapsed
		seatMsgs := float64(seatsAfter[n.Name()]-seatsBefore[n.Name()]) / elapsed
		t.Logf("%s (seat %v): %.1f lease requests, %.1f seat messages sent a second", n.Name(), cfg.holds(n.Name()), leases, seatMsgs)
		if leases != 0 {
			t.Errorf("%s sent %.1f lease requests a second while serving; with seats it asks none", n.Name(), leases)
		}
		if !cfg.holds(n.Name()) && seatMsgs > grantAsks*1.15 {
			t.Errorf("%s, no seat, sent %.1f seat messages a second; want at most its grant asks, %.0f, within 15 %%", n.Name(), seatMsgs, grantAsks)
		}
	}

	// Idle, every node lets its grants lapse and asks nothing, the seats
	// too: no member asks them for grants (seatNode.renewing). Only the
	// proposers' probe goes on, of every member once in probeIdle
	// leases (seatRunner.probeEvery); a seat that has not heard from the
	// lowest seat lately takes itself for the proposer too.
	c.sleep(3 * lease)
	seatsBefore = sent(methodSeat)
	idle := 2 * probeIdle * lease
	c.sleep(idle)
	seatsAfter = sent(methodSeat)
	probes := (len(c.list()) - 1) * 3 // at most three rounds of a proposer's probe in two of its periods
	for _, n := range c.list() {
		seatMsgs := seatsAfter[n.Name()] - seatsBefore[n.Name()]
		t.Logf("%s (seat %v), idle: %d seat messages sent in %v", n.Name(), cfg.holds(n.Name()), seatMsgs, idle)
		if !cfg.holds(n.Name()) && seatMsgs > 0 || seatMsgs > probes {
			t.Errorf("%s (seat %v) sent %d seat messages in %v idle; want none but a proposer's probe (at most %d)", n.Name(), cfg.holds(n.Name()), seatMsgs, idle, probes)
		}
		if st := n.seatStatus(); st.Live {
			t.Errorf("%s (seat %v) still holds live grants after an idle spell of %v", n.Name(), cfg.holds(n.Name()), idle)
		}
		if r := n.Readiness(); !r.Ready() {
			t.Errorf("idle node %s is not ready: %+v", n.Name(), r)
		}
	}
	// The first read after a quiet spell asks its seats again; a seat
	// that let its grants lapse asks its own and grants once it holds
	// them (seatNode.wake), within the third of a lease a request waits.
	readAll()
}

// A node cut off from a majority of its seats stops serving once its
// grants lapse, though every other member still answers it.
func TestASeatedNodeCutOffFromItsSeatsStopsServing(t *testing.T) {
	c := newTestCluster(t, 5, seated(3))
	cfg := waitForSeatsThat(t, c, "three of five", threeOf(c))
	id, x := primaryOutside(c, cfg.Seats)
	put(t, x, id, "v", 1)
	if err := servesAsPrimary(t, x, id); err != nil {
		t.Fatalf("%s may not serve %s before the cut: %v", x.Name(), id, err)
	}
	for _, s := range cfg.Seats {
		c.network.Cut(x.Name(), s)
		c.network.Cut(s, x.Name())
	}
	lease := x.cfg.LeaseDuration
	c.sleep(lease + lease/2)
	if err := servesAsPrimary(t, x, id); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%s, cut from its seats %v for 1.5 leases, may serve %s: %v; want ErrUnavailable", x.Name(), cfg.Seats, id, err)
	}
	if st := x.seatStatus(); st.Live {
		t.Fatalf("%s, cut from its seats, holds live grants: %+v", x.Name(), st)
	}
	for _, s := range cfg.Seats {
		c.network.Heal(x.Name(), s)
		c.network.Heal(s, x.Name())
	}
	if err := servesAsPrimary(t, x, id); err != nil {
		t.Fatalf("%s may not serve %s after the cut healed: %v", x.Name(), id, err)
	}
}

// An owner cut off from everyone and dropped from the others' ring is
// revoked for good at the seats before a new owner acknowledges a write
// to its partition: when the write is acknowledged, the departed owner
// holds no live grants, and once the cut heals the seats refuse it for
// good, so it serves nothing more, even back in the ring, until it is
// restarted (a new run of the process).
func TestADepartedOwnerIsRevokedBeforeItsPartitionIsWritten(t *testing.T) {
	c := newTestCluster(t, 5, seated(3))
	cfg := waitForSeatsThat(t, c, "three of five", threeOf(c))
	id, d := primaryOutside(c, cfg.Seats)
	put(t, d, id, "v", 1)

	var others []string
	for _, n := range c.list() {
		if n != d {
			others = append(others, n.Name())
		}
	}
	c.network.Partition([]string{d.Name()}, others)
	views := map[string][]string{}
	for _, o := range others {
		views[o] = others
	}
	c.publishTo(views)
	newPrimary := c.node(c.node(others[0]).Table().OwnersOf(id).Primary)
	put(t, newPrimary, id, "v", 2)
	if st := d.seatStatus(); st.Live {
		t.Fatalf("a write to %s was acknowledged by %s while %s, its departed owner, still held live seat grants", id, newPrimary.Name(), d.Name())
	}
	if err := servesAsPrimary(t, d, id); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("the departed owner %s may serve %s after the new owner's write: %v; want ErrUnavailable", d.Name(), id, err)
	}
	if st := newPrimary.seatStatus(); !st.Live {
		t.Fatalf("the new owner %s is not live on its seats", newPrimary.Name())
	}

	c.network.HealAll()
	c.publish()
	deadline := time.Now().Add(30 * time.Second)
	for !d.Readiness().SeatsRevoked {
		if time.Now().After(deadline) {
			t.Fatalf("%s, revoked for good, did not learn it once the cut healed: %+v", d.Name(), d.Readiness())
		}
		c.sleep(d.cfg.LeaseDuration / 6)
	}
	if err := servesAsPrimary(t, d, id); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%s, revoked for good and back in the ring, may serve %s: %v; want ErrUnavailable", d.Name(), id, err)
	}
	// Nor does it give its copies to a reconciliation (a pull under no
	// ring): merged back, they could bring back a session the cluster
	// reported lost and read as empty since (TestExploreHandOffsSeated,
	// seed 1).
	var pulled pullReply
	tab := newPrimary.Table()
	err := newPrimary.call(testCtx(t), tab, d.Name(), methodPull, pullRequest{Partition: tab.Partition(id), MaxBytes: 1 << 20, From: newPrimary.Name()}, &pulled)
	if err == nil && (len(pulled.Sessions) > 0 || !pulled.Unconfirmed) {
		t.Fatalf("%s, revoked for good, answered a reconciliation's pull of %s's partition with %d copies (unconfirmed %v)", d.Name(), id, len(pulled.Sessions), pulled.Unconfirmed)
	}
	// A restart is a new run of the process: it is granted again.
	c.restartTuned("r2", seated(3), d.Name())
	c.publish()
	deadline = time.Now().Add(30 * time.Second)
	for {
		p, _ := c.ownersOf(id)
		s, err := p.Get(testCtx(t), id, true)
		if err == nil && s != nil && asInt(t, s.Attributes.value("v")) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s restarted, %s read at %s: %v, %v; want v 2", d.Name(), id, p.Name(), s, err)
		}
		c.sleep(d.cfg.LeaseDuration / 6)
	}
	if r := c.node(d.Name()).Readiness(); r.SeatsRevoked {
		t.Fatalf("%s's new run is refused too: %+v", d.Name(), r)
	}
}

// A fence begun while the node's run knows no config (recovering, or
// not yet founded) waits for one: begun under no config it would ask no
// seat and never end, and the partition would stay fenced for good.
func TestASeatFenceStartsOnceTheRunHasAConfig(t *testing.T) {
	r := newSeatRunner(Config{Seats: 3, LeaseDuration: seatL})
	self, d := run{"a", "1"}, run{"d", "1"}
	r.start(self, false, seatL, seatM, 0)
	r.fencing[d] = true
	r.startFences(seatM)
	if len(r.node.fences) != 0 {
		t.Fatalf("a recovering run began %d fences under no config", len(r.node.fences))
	}
	r.start(self, true, seatL, seatM, 0) // founded: a config of its own
	r.startFences(seatM)
	if len(r.node.fences) != 1 || r.node.fences[0].rev.holder != d || len(r.node.fences[0].rev.cfg.Seats) == 0 {
		t.Fatalf("the founded run's fences: %+v; want d's, under its config", r.node.fences)
	}
	r.startFences(seatM)
	if len(r.node.fences) != 1 {
		t.Fatalf("a fence began twice: %d", len(r.node.fences))
	}
}
