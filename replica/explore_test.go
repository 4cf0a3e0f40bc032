package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/ring"
)

// The hand-off explorer: random schedules of membership changes and
// faults — a cluster forming from one node, joins, crashes, restarts
// under the same name, graceful leaves, nodes cut off from everyone, rings
// installed at different times on different nodes — run against a cluster
// on the in-memory network, in virtual time, under a client that writes
// and reads sessions one request at a time. A checker holds every answer
// against the guarantees: a read never answers older than what was
// acknowledged or read before it, a version never names two contents, and
// a session goes back to nothing only in a partition some node reported
// lost (the one loss the guarantees allow); after the faults heal and the
// hand-offs settle, every session reads as its last write left it, on its
// primary and on its buddy.
//
// It checks the hand-off and fencing rules in seconds where the chaos
// harness needs an hour of real processes: a change to those rules is run
// here across many schedules first (docs/CHAOS.md, "The explorer").
// go test runs the schedules of guardSeeds; TANDEM_EXPLORE=N runs N, from
// TANDEM_EXPLORE_SEED on (1 by default), and TANDEM_EXPLORE_LOG=FILE keeps
// every node's log of each in FILE.seed-S.
func TestExploreHandOffs(t *testing.T) {
	short := guardSeeds[1:2] // the race detector's run: one schedule
	runSchedules(t, exploreSeeds(t, "TANDEM_EXPLORE", guardSeeds, short), false, 0)
}

// TestExploreHandOffsSeated runs the explorer's schedules with five
// seats guarding the leases (Config.Seats): a node the seats revoked for
// good is started again as a new run, as tandem serve's supervisor does
// when it exits with status 3. go test runs seatedGuardSeeds;
// TANDEM_EXPLORE_SEATED=N runs N from TANDEM_EXPLORE_SEED on.
func TestExploreHandOffsSeated(t *testing.T) {
	runSchedules(t, exploreSeeds(t, "TANDEM_EXPLORE_SEATED", seatedGuardSeeds, seatedGuardSeeds[:1]), false, 5)
}

// TestExploreRollingRestarts runs the explorer's schedules with one more
// step: now and then every connected node crashes and starts again as a
// new run, one after another, all within HandoffTimeout, so that for a
// while every member of the cluster is young (docs/CHAOS.md, F22: the
// blank rule took such a cluster for a new one and served partitions
// its old runs held as empty, with no loss reported). The steps drawn
// otherwise are TestExploreHandOffs's, so seed N there and here differ
// only where a rolling restart comes. go test runs rollingGuardSeeds;
// TANDEM_EXPLORE_ROLLING=N runs N from TANDEM_EXPLORE_SEED on.
func TestExploreRollingRestarts(t *testing.T) {
	runSchedules(t, exploreSeeds(t, "TANDEM_EXPLORE_ROLLING", rollingGuardSeeds, rollingGuardSeeds[:1]), true, 0)
}

// exploreSeeds returns the schedules to run: guard, or short with
// -short, unless the environment variable count asks for N schedules
// from TANDEM_EXPLORE_SEED on (1 by default).
func exploreSeeds(t *testing.T, count string, guard, short []uint64) []uint64 {
	v := os.Getenv(count)
	if v == "" {
		if testing.Short() {
			return short
		}
		return guard
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a count of schedules", count, v)
	}
	first := uint64(1)
	if v := os.Getenv("TANDEM_EXPLORE_SEED"); v != "" {
		if first, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("TANDEM_EXPLORE_SEED=%q: want a number", v)
		}
	}
	var seeds []uint64
	for i := range uint64(n) {
		seeds = append(seeds, first+i)
	}
	return seeds
}

// runSchedules runs each schedule of seeds as a subtest, with seats
// seats if not 0.
func runSchedules(t *testing.T, seeds []uint64, rolling bool, seats int) {
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			t.Logf("%s", exploreSchedule(t, seed, 120, rolling, seats))
		})
	}
}

