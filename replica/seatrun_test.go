package replica

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-io/tandem/ring"
)

// seatsAgree reports whether every node of c runs the seat protocol
// actively under one config of one cluster whose seats satisfy want,
// each seat live on the seats' grants; it returns the config, and what
// it found.
func seatsAgree(c *testCluster, want func([]string) bool) (bool, seatConfig, string) {
	var found []string
	var cfg seatConfig
	ok := true
	for i, n := range c.list() {
		st := n.seatStatus()
		found = append(found, fmt.Sprintf("%s: active %v cluster %v v%d %v live %v lost %v", n.Name(), st.Active, st.Config.Cluster, st.Config.Version, st.Config.Seats, st.Live, st.Lost))
		if i == 0 {
			cfg = st.Config
		}
		// An idle node lets its grants lapse, a seat too, unless a node
		// that holds no seat asks it for grants (seatNode.renewing).
		if !st.Active || st.Config.Version != cfg.Version || st.Config.Cluster != cfg.Cluster || !want(st.Config.Seats) {
			ok = false
		}
	}
	slices.Sort(found)
	return ok, cfg, fmt.Sprint(found)
}

// waitForSeatsThat waits until the nodes of c agree on one config whose
// seats satisfy want (what), and returns it.
func waitForSeatsThat(t *testing.T, c *testCluster, what string, want func([]string) bool) seatConfig {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, cfg, found := seatsAgree(c, want)
		if ok {
			return cfg
		}
		if time.Now().After(deadline) {
			t.Fatalf("the nodes did not agree on seats %s: %s", what, found)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitForSeats waits until the nodes of c agree on the seats want.
func waitForSeats(t *testing.T, c *testCluster, want []string) {
	t.Helper()
	waitForSeatsThat(t, c, fmt.Sprint(want), func(s []string) bool { return slices.Equal(s, want) })
}

// threeOf returns a test that seats are three of the running nodes of c.
func threeOf(c *testCluster) func([]string) bool {
	return func(seats []string) bool {
		return len(seats) == 3 && !slices.ContainsFunc(seats, func(s string) bool { return c.node(s) == nil })
	}
}

// The seat protocol over the peer wire, beside the leases (Config.Seats):
// three nodes found one config and grow it to all three (an odd number
// at most the members); two more make five; a seat that crashes is
// vacated once it has been missing for DeadFor, and the seats settle on
// three of the four left; a seat restarted under its name recovers, with
// a higher run number, and the nodes agree again.
func TestNodesAgreeOnSeatsOverThePeerWire(t *testing.T) {
	tune := func(c *Config) { c.Seats = 5 }
	c := newTestCluster(t, 3, tune)
	waitForSeats(t, c, []string{"node-0", "node-1", "node-2"})
	// One founder, the lowest name; the others recovered into its
	// cluster.
	if st := c.node("node-1").seatStatus(); st.Config.Cluster.name != "node-0" {
		t.Fatalf("the seats' cluster is %v; want node-0's", st.Config.Cluster)
	}

	c.start("node-3", tune)
	c.publish()
	// Four members: still three seats (seatTarget).
	waitForSeats(t, c, []string{"node-0", "node-1", "node-2"})
	c.start("node-4", tune)
	c.publish()
	waitForSeats(t, c, []string{"node-0", "node-1", "node-2", "node-3", "node-4"})

	c.kill("node-1")
	seats := waitForSeatsThat(t, c, "three of the four left", threeOf(c)).Seats

	// A seat restarted under its name.
	restarted := seats[len(seats)-1]
	before := c.node(restarted).seatStatus()
	c.restartTuned("r2", tune, restarted)
	c.publish()
	waitForSeatsThat(t, c, "three of the four, after a restart", threeOf(c))
	after := c.node(restarted).seatStatus()
	if after.Number <= before.Number {
		t.Fatalf("%s's run after its restart has number %d, not above %d", restarted, after.Number, before.Number)
	}
}

// Two clusters founded apart, each on its side of a cut at start, meet
// when the cut heals: the earlier (node-0's) stays, the runs of the other
// leave theirs and recover into it, and the four nodes agree on three
// seats of one cluster (LEASES-AT-SCALE.md §6.2).
func TestTwoSeatClustersFoundedApartBecomeOne(t *testing.T) {
	tune := func(c *Config) { c.Seats = 3 }
	c := newTestCluster(t, 0, nil)
	for i := range 4 {
		c.start(fmt.Sprintf("node-%d", i), tune)
	}
	left, right := []string{"node-0", "node-1"}, []string{"node-2", "node-3"}
	c.publishTo(map[string][]string{"node-0": left, "node-1": left, "node-2": right, "node-3": right})
	clusterOf := func(name string) run { return c.node(name).seatStatus().Config.Cluster }
	deadline := time.Now().Add(60 * time.Second)
	for clusterOf("node-1").name != "node-0" || clusterOf("node-3").name != "node-2" {
		if time.Now().After(deadline) {
			t.Fatalf("the two sides did not found a cluster each: node-1 is in %v, node-3 in %v", clusterOf("node-1"), clusterOf("node-3"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	founder := clusterOf("node-0")
	c.publish()
	cfg := waitForSeatsThat(t, c, "three of the four, of one cluster", threeOf(c))
	if cfg.Cluster != founder {
		t.Fatalf("the cluster left is %v; want the earlier, %v", cfg.Cluster, founder)
	}
}

// Over real sockets: the messages cross the peer wire's frames, and three
// nodes agree.
func TestNodesAgreeOnSeatsOverSockets(t *testing.T) {
	c := newSocketCluster(t, 3, func(c *Config) { c.Seats = 3 })
	waitForSeats(t, c, []string{"node-0", "node-1", "node-2"})
}

// A node without Config.Seats runs no seat protocol and refuses its
// messages.
func TestANodeWithoutSeatsRunsNone(t *testing.T) {
	c := newTestCluster(t, 1, nil)
	n := c.node("node-0")
	if st := n.seatStatus(); st.Running {
		t.Fatalf("seat status %+v without Config.Seats", st)
	}
	b, err := encodeSeat(seatStateAsk{From: run{"x", "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.ServePeer(testCtx(t), methodSeat, b); err == nil {
		t.Fatal("a node without seats answered a seat message")
	}
}

// The founding rule counts only this run's recent answers: b, blank when
// it answered a at 1 s, may have founded since under a ring that lacked
// a, and a's later asks failed (a review's schedule).
func TestFoundingCountsOnlyRecentAnswers(t *testing.T) {
	lease := 600 * time.Millisecond
	tab, err := ring.New(ring.DefaultConfig(), 1, []ring.Member{{Name: "a", Peer: "a"}, {Name: "b", Peer: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	r := newSeatRunner(Config{Seats: 3, LeaseDuration: lease})
	r.start(runOf(tab, "a"), false, lease, 0, 0)
	r.seen["b"] = seatSeen{at: time.Second, asker: r.node.self, answerer: run{"b", ""}}
	if r.founds(tab, 100*time.Second) {
		t.Error("a founds at 100 s on b's answer of 1 s")
	}
	if !r.founds(tab, time.Second+r.node.timing.recover) {
		t.Error("a does not found on b's fresh answer that it knows no config")
	}
	r.seen["b"] = seatSeen{at: time.Second, asker: run{"a", "earlier"}, answerer: run{"b", ""}}
	if r.founds(tab, time.Second) {
		t.Error("a founds on an answer to another run of its own")
	}
	// b recovers again under a config it adopted: it gives no state, but
	// the cluster has a config, and a founds none.
	b := newSeatAcceptor(run{"b", "1"}, cfgOf(3, "b", "c"), lease+seatM, lease+seatM, 0)
	b.recovered = false
	st := b.state(seatStateAsk{From: r.node.self}, time.Second)
	if st.Active || st.Known != 3 {
		t.Fatalf("b recovering again answers %+v; want no state, and version 3 known", st)
	}
	r.seen["b"] = seenOf(st, r.node.self, time.Second, time.Second)
	if r.founds(tab, time.Second) {
		t.Error("a founds while b recovers under a config it adopted")
	}
}

// A member is ready for a seat only on its current run's answer: the
// ring shows b restarted, and b's earlier run's answer does not seat the
// new one, which has recovered nothing (a review's schedule).
func TestReadinessIsTheMembersCurrentRuns(t *testing.T) {
	lease := 600 * time.Millisecond
	tab, err := ring.New(ring.DefaultConfig(), 2, []ring.Member{{Name: "a", Peer: "a", Incarnation: "1"}, {Name: "b", Peer: "b", Incarnation: "2"}})
	if err != nil {
		t.Fatal(err)
	}
	r := newSeatRunner(Config{Seats: 3, LeaseDuration: lease})
	startWith(r, runOf(tab, "a"), cfgOf(1, "a"), lease)
	now := 10 * time.Second
	r.seen["b"] = seatSeen{at: now - 500*time.Millisecond, answerer: run{"b", "1"}, active: true, version: 1, hasConfig: true}
	if next, ok := r.propose(tab, r.node.acc.cfg, now); ok && next.holds("b") {
		t.Fatalf("the policy seats b's new run on its earlier run's answer: %+v", next)
	}
	r.seen["b"] = seatSeen{at: now - 500*time.Millisecond, answerer: run{"b", "2.1"}, active: true, version: 1, hasConfig: true}
	if next, ok := r.propose(tab, r.node.acc.cfg, now); !ok || !next.holds("b") {
		t.Fatalf("the policy does not seat b on its current process's answer: %+v %v", next, ok)
	}
}

// A seat whose member is draining is vacated at once, not after
// DeadFor: the policy is told of leavers (ownership.leavers).
func TestADrainingSeatIsVacatedAtOnce(t *testing.T) {
	lease := 600 * time.Millisecond
	tab, err := ring.New(ring.DefaultConfig(), 2, []ring.Member{{Name: "a", Peer: "a", Incarnation: "1"}, {Name: "c", Peer: "c", Incarnation: "1"}, {Name: "d", Peer: "d", Incarnation: "1"}})
	if err != nil {
		t.Fatal(err)
	}
	r := newSeatRunner(Config{Seats: 3, LeaseDuration: lease})
	startWith(r, runOf(tab, "a"), cfgOf(1, "a", "b", "c"), lease)
	now := time.Second
	r.noteMissing(tab, now) // b left the ring just now
	if _, ok := r.propose(tab, r.node.acc.cfg, now); ok {
		t.Fatal("b's seat vacated at once, though b only went missing (it may be a crash, and seats are crash-sticky)")
	}
	r.leaving = map[string]bool{"b": true}
	next, ok := r.propose(tab, r.node.acc.cfg, now)
	if !ok || next.holds("b") || len(next.Seats) != 2 {
		t.Fatalf("b drains, and the policy proposes %+v (%v); want b's seat vacated", next, ok)
	}
}

// A seat that drains hands its seat over before it goes: the founder,
// still the only seat of the cluster's first config, that drains half a
// second after the cluster formed (explorer seed 4) proposes a
// replacement from out of the ring it drains to, as no seat that stays
// can propose; had it gone with its seat, no majority of the config would
// be left to change it, and the seats' state would be lost for good.
func TestALoneSeatThatDrainsProposesItsReplacement(t *testing.T) {
	lease := 600 * time.Millisecond
	rest, err := ring.New(ring.DefaultConfig(), 3, []ring.Member{{Name: "b", Peer: "b", Incarnation: "1"}, {Name: "c", Peer: "c", Incarnation: "1"}})
	if err != nil {
		t.Fatal(err)
	}
	r := newSeatRunner(Config{Seats: 5, LeaseDuration: lease})
	startWith(r, run{"a", "1"}, cfgOf(1, "a"), lease)
	now := 10 * time.Second
	for _, name := range []string{"b", "c"} {
		r.seen[name] = seatSeen{at: now - 100*time.Millisecond, answerer: run{name, "1"}, active: true, version: 1, hasConfig: true}
	}
	r.noteMissing(rest, now)
	if _, ok := r.propose(rest, r.node.acc.cfg, now); ok {
		t.Fatal("a node out of its ring that does not drain proposes a change")
	}
	r.draining = true
	r.noteMissing(rest, now)
	next, ok := r.propose(rest, r.node.acc.cfg, now)
	if !ok || !slices.Equal(next.Seats, []string{"a", "b"}) {
		t.Fatalf("a, the only seat, drains and proposes %+v (%v); want b added first, as a replacement", next, ok)
	}
	// Once two others hold seats, it vacates its own.
	r.node.acc.cfg = cfgOf(3, "a", "b", "c")
	r.noteMissing(rest, now)
	if next, ok := r.propose(rest, r.node.acc.cfg, now); !ok || !slices.Equal(next.Seats, []string{"b", "c"}) {
		t.Fatalf("a drains from seats {a, b, c} and proposes %+v (%v); want its seat vacated", next, ok)
	}
}

// startWith starts r's first run as self with cfg, as if the cluster had
// been made with it.
func startWith(r *seatRunner, self run, cfg seatConfig, lease time.Duration) {
	r.first = self
	r.node = newSeatNode(self, cfg, lease, 0, r.rng, 0)
}

// logLines is a slog handler that keeps every record's message and
// attributes as text, for tests to search.
type logLines struct {
	mu    *sync.Mutex
	lines *[]string
	attrs []slog.Attr
}

func newLogLines() logLines { return logLines{mu: &sync.Mutex{}, lines: &[]string{}} }

func (l logLines) Enabled(context.Context, slog.Level) bool { return true }

func (l logLines) Handle(_ context.Context, r slog.Record) error {
	line := r.Level.String() + " " + r.Message
	for _, a := range l.attrs {
		line += " " + a.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	l.mu.Lock()
	*l.lines = append(*l.lines, line)
	l.mu.Unlock()
	return nil
}

func (l logLines) WithAttrs(attrs []slog.Attr) slog.Handler {
	l.attrs = append(slices.Clone(l.attrs), attrs...)
	return l
}

func (l logLines) WithGroup(string) slog.Handler { return l }

// find returns the first line that holds every one of parts.
func (l logLines) find(parts ...string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range *l.lines {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return line, true
		}
	}
	return "", false
}

// A node that would found the seats but waits on a member that never
// answers (it runs no seats) says so, naming the member, and founds
// nothing.
func TestFoundingSaysWhoItWaitsFor(t *testing.T) {
	logs := newLogLines()
	c := newTestCluster(t, 0, nil)
	c.start("node-0", func(c *Config) { c.Seats = 3; c.Logger = slog.New(logs) })
	c.start("node-1", nil)
	c.publish()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if line, ok := logs.find("seat founding waits", "node-1"); ok {
			if strings.Contains(line, "node-0]") {
				t.Fatalf("the founder names itself among those it waits for: %s", line)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node-0 waited to found the seats without saying on whom")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := c.node("node-0").SeatStatus(); st.Version != 0 || st.Cluster != "" {
		t.Fatalf("node-0 founded seats while node-1 never answered: %+v", st)
	}
}

// With BootstrapExpect 3, two nodes that see only each other found
// nothing, whatever they hear; once a third joins the ring, the lowest
// name founds and the three agree.
func TestFoundingWaitsForBootstrapExpect(t *testing.T) {
	tune := func(c *Config) { c.Seats = 3; c.BootstrapExpect = 3 }
	c := newTestCluster(t, 0, nil)
	c.start("node-0", tune)
	c.start("node-1", tune)
	c.publish()
	c.sleep(10 * time.Second) // fifty rounds of state asks
	for _, n := range c.list() {
		if st := n.seatStatus(); st.Config.Version != 0 {
			t.Fatalf("%s founded or joined seats %+v in a ring of two, expecting three", n.Name(), st.Config)
		}
	}
	c.start("node-2", tune)
	c.publish()
	waitForSeats(t, c, []string{"node-0", "node-1", "node-2"})
}
