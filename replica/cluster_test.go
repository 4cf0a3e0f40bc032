package replica

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/replica/peer"
	"github.com/tandem-io/tandem/replica/peer/tlstest"
	"github.com/tandem-io/tandem/ring"
)

// clock is a test cluster's wall clock. On the in-memory network it reads
// the nodes' virtual clock, so that Advance lets time pass for the wall
// clock and the monotonic clock alike (a wall clock that moved alone
// would be a step, which the engine refuses to follow); on sockets it is
// a settable instant.
type clock struct {
	ns    atomic.Int64      // the instant (sockets), or the offset from ticks
	ticks *peer.ManualClock // nil on sockets
}

// newClock starts a clock at a fixed instant, or on ticks when not nil.
func newClock(ticks *peer.ManualClock) *clock {
	c := &clock{ticks: ticks}
	if ticks == nil {
		c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	}
	return c
}

// Now returns the clock's time.
func (c *clock) Now() time.Time {
	if c.ticks != nil {
		return c.ticks.Now().Add(time.Duration(c.ns.Load()))
	}
	return time.Unix(0, c.ns.Load())
}

// Advance lets d pass.
func (c *clock) Advance(d time.Duration) {
	if c.ticks != nil {
		c.ticks.Advance(d)
		return
	}
	c.ns.Add(int64(d))
}

// testNode is one node of a test cluster: a replica.Node reached through
// the cluster's in-memory network, or behind a real peer server on
// loopback.
type testNode struct {
	*Node
	member ring.Member
	faults *peer.FaultyCaller
	caller peer.Caller // the node's own calls, without faults
	stop   func()      // shuts the node down like a crash: no hand-off
}

// testCluster is a set of nodes with a ring shared by hand, as the
// membership layer would share it.
type testCluster struct {
	t       testing.TB
	clock   *clock            // the wall clock (Config.Now), set by hand
	ticks   *peer.ManualClock // elapsed time on the in-memory network, moved by an autopilot; nil on sockets
	network *peer.Network     // nil: nodes talk over loopback sockets
	ca      *tlstest.CA       // socket nodes speak mutual TLS with certificates from it; nil: plain TCP
	mu      sync.Mutex
	nodes   map[string]*testNode
	epoch   uint64
	mode    func(*Config) // applied to every node's config before its own tuning (forEachLeaseMode); nil: none
}

// newTestCluster starts n nodes on an in-memory network and gives them one
// ring. The nodes' elapsed time is virtual: leases, fences, time-outs and
// back-off run on a ManualClock that an autopilot moves on whenever the
// network is quiet, so the suite waits for computation, not for the clock.
func newTestCluster(t testing.TB, n int, tune func(*Config)) *testCluster {
	t.Helper()
	ticks := peer.NewManualClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	network := peer.NewNetwork(peer.NetworkConfig{Clock: ticks})
	pilot := peer.StartAutopilot(ticks, network, peer.AutopilotConfig{})
	t.Cleanup(pilot.Stop) // runs last: the nodes' Close may wait on the clock
	c := &testCluster{t: t, clock: newClock(ticks), ticks: ticks, network: network, nodes: map[string]*testNode{}}
	return c.startAll(n, tune)
}

// newTestClusterIn is newTestCluster with every node, those started
// later included, configured by mode first (forEachLeaseMode).
func newTestClusterIn(t testing.TB, mode func(*Config), n int, tune func(*Config)) *testCluster {
	t.Helper()
	c := newTestCluster(t, 0, nil)
	c.mode = mode
	return c.startAll(n, tune)
}

// forEachLeaseMode runs f as a subtest in each way a node can hold its
// leases: from every other member but one ("leases", the default), and
// from a majority of agreed seats ("seats", Config.Seats = 3). mode
// configures a node for the subtest's way (newTestClusterIn).
func forEachLeaseMode(t *testing.T, f func(t *testing.T, mode func(*Config))) {
	t.Run("leases", func(t *testing.T) { f(t, nil) })
	t.Run("seats", func(t *testing.T) { f(t, seated(3)) })
}