// guardSeeds are the schedules go test runs on every change: ones the
// engine passes. Schedule 4 failed every run before F20's fix, and 83
// with its first candidates (docs/CHAOS.md, F20); 25 and 30, which failed
// with 4, pass too, and are left out for time. The schedules
// that still fail now and then are open (F20's "What is left": seeds 19,
// 54, 101 and 128 of the first 140, each in about one run of three); a
// schedule joins this list once it passes every run.
var guardSeeds = []uint64{1, 2, 4, 5, 6, 83}

// rollingGuardSeeds are the schedules of TestExploreRollingRestarts that
// go test runs: of the first twelve, 2, 6, 7 and 11 failed before F22's
// fix (a partition taken as new, its sessions gone with no loss
// reported) and pass with it. Schedules 1 and 3 fail with and without
// it: F25, open (docs/CHAOS.md).
var rollingGuardSeeds = []uint64{2, 6}

// seatedGuardSeeds are the schedules of TestExploreHandOffsSeated that
// go test runs. Of the hand-off explorer's guard seeds, 1 passed (two
// minutes, left out for time) and 6 passed in two runs of five; in 4
// and 83 the seats stall after the schedule (a sealed instance with no
// seat live, hand-offs never end), and in 2 a restarted node did not
// learn its standing within the wait: open
// (docs/design/LEASES-AT-SCALE.md §6.4).
var seatedGuardSeeds = []uint64{5}

// exploreResult is what one schedule did, for the log.
type exploreResult struct {
	steps, faults, writes, acked, reads int
	losses                              int // loss reports the nodes made
	revoked                             int // nodes the seats revoked for good, started again
	sessionsLost                        int // sessions that went back to nothing in a reported loss
}

func (r exploreResult) String() string {
	return fmt.Sprintf("%d steps, %d faults, %d writes (%d acknowledged), %d reads, %d loss reports, %d sessions lost with a report, %d nodes revoked and restarted",
		r.steps, r.faults, r.writes, r.acked, r.reads, r.losses, r.sessionsLost, r.revoked)
}

// lossEvent is one loss report a node logged: the partitions it named, and
// where it fell among the client's requests (seq).
type lossEvent struct {
	node       string
	partitions []int
	seq        int
}

// lossLog collects the loss reports of every node of a schedule.
type lossLog struct {
	mu     sync.Mutex
	seq    int // requests completed, so far as the reports are placed among them
	events []lossEvent
}

// completed counts one more completed request, and returns the count.
func (l *lossLog) completed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	return l.seq
}

// since returns the reports logged from index i on.
func (l *lossLog) since(i int) []lossEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events[i:])
}

// lossHandler is a slog.Handler that keeps a node's loss reports: the
// error lines naming the partitions lost with both owners, at a ring
// change or when a hand-off is given up (docs/ARCHITECTURE.md).
type lossHandler struct {
	log  *lossLog
	node string
	tee  slog.Handler // every record, when TANDEM_EXPLORE_LOG names a file; or nil
}

func (h lossHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.tee != nil || l >= slog.LevelError
}
func (h lossHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h lossHandler) WithGroup(string) slog.Handler      { return h }

func (h lossHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.tee != nil {
		r.AddAttrs(slog.String("node", h.node))
		_ = h.tee.Handle(ctx, r)
	}
	var parts []int
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "partitions" {
			if ps, ok := a.Value.Any().([]int); ok {
				parts = append(parts, ps...)
			}
		}
		return true
	})
	if len(parts) == 0 || !strings.Contains(r.Message, "lost") && !strings.Contains(r.Message, "gone") {
		return nil
	}
	h.log.mu.Lock()
	defer h.log.mu.Unlock()
	h.log.events = append(h.log.events, lossEvent{node: h.node, partitions: parts, seq: h.log.seq})
	return nil
}

// explorer runs one schedule.
type explorer struct {
	t      *testing.T
	c      *testCluster
	rng    *rand.Rand
	losses *lossLog
	seq    int // requests completed (a copy of losses.seq, the explorer's own)
	runs   int // incarnations handed out
	cut    map[string]bool
	left   []string // names that crashed or left, free to join again
	ids    []string
	model  map[string]*sessionModel
	trace  []string
	tee    slog.Handler // the nodes' logs, to TANDEM_EXPLORE_LOG
	seats  int          // Config.Seats: the seats guard the leases if not 0
	res    exploreResult
	failed bool
}