// sessionPerPrimary writes one session for every running node of c, with
// that node its primary, and returns their ids by node name: every node
// then serves reads (readAtPrimaries).
func sessionPerPrimary(t *testing.T, c *testCluster) map[string]string {
	t.Helper()
	ids := map[string]string{}
	for i := 0; len(ids) < len(c.list()); i++ {
		id := sessionID(i)
		if primary, _ := c.ownersOf(id); ids[primary.Name()] == "" {
			ids[primary.Name()] = id
			put(t, primary, id, "v", 1)
		}
	}
	return ids
}

// readAtPrimaries reads, through every running node of c, its session
// of ids (sessionPerPrimary).
func readAtPrimaries(t *testing.T, c *testCluster, ids map[string]string) {
	t.Helper()
	for _, n := range c.list() {
		if _, err := n.Get(testCtx(t), ids[n.Name()], true); err != nil {
			t.Fatalf("read %s at its primary %s: %v", ids[n.Name()], n.Name(), err)
		}
	}
}

// sentBy returns how many peer requests of method each node of c's
// in-memory network has sent so far, by node name.
func (c *testCluster) sentBy(method string) map[string]int {
	out := map[string]int{}
	for k, s := range c.network.Stats() {
		if k.Method == method {
			out[k.From] += s.Calls
		}
	}
	return out
}

// sleep lets d pass on the nodes' clock: virtual time on the in-memory
// network, real time on sockets.
func (c *testCluster) sleep(d time.Duration) {
	if c.ticks == nil {
		time.Sleep(d)
		return
	}
	until := c.ticks.Now().Add(d)
	for c.ticks.Now().Before(until) {
		time.Sleep(100 * time.Microsecond)
	}
}

// newSocketCluster starts n nodes behind real peer servers on loopback and
// gives them one ring: the few tests that cover the wire itself use it.
func newSocketCluster(t testing.TB, n int, tune func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, clock: newClock(nil), nodes: map[string]*testNode{}}
	return c.startAll(n, tune)
}

// startAll starts n nodes and gives them one ring; with n 0, the test
// starts its nodes itself.
func (c *testCluster) startAll(n int, tune func(*Config)) *testCluster {
	for i := range n {
		c.start(fmt.Sprintf("node-%d", i), tune)
	}
	if n > 0 {
		c.publish()
	}
	return c
}

// start starts a node called name that is not yet in the ring.
func (c *testCluster) start(name string, tune func(*Config)) *testNode {
	t := c.t
	t.Helper()
	tn := &testNode{member: ring.Member{Name: name, Peer: name}}
	var client *peer.Client
	var serverCfg peer.ServerConfig
	if c.network != nil {
		tn.caller = c.network.Caller(name)
	} else {
		var clientCfg peer.ClientConfig
		clientCfg, serverCfg = c.peerConfigs(name)
		client = peer.NewClient(clientCfg)
		tn.caller = client
	}
	tn.faults = peer.NewFaultyCaller(tn.caller)
	cfg := Config{Name: name, Caller: tn.faults, Now: c.clock.Now, CallTimeout: 500 * time.Millisecond, TouchInterval: 20 * time.Millisecond, SweepInterval: 20 * time.Millisecond, HandoffTimeout: time.Second, PauseQuarantine: 300 * time.Millisecond}
	if c.ticks != nil {
		cfg.Clock = c.ticks
		// The autopilot moves the clock as fast as the nodes compute, so a
		// heartbeat goroutine the machine runs late would look paused:
		// only the pause tests' hour-long gaps count as pauses here.
		cfg.PauseThreshold = 10 * time.Minute
	}
	if c.mode != nil {
		c.mode(&cfg)
	}
	if tune != nil {
		tune(&cfg)
	}
	tn.Node = New(cfg)
	if c.network != nil {
		if err := c.network.Listen(name, tn.Node); err != nil {
			t.Fatal(err)
		}
		tn.stop = func() { c.network.Close(name); tn.Node.Close() }
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		server := peer.NewServer(tn.Node, serverCfg)
		go server.Serve(ln)
		tn.member.Peer = ln.Addr().String()
		tn.stop = func() { server.Close(); tn.Node.Close(); client.Close() }
	}
	t.Cleanup(func() { tn.stop() })
	c.mu.Lock()
	c.nodes[name] = tn
	c.mu.Unlock()
	return tn
}

// publish gives every running node a ring of every running node.
func (c *testCluster) publish() *ring.Table {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var members []ring.Member
	for _, n := range c.nodes {
		members = append(members, n.member)
	}
	c.epoch++
	tab, err := ring.New(ring.DefaultConfig(), c.epoch, members)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, n := range c.nodes {
		if err := n.SetTable(tab); err != nil {
			c.t.Fatal(err)
		}
	}
	return tab
}

// kill crashes node name and tells the survivors, as membership would.
func (c *testCluster) kill(name string) {
	c.mu.Lock()
	n := c.nodes[name]
	delete(c.nodes, name)
	c.mu.Unlock()
	n.stop()
	c.publish()
}

// restart crashes the named nodes and starts each again as a new run
// (incarnation run) that remembers nothing, without telling anyone: the
// next publish shows the ring the restarts leave.
func (c *testCluster) restart(run string, names ...string) {
	c.restartTuned(run, nil, names...)
}

// restartTuned is restart, the new runs configured by tune.
func (c *testCluster) restartTuned(run string, tune func(*Config), names ...string) {
	for _, name := range names {
		c.mu.Lock()
		n := c.nodes[name]
		delete(c.nodes, name)
		c.mu.Unlock()
		n.stop()
		c.start(name, tune).member.Incarnation = run
	}
}

// node returns the node called name.
func (c *testCluster) node(name string) *testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[name]
}

// list returns the running nodes.
func (c *testCluster) list() []*testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*testNode
	for _, n := range c.nodes {
		out = append(out, n)
	}
	return out
}

// any returns a random running node.
func (c *testCluster) any(rng *rand.Rand) *testNode {
	l := c.list()
	return l[rng.IntN(len(l))]
}

// ownersOf returns the nodes owning session id.
func (c *testCluster) ownersOf(id string) (primary, buddy *testNode) {
	tab := c.list()[0].Table()
	o := tab.OwnersOf(id)
	return c.node(o.Primary), c.node(o.Buddy)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// serving marks n as serving requests that need its leases, so its
// leases are renewed in the background however far virtual time moves
// while a test waits for them.
func serving(n *Node) {
	n.renewals.markLeaseUse(n.mono(), n.cfg.LeaseDuration/6)
}

// ctx returns a context bounded for one test operation.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// sessionID returns a well-formed id for test session i.
func sessionID(i int) string { return fmt.Sprintf("session-%012d", i) }

// value encodes v as an attribute value.
func value(t testing.TB, v any) msgpack.RawMessage {
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decode decodes an attribute value.
func decode(t testing.TB, b msgpack.RawMessage) any {
	var v any
	if err := msgpack.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// put writes session id through node n with one attribute.
func put(t *testing.T, n *testNode, id string, attr string, v any) *Session {
	t.Helper()
	s, err := n.Do(testCtx(t), &Op{Kind: OpPut, ID: id, Principal: "user-" + id, Attributes: map[string]msgpack.RawMessage{attr: value(t, v)}})
	if err != nil {
		t.Fatalf("put %s via %s: %v", id, n.Name(), err)
	}
	return s
}

// within returns a context that ends once d has passed on n's clock:
// virtual time on the in-memory network, as the node's own waits are.
func within(n *testNode, d time.Duration) (context.Context, context.CancelFunc) {
	return n.withTimeout(context.Background(), d)
}

// before returns a func reporting whether less than d has passed on the
// cluster's clock since before was called.
func (c *testCluster) before(d time.Duration) func() bool {
	if c.ticks == nil {
		deadline := time.Now().Add(d)
		return func() bool { return time.Now().Before(deadline) }
	}
	deadline := c.ticks.Now().Add(d)
	return func() bool { return c.ticks.Now().Before(deadline) }
}

// asInt decodes an integer attribute value, whatever width msgpack chose.
func asInt(t testing.TB, b msgpack.RawMessage) int {
	var v int
	if err := msgpack.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// publishTo gives the nodes in views their own rings, as membership does on
// each side of a network cut: each key's ring holds the named members.
func (c *testCluster) publishTo(views map[string][]string) {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	for name, memberNames := range views {
		var members []ring.Member
		for _, m := range memberNames {
			members = append(members, c.nodes[m].member)
		}
		tab, err := ring.New(ring.DefaultConfig(), c.epoch, members)
		if err != nil {
			c.t.Fatal(err)
		}
		if err := c.nodes[name].SetTable(tab); err != nil {
			c.t.Fatal(err)
		}
	}
}