// tune is every explorer node's configuration: the test cluster's, with
// its loss reports kept.
func (e *explorer) tune(name string) func(*Config) {
	return func(cfg *Config) {
		cfg.Logger = slog.New(lossHandler{log: e.losses, node: name, tee: e.tee})
		cfg.Seats = e.seats
	}
}

// note records a step of the schedule, printed if the schedule fails.
func (e *explorer) note(format string, args ...any) {
	e.trace = append(e.trace, fmt.Sprintf("%4d %s: ", e.seq, e.c.ticks.Now().Format("15:04:05.000"))+fmt.Sprintf(format, args...))
}

// anomaly fails the schedule with what the checker found.
func (e *explorer) anomaly(format string, args ...any) {
	e.t.Helper()
	if !e.failed {
		e.failed = true
		e.t.Cleanup(func() { e.t.Logf("schedule:\n%s", strings.Join(e.trace, "\n")) })
	}
	e.t.Errorf("anomaly at request %d: %s", e.seq, fmt.Sprintf(format, args...))
}

// exploreSchedule runs the schedule of seed for steps steps and checks it;
// rolling adds rolling restarts of the whole cluster (restartAll).
func exploreSchedule(t *testing.T, seed uint64, steps int, rolling bool, seats int) exploreResult {
	e := &explorer{t: t, rng: rand.New(rand.NewPCG(seed, 0x5eed)), cut: map[string]bool{}, model: map[string]*sessionModel{}, seats: seats}
	e.losses = &lossLog{}
	if path := os.Getenv("TANDEM_EXPLORE_LOG"); path != "" {
		f, err := os.Create(fmt.Sprintf("%s.seed-%d", path, seed))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		e.tee = slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug})
	}
	// The cluster forms: one node, then four more that the members
	// learn of in steps, one node's ring at a time.
	e.c = newTestCluster(t, 0, nil)
	e.c.start("node-0", e.tune("node-0"))
	e.c.publishTo(map[string][]string{"node-0": {"node-0"}})
	for i := 1; i < 5; i++ {
		name := fmt.Sprintf("node-%d", i)
		e.c.start(name, e.tune(name))
	}
	e.note("started node-0 alone, then node-1..node-4")
	e.converge(true)
	for i := range 24 {
		id := fmt.Sprintf("explore-%03d-%012d", seed%1000, i)
		e.ids = append(e.ids, id)
		e.model[id] = &sessionModel{known: &observed{}, versions: map[uint64]string{}, pending: map[string]bool{}}
	}
	for e.res.steps = 0; e.res.steps < steps && !e.failed; e.res.steps++ {
		e.absorbLosses()
		e.restartRevoked()
		switch x := e.rng.IntN(100); {
		case x < 62:
			e.request()
		case x < 70:
			e.c.sleep(time.Duration(e.rng.IntN(1500)) * time.Millisecond)
		case x < 78:
			e.isolateOrHeal()
		case x < 84:
			e.crashOrJoin()
		case x < 90:
			e.restart()
		case x < 94:
			e.leave()
		case rolling && x >= 98:
			e.restartAll()
		default:
			e.converge(true)
		}
	}
	e.finish()
	return e.res
}

// running returns the names of the nodes that run, sorted.
func (e *explorer) running() []string {
	var out []string
	for _, n := range e.c.list() {
		out = append(out, n.Name())
	}
	slices.Sort(out)
	return out
}

// connected returns the running nodes no cut isolates.
func (e *explorer) connected() []string {
	return slices.DeleteFunc(e.running(), func(n string) bool { return e.cut[n] })
}

// converge gives every connected node the ring of the connected nodes,
// as membership does once it agrees: one node at a time, with virtual
// time passing between them when staggered, so that for a while the
// nodes serve by different rings. Nodes cut off keep the ring they have.
func (e *explorer) converge(staggered bool) {
	members := e.connected()
	order := slices.Clone(members)
	e.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	if staggered && len(members) > 2 && e.rng.IntN(3) == 0 {
		// An intermediate ring first: some of the members, on some of
		// the nodes, as gossip spreads joins one at a time.
		part := slices.Clone(members)
		e.rng.Shuffle(len(part), func(i, j int) { part[i], part[j] = part[j], part[i] })
		part = part[:2+e.rng.IntN(len(part)-1)]
		views := map[string][]string{}
		for _, n := range part {
			views[n] = part
		}
		e.note("first an intermediate ring of %v on those nodes", part)
		e.c.publishTo(views)
		e.c.sleep(time.Duration(e.rng.IntN(400)) * time.Millisecond)
	}
	e.note("rings of %v, installed in the order %v", members, order)
	e.c.mu.Lock()
	e.c.epoch++ // one ring, though installed node by node
	e.c.mu.Unlock()
	for _, name := range order {
		e.installOn(name, members)
		if staggered {
			e.c.sleep(time.Duration(e.rng.IntN(300)) * time.Millisecond)
		}
	}
}

// installOn gives node name the ring of members, at the cluster's epoch.
func (e *explorer) installOn(name string, members []string) {
	e.c.mu.Lock()
	var ms []ring.Member
	for _, m := range members {
		ms = append(ms, e.c.nodes[m].member)
	}
	tab, err := ring.New(ring.DefaultConfig(), e.c.epoch, ms)
	n := e.c.nodes[name]
	e.c.mu.Unlock()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := n.SetTable(tab); err != nil {
		e.t.Fatal(err)
	}
}

// faulty returns how many of the five names do not serve now: crashed,
// left or cut off.
func (e *explorer) faulty() int { return 5 - len(e.connected()) }

// victim picks a connected node for the next fault, unless two of the
// five names are out already: a majority always serves.
func (e *explorer) victim() (string, bool) {
	if e.faulty() >= 2 {
		return "", false
	}
	conn := e.connected()
	if e.seats > 0 {
		conn = slices.DeleteFunc(conn, func(name string) bool { return !e.seatsSpare(name) })
		if len(conn) == 0 {
			return "", false
		}
	}
	return conn[e.rng.IntN(len(conn))], true
}

// seatsSpare reports whether the seats can spare node name: whether,
// without it, a majority of the seats of the newest config a node knows
// are still connected and recovered. Without disk a seat that restarts
// recovers its state from a majority of the others (recoveryNeed), and a
// config half of whose seats lost theirs is lost for good (seatAcceptor.lost;
// LEASES-AT-SCALE.md §6.1), so the schedule faults no seat the seats
// cannot spare, as it faults no third name of the five: a seat that
// restarted counts as down until it has recovered (seed 83 restarted
// one seat of four, and crashed another before the first recovered).
func (e *explorer) seatsSpare(name string) bool {
	var cfg seatConfig
	for _, n := range e.c.list() {
		if st := n.seatStatus(); st.Config.Version > cfg.Version {
			cfg = st.Config
		}
	}
	if !cfg.holds(name) {
		return true
	}
	up := 0
	for _, s := range cfg.Seats {
		if n := e.c.node(s); s != name && n != nil && !e.cut[s] && n.seatStatus().Active {
			up++
		}
	}
	return up >= cfg.majority()
}

// isolateOrHeal cuts a node off from every other, or heals one.
func (e *explorer) isolateOrHeal() {
	if len(e.cut) > 0 && e.rng.IntN(2) == 0 {
		for name := range e.cut {
			e.heal(name)
			break
		}
		return
	}
	name, ok := e.victim()
	if !ok {
		return
	}
	x := e.c.node(name)
	for _, n := range e.c.list() {
		if n != x {
			x.faults.Cut(n.member.Peer)
			n.faults.Cut(x.member.Peer)
		}
	}
	e.cut[x.Name()] = true
	e.res.faults++
	e.note("cut %s off from everyone", x.Name())
	if e.rng.IntN(2) == 0 {
		e.c.sleep(time.Duration(e.rng.IntN(2000)) * time.Millisecond) // the failure detector's delay
	}
	e.converge(e.rng.IntN(2) == 0)
	if e.rng.IntN(2) == 0 {
		// Its own failure detector declares the others dead too.
		e.c.mu.Lock()
		e.c.epoch++
		e.c.mu.Unlock()
		e.installOn(x.Name(), []string{x.Name()})
		e.note("%s's ring is itself alone", x.Name())
	}
}

// heal ends node name's cut.
func (e *explorer) heal(name string) {
	x := e.c.node(name)
	x.faults.HealAll()
	for _, n := range e.c.list() {
		n.faults.Heal(x.member.Peer)
	}
	delete(e.cut, name)
	e.note("healed %s", name)
	e.converge(e.rng.IntN(2) == 0)
}

// crashOrJoin crashes a node, or starts one that crashed or left again
// as a new run.
func (e *explorer) crashOrJoin() {
	if len(e.left) > 0 && (e.faulty() >= 2 || e.rng.IntN(2) == 0) {
		name := e.left[0]
		e.left = e.left[1:]
		e.startRun(name)
		e.note("%s joins as a new run", name)
		e.converge(true)
		return
	}
	name, ok := e.victim()
	if !ok {
		return
	}
	e.stopNode(name)
	e.left = append(e.left, name)
	e.res.faults++
	e.note("crashed %s", name)
	if e.rng.IntN(2) == 0 {
		e.c.sleep(time.Duration(e.rng.IntN(2000)) * time.Millisecond)
	}
	e.converge(true)
}

// restart crashes a node and starts it again under its name at once, a
// new run that remembers nothing.
func (e *explorer) restart() {
	name, ok := e.victim()
	if !ok {
		return
	}
	e.stopNode(name)
	e.startRun(name)
	e.res.faults++
	e.note("restarted %s", name)
	e.converge(true)
}

// restartAll crashes every connected node and starts it again under its
// name as a new run, one after another in a random order, each ring
// installed at once and at most 150 ms between two restarts: all of them
// within HandoffTimeout, so the cluster's every connected member is
// young, and what the old runs held that no new one was handed is lost,
// a loss some node must report.
func (e *explorer) restartAll() {
	order := e.connected()
	e.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	e.note("restarting %v one after another", order)
	for _, name := range order {
		e.stopNode(name)
		e.startRun(name)
		e.res.faults++
		e.note("restarted %s", name)
		e.converge(false)
		e.c.sleep(time.Duration(e.rng.IntN(150)) * time.Millisecond)
	}
}

// restartRevoked starts again, as a new run, every connected node whose
// seat grants were revoked for good: it serves nothing more, and its
// supervisor starts a new run when it exits (tandem serve's status 3).
// A revoked node that holds a seat the others cannot spare yet
// (seatsSpare) is restarted once they can. It reports whether it
// restarted any.
func (e *explorer) restartRevoked() bool {
	restarted := false
	for _, name := range e.connected() {
		if !e.c.node(name).Readiness().SeatsRevoked || !e.seatsSpare(name) {
			// Not revoked; or revoked but still a seat the others
			// cannot spare yet: its run goes on answering as a seat
			// until they have recovered (seatsSpare).
			continue
		}
		e.stopNode(name)
		e.startRun(name)
		e.res.revoked++
		restarted = true
		e.note("%s was revoked for good by the seats; restarted as a new run", name)
		e.converge(true)
	}
	return restarted
}

// leave drains a node gracefully and stops it.
func (e *explorer) leave() {
	name, ok := e.victim()
	if !ok {
		return
	}
	x := e.c.node(name)
	rest := slices.DeleteFunc(e.connected(), func(n string) bool { return n == name })
	for _, n := range rest {
		e.c.node(n).SetLeaving([]string{name})
	}
	e.c.mu.Lock()
	e.c.epoch++
	e.c.mu.Unlock()
	e.installOn(name, rest)
	ctx, cancel := within(x, 5*time.Second)
	err := x.Drain(ctx, x.Table())
	cancel()
	e.stopNode(name)
	e.left = append(e.left, name)
	e.res.faults++
	e.note("%s left gracefully (drain: %v)", name, err)
	e.converge(true)
	for _, n := range rest {
		if m := e.c.node(n); m != nil {
			m.SetLeaving(nil)
		}
	}
}

// stopNode crashes node name.
func (e *explorer) stopNode(name string) {
	e.c.mu.Lock()
	n := e.c.nodes[name]
	delete(e.c.nodes, name)
	e.c.mu.Unlock()
	n.stop()
}

// startRun starts node name as a new run.
func (e *explorer) startRun(name string) {
	e.runs++
	n := e.c.start(name, e.tune(name))
	n.member.Incarnation = fmt.Sprintf("run-%d", e.runs)
}

// request sends one request, a write or a read, through a random running
// node (one cut off included), and checks its answer.
func (e *explorer) request() {
	run := e.running()
	via := e.c.node(run[e.rng.IntN(len(run))])
	id := e.ids[e.rng.IntN(len(e.ids))]
	m := e.model[id]
	ctx, cancel := within(via, 3*time.Second)
	defer cancel()
	if e.rng.IntN(10) < 4 {
		e.res.writes++
		content := fmt.Sprintf("w%d", e.res.writes)
		s, err := via.Do(ctx, &Op{Kind: OpPut, ID: id, IdleTimeout: 24 * time.Hour, RequestID: "req-" + content,
			Attributes: map[string]msgpack.RawMessage{"w": value(e.t, content)}})
		e.seq = e.losses.completed()
		if err != nil {
			m.pending[content] = true
			e.note("put %s=%s via %s: %v", id, content, via.Name(), err)
			return
		}
		e.res.acked++
		got := contentOf(e.t, s)
		e.note("put %s=%s via %s: v%d", id, content, via.Name(), s.Version)
		if got != content {
			e.anomaly("put %s=%s answered v%d with content %q", id, content, s.Version, got)
			return
		}
		e.acked(id, m, s.Version, content)
		return
	}
	e.res.reads++
	s, err := via.Do(ctx, &Op{Kind: OpGet, ID: id, NoTouch: true})
	e.seq = e.losses.completed()
	switch {
	case errors.Is(err, ErrNotFound):
		e.note("get %s via %s: not found", id, via.Name())
		e.readNothing(id, m)
	case err != nil:
		e.note("get %s via %s: %v", id, via.Name(), err)
	default:
		e.note("get %s via %s: v%d %s", id, via.Name(), s.Version, contentOf(e.t, s))
		e.readSome(id, m, s.Version, contentOf(e.t, s))
	}
}

// contentOf returns the content a put of the explorer gave session s.
func contentOf(t testing.TB, s *Session) string {
	attrs, err := s.Attributes.Map()
	if err != nil {
		t.Fatal(err)
	}
	var w string
	if raw, ok := attrs["w"]; ok {
		if err := msgpack.Unmarshal(raw, &w); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// sessionModel is what the client knows of one session.
type sessionModel struct {
	// known is the state the session was last seen in (acknowledged or
	// read); nil after a loss report of its partition, until it is seen
	// again. A zero observed is "never written".
	known *observed
	// lastAcked is the last acknowledged write, which a reported loss
	// may or may not have taken: after one, it may still be read, but
	// nothing older.
	lastAcked *observed
	// pending holds the contents of writes whose outcome is unknown: each
	// may take effect at any time, once.
	pending map[string]bool
	// versions maps each version answered since the last loss report to
	// its content.
	versions map[uint64]string
	// gone is set when the session went back to nothing (a read found
	// nothing, or a write was answered at a version no higher than the
	// last) with no loss report yet: one must follow, naming its
	// partition (goneAt is the request), or it is an anomaly.
	gone   string
	goneAt int
}

// observed is a session's state: its version and content; version 0 is
// "not there".
type observed struct {
	version uint64
	content string
}

// acked checks and records an acknowledged write of content at version.
func (e *explorer) acked(id string, m *sessionModel, version uint64, content string) {
	if m.known != nil && version <= m.known.version {
		e.wentBack(id, m, fmt.Sprintf("write %s answered at v%d, not above v%d already seen", content, version, m.known.version))
	} else if prior, ok := m.versions[version]; ok && prior != content {
		e.anomaly("%s: v%d answered with %q and with %q", id, version, prior, content)
	}
	m.known = &observed{version, content}
	m.lastAcked = m.known
	m.versions[version] = content
}

// readSome checks a read that found the session at version with content.
func (e *explorer) readSome(id string, m *sessionModel, version uint64, content string) {
	if prior, ok := m.versions[version]; ok && prior != content {
		e.anomaly("%s: v%d read as %q, answered before as %q", id, version, content, prior)
		return
	}
	switch {
	case m.known == nil:
		// After a reported loss: nothing, the last acknowledged write
		// (its copies survived), or a write of unknown outcome.
		if !m.pending[content] && (m.lastAcked == nil || *m.lastAcked != observed{version, content}) {
			e.anomaly("%s: read v%d %q after a reported loss: neither the last acknowledged write %+v nor one of unknown outcome", id, version, content, m.lastAcked)
		}
	case version < m.known.version:
		e.anomaly("%s: read v%d %q after v%d %q was acknowledged or read (stale read or lost write)", id, version, content, m.known.version, m.known.content)
	case version == m.known.version:
		if content != m.known.content {
			e.anomaly("%s: read v%d as %q, seen before as %q", id, version, content, m.known.content)
		}
	case !m.pending[content]:
		e.anomaly("%s: read v%d %q, above v%d, which no write of unknown outcome accounts for", id, version, content, m.known.version)
	}
	delete(m.pending, content)
	m.known = &observed{version, content}
	m.versions[version] = content
}

// readNothing checks a read that found no session.
func (e *explorer) readNothing(id string, m *sessionModel) {
	if m.known != nil && m.known.version > 0 {
		e.wentBack(id, m, fmt.Sprintf("read found nothing after v%d %q", m.known.version, m.known.content))
	}
	m.known, m.lastAcked = &observed{}, nil
}

// wentBack records that session id went back to nothing: allowed only
// if a loss report of its partition follows (or came since it was last
// seen, absorbed already), which finish checks.
func (e *explorer) wentBack(id string, m *sessionModel, what string) {
	if m.gone == "" {
		m.gone, m.goneAt = what, e.seq
	}
	m.versions = map[uint64]string{}
}

// absorbLosses applies the loss reports logged since the last call: every
// session of a partition reported lost may have gone back to nothing.
func (e *explorer) absorbLosses() {
	for _, ev := range e.losses.since(e.res.losses) {
		e.res.losses++
		e.note("%s reported partitions %v lost", ev.node, ev.partitions)
		for _, id := range e.ids {
			m := e.model[id]
			if !slices.Contains(ev.partitions, ring.PartitionOf(ring.DefaultConfig(), id)) {
				continue
			}
			if m.gone != "" || m.known != nil && m.known.version > 0 {
				e.res.sessionsLost++
			}
			m.gone = "" // the report explains it
			m.known, m.versions = nil, map[uint64]string{}
		}
	}
}

// finish heals every cut, lets the hand-offs settle, reads every session
// through a node and on both its owners, and checks what the schedule
// left.
func (e *explorer) finish() {
	for name := range e.cut {
		x := e.c.node(name)
		x.faults.HealAll()
		for _, n := range e.c.list() {
			n.faults.Heal(x.member.Peer)
		}
		delete(e.cut, name)
	}
	e.note("healed everything")
	e.converge(false)
	if e.seats > 0 {
		// A node revoked for good never ends its hand-offs: it is
		// started again, as its supervisor would, while they settle.
		var pending []string
		waitFor(e.t, 60*time.Second, "hand-offs after the schedule, revoked nodes restarted", func() bool {
			if e.restartRevoked() {
				return false
			}
			pending = pending[:0]
			for _, n := range e.c.list() {
				serving(n.Node)
				if st := n.own.load(); n.Table().Has(n.Name()) && st.transfers(true) > 0 {
					for p, ps := range st.parts {
						if t := ps.transfer; t != nil {
							pending = append(pending, fmt.Sprintf("%s p%d sources %v reconcile %v distrust %v since %v awaits %v seats %+v", n.Name(), p, t.sources, t.reconcile, t.distrust, t.since, t.awaits, n.seatStatus()))
							break
						}
					}
				}
			}
			if len(pending) > 0 && os.Getenv("TANDEM_EXPLORE_DEBUG") != "" {
				fmt.Println(strings.Join(pending, "\n"))
			}
			return len(pending) == 0
		})
	}
	e.c.settle(e.t, "hand-offs after the schedule")
	// A node declared dead meanwhile learns it from a lease granted after
	// the heal, and only then catches up: replacing its copies with an
	// owner's, it holds none of a partition between the drop and the
	// merge of the first batch. The settle above may have found nothing
	// pending before that news came, and the copies read below must be
	// the ones the nodes keep, so every node asks for its leases (its
	// standing) and the hand-offs that follow are waited for too.
	// With seats, a node learns only now, asking, that it was revoked
	// for good while it was cut off: it knows that standing, and serves
	// nothing until its supervisor starts it again, as here; every node
	// then asks again, under the ring its restart brought.
	for again := true; again; {
		again = false
		for _, name := range e.running() {
			waitFor(e.t, 20*time.Second, name+" to know its standing", func() bool {
				if e.seats > 0 && e.restartRevoked() {
					again = true
					return false
				}
				n := e.c.node(name)
				ctx, cancel := within(n, time.Second)
				defer cancel()
				return n.knowsItsStanding(ctx, n.Table())
			})
		}
	}
	e.c.settle(e.t, "hand-offs of the nodes that learned they had been declared dead")
	e.absorbLosses()
	run := e.running()
	for _, id := range e.ids {
		m := e.model[id]
		via := e.c.node(run[e.rng.IntN(len(run))])
		ctx, cancel := within(via, 5*time.Second)
		s, err := via.Do(ctx, &Op{Kind: OpGet, ID: id, NoTouch: true})
		cancel()
		e.seq = e.losses.completed()
		var final observed
		switch {
		case errors.Is(err, ErrNotFound):
			e.note("final get %s via %s: not found", id, via.Name())
			e.readNothing(id, m)
		case err != nil:
			e.anomaly("%s unreadable after the cluster settled: %v", id, err)
			continue
		default:
			final = observed{s.Version, contentOf(e.t, s)}
			e.note("final get %s via %s: v%d %s", id, via.Name(), final.version, final.content)
			e.readSome(id, m, final.version, final.content)
		}
		tab := via.Table()
		p := tab.Partition(id)
		if e.failed || m.gone != "" {
			e.note("%s is in partition %d, owned by %v; copies %v", id, p, tab.Owners(p), e.copies(p, id))
		}
		for _, owner := range []string{tab.Owners(p).Primary, tab.Owners(p).Buddy} {
			var copyOf observed
			if s := e.c.node(owner).store.get(p, id); s != nil && !s.Deleted {
				copyOf = observed{s.Version, contentOf(e.t, s)}
			}
			if copyOf != final {
				e.anomaly("%s: %s's copy is %+v, the session reads %+v", id, owner, copyOf, final)
			}
		}
	}
	e.absorbLosses()
	for _, id := range e.ids {
		if m := e.model[id]; m.gone != "" {
			e.anomaly("%s went back to nothing at request %d with no loss of its partition reported: %s", id, m.goneAt, m.gone)
		}
	}
}

// copies describes every running node's copy of session id, for the
// schedule of a failing run.
func (e *explorer) copies(p int, id string) []string {
	var out []string
	for _, n := range e.c.list() {
		if s := n.store.get(p, id); s != nil {
			out = append(out, fmt.Sprintf("%s: v%d %q (generation %d, floor %d, deleted %v)", n.Name(), s.Version, contentOf(e.t, s), s.Gen, n.store.floor(p), s.Deleted))
		}
	}
	return out
}
