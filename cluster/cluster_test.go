package cluster

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-io/tandem/ring"
)

// converge is how long the tests give gossip to settle; it is generous so
// that a loaded machine (-race, parallel tests) never makes them flake.
const converge = 15 * time.Second

func TestThreeNodesJoinThroughSeed(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a")
	b := startNode(t, "b", a.Addr())
	c := startNode(t, "c", a.Addr())
	nodes := []*node{a, b, c}

	for _, n := range nodes {
		waitFor(t, converge, n.Name()+" to see a, b, c", hasRing(n, "a", "b", "c"))
		v := n.View()
		wantRing(t, v.Ring(), "a", "b", "c")
		for _, m := range v.Members {
			if m.Health != healthAlive || m.Meta.State != StateJoining || m.Meta.BootID == "" {
				t.Fatalf("%s sees %+v", n.Name(), m)
			}
		}
		self, _ := v.member(n.Name())
		if self.Addr != n.Addr() {
			t.Fatalf("%s sees itself at %s, Addr() = %s", n.Name(), self.Addr, n.Addr())
		}
	}
	// a saw itself alone (1), then b (2), then c (3).
	if e := a.View().Epoch; e < 3 {
		t.Fatalf("a's epoch = %d, want ≥ 3", e)
	}

	// Every node marks itself active: the members change, the ring does
	// not.
	for _, n := range nodes {
		if err := n.SetState(context.Background(), StateActive); err != nil {
			t.Fatalf("%s: set state: %v", n.Name(), err)
		}
	}
	for _, n := range nodes {
		waitFor(t, converge, n.Name()+" to see everyone active", func() bool {
			v := n.View()
			for _, m := range v.Members {
				if m.Meta.State != StateActive {
					return false
				}
			}
			return len(v.Members) == 3
		})
		waitFor(t, converge, n.Name()+" to serve by a, b and c", hasRing(n, "a", "b", "c"))
	}

	// OnChange saw the views in order, and ends with the current one.
	for _, n := range nodes {
		waitFor(t, converge, n.Name()+"'s OnChange to catch up", func() bool {
			views := n.rec.all()
			return len(views) > 0 && slices.EqualFunc(views[len(views)-1].Members, n.View().Members, func(x, y Member) bool { return x == y })
		})
		views := n.rec.all()
		if views[0].Epoch != 1 && n == a {
			t.Fatalf("a's first view has epoch %d, want 1", views[0].Epoch)
		}
		for i := 1; i < len(views); i++ {
			if views[i].Epoch < views[i-1].Epoch {
				t.Fatalf("%s: epoch went from %d to %d", n.Name(), views[i-1].Epoch, views[i].Epoch)
			}
		}
	}
}

func TestSetStateLeavingLeavesRing(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a")
	b := startNode(t, "b", a.Addr())
	c := startNode(t, "c", a.Addr())
	for _, n := range []*node{a, b, c} {
		waitFor(t, converge, n.Name()+" to see a, b, c", hasRing(n, "a", "b", "c"))
	}
	before := a.View().Epoch

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.SetState(ctx, StateLeaving); err != nil {
		t.Fatalf("set state: %v", err)
	}
	for _, n := range []*node{a, b, c} {
		waitFor(t, converge, n.Name()+" to drop leaving b from the ring", hasRing(n, "a", "c"))
		m, ok := n.View().member("b")
		if !ok || m.Meta.State != StateLeaving || m.Health != healthAlive {
			t.Fatalf("%s sees b as %+v (known %v), want alive and leaving", n.Name(), m, ok)
		}
	}
	if after := a.View().Epoch; after <= before {
		t.Fatalf("a's epoch went from %d to %d, want an increase", before, after)
	}
}

// Leaving is final: a node that announced it is leaving refuses to
// announce itself active again (a readiness announcement that raced a
// graceful stop put the node back in its own ring mid-drain), and stays
// out of the ring.
func TestALeavingNodeStaysLeaving(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a")
	b := startNode(t, "b", a.Addr())
	for _, n := range []*node{a, b} {
		waitFor(t, converge, n.Name()+" to see a, b", hasRing(n, "a", "b"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.SetState(ctx, StateLeaving); err != nil {
		t.Fatalf("set state: %v", err)
	}
	if err := b.SetState(ctx, StateActive); !errors.Is(err, ErrLeaving) {
		t.Fatalf("a leaving node set itself active: %v", err)
	}
	for _, n := range []*node{a, b} {
		waitFor(t, converge, n.Name()+" to drop leaving b from the ring", hasRing(n, "a"))
		if m, ok := n.View().member("b"); !ok || m.Meta.State != StateLeaving {
			t.Fatalf("%s sees b as %+v (known %v), want leaving", n.Name(), m, ok)
		}
	}
}

func TestCrashIsDeadAndLeaveIsLeft(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a")
	b := startNode(t, "b", a.Addr())
	c := startNode(t, "c", a.Addr())
	d := startNode(t, "d", a.Addr())
	for _, n := range []*node{a, b, c, d} {
		waitFor(t, converge, n.Name()+" to see a, b, c, d", hasRing(n, "a", "b", "c", "d"))
	}

	// c crashes.
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	for _, n := range []*node{a, b, d} {
		waitFor(t, converge, n.Name()+" to declare c dead", func() bool {
			m, ok := n.View().member("c")
			return ok && m.Health == healthDead
		})
		waitFor(t, converge, n.Name()+" to drop c", hasRing(n, "a", "b", "d"))
	}

	// d leaves gracefully, without saying it is leaving first.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	for _, n := range []*node{a, b} {
		waitFor(t, converge, n.Name()+" to see d left", func() bool {
			m, ok := n.View().member("d")
			return ok && m.Health == healthLeft
		})
		// b may be briefly suspected on a loaded machine (local timing):
		// the ring settles on a and b.
		waitFor(t, converge, n.Name()+" to serve by a and b", hasRing(n, "a", "b"))
		if m, _ := n.View().member("c"); m.Health != healthDead {
			t.Fatalf("%s sees c as %q, want still dead", n.Name(), m.Health)
		}
	}
	if err := d.Leave(ctx); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second leave: %v, want net.ErrClosed", err)
	}
	if err := d.SetState(ctx, StateActive); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("set state after leave: %v, want net.ErrClosed", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("close after leave: %v", err)
	}
}

func TestRingMismatchIsRefused(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a")
	b := startNode(t, "b", a.Addr())
	waitFor(t, converge, "a to see b", hasRing(a, "a", "b"))

	other := ring.Config{Partitions: 7, VirtualNodes: 8, Load: 1.25}
	_, err := tryStart(t, "x", func(c *Config) { c.Ring = other }, a.Addr())
	if err == nil {
		t.Fatal("x joined a cluster with other ring settings")
	}
	t.Logf("x: %v", err)
	if !errors.Is(err, ErrRingMismatch) || !errors.Is(err, ErrJoin) {
		t.Fatalf("error %q does not wrap ErrRingMismatch and ErrJoin", err)
	}
	for _, s := range []string{ring.DefaultConfig().String(), other.String(), a.Addr()} {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not mention %q", err, s)
		}
	}

	// a refused x on its side too, and no view of a or b ever had x.
	waitFor(t, converge, "a to log its refusal", func() bool {
		return strings.Contains(a.logs.String(), "ring settings differ")
	})
	for _, n := range []*node{a, b} {
		for _, v := range append(n.rec.all(), n.View()) {
			if _, ok := v.member("x"); ok {
				t.Fatalf("%s saw x: %+v", n.Name(), v)
			}
		}
	}
}

func TestJoinFailureListsSeeds(t *testing.T) {
	t.Parallel()
	// A port nothing listens on: connections are refused at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	_, err = tryStart(t, "lonely", func(*Config) {}, dead)
	if !errors.Is(err, ErrJoin) || errors.Is(err, ErrRingMismatch) {
		t.Fatalf("err = %v, want ErrJoin without ErrRingMismatch", err)
	}
	if !strings.Contains(err.Error(), dead) {
		t.Fatalf("error %q does not name seed %s", err, dead)
	}

	// A context that ends stops the join.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg := testConfig("impatient", &recorder{}, &syncBuffer{}, dead)
	if _, err := Start(ctx, cfg); !errors.Is(err, context.Canceled) || !errors.Is(err, ErrJoin) {
		t.Fatalf("err = %v, want ErrJoin and context.Canceled", err)
	}
}

func TestOwnAddressInSeedsIsSkipped(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a")
	// b's seeds name a and b itself, as if every node had the same seed
	// list.
	b := startOnFreePort(t, "b", func(self string) []string { return []string{self, a.Addr()} })
	waitFor(t, converge, "a to see b", hasRing(a, "a", "b"))

	// With only itself as seed, a node starts a new cluster: it does not
	// even try to join itself.
	c := startOnFreePort(t, "c", func(self string) []string { return []string{self} })
	wantRing(t, c.View().Ring(), "c")
	wantRing(t, b.View().Ring(), "a", "b")
	if strings.Contains(c.logs.String(), "push/pull") {
		t.Fatalf("c tried to join itself:\n%s", c.logs)
	}
}

func TestRestartUnderSameNameOnNewAddress(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a")
	b := startNode(t, "b", a.Addr())
	c := startNode(t, "c", a.Addr())
	for _, n := range []*node{a, b, c} {
		waitFor(t, converge, n.Name()+" to see a, b, c", hasRing(n, "a", "b", "c"))
	}
	oldBoot := c.meta.BootID
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	// c comes back at once on another port, before the others noticed.
	c2 := startNode(t, "c", a.Addr(), b.Addr())
	if c2.Addr() == c.Addr() {
		t.Fatalf("restarted c got the same address %s", c2.Addr())
	}
	newBoot := c2.meta.BootID
	if newBoot == oldBoot {
		t.Fatal("restarted c has the same BootID")
	}
	for _, n := range []*node{a, b, c2} {
		waitFor(t, 20*time.Second, n.Name()+" to take c back at its new address", func() bool {
			m, ok := n.View().member("c")
			return ok && m.Health == healthAlive && m.Addr == c2.Addr() && m.Meta.BootID == newBoot
		})
		waitFor(t, converge, n.Name()+" to see a, b, c", hasRing(n, "a", "b", "c"))
	}
}

func TestRejoinMergesRestartedSeed(t *testing.T) {
	t.Parallel()
	fastRejoin := func(c *Config) { c.RejoinInterval = 200 * time.Millisecond }
	a := startWith(t, "a", fastRejoin)
	b := startWith(t, "b", fastRejoin, a.Addr())
	waitFor(t, converge, "a and b to meet", func() bool { return hasRing(a, "a", "b")() && hasRing(b, "a", "b")() })

	addr := a.Addr()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, converge, "b to drop a", hasRing(b, "b"))

	// a comes back on the same address as a new cluster of its own; only
	// b's periodic re-join of its seed can bring them together.
	var a2 *node
	waitFor(t, converge, "a's address to be free again", func() bool {
		var err error
		a2, err = tryStart(t, "a", func(c *Config) { c.BindAddr = addr })
		return err == nil
	})
	waitFor(t, converge, "a2 and b to meet again", func() bool { return hasRing(a2, "a", "b")() && hasRing(b, "a", "b")() })
	if m, _ := b.View().member("a"); m.Meta.BootID != a2.meta.BootID {
		t.Fatalf("b sees a with BootID %s, want %s", m.Meta.BootID, a2.meta.BootID)
	}
}

func TestSecretKey(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef")
	withKey := func(k []byte) func(*Config) { return func(c *Config) { c.SecretKey = k } }
	a := startWith(t, "a", withKey(key))
	b := startWith(t, "b", withKey(key), a.Addr())
	waitFor(t, converge, "a to see b", hasRing(a, "a", "b"))
	wantRing(t, b.View().Ring(), "a", "b")

	_, err := tryStart(t, "plain", func(*Config) {}, a.Addr())
	if !errors.Is(err, ErrJoin) {
		t.Fatalf("node without the key: err = %v, want ErrJoin", err)
	}
	_, err = tryStart(t, "bad", withKey([]byte("short")), a.Addr())
	if !errors.Is(err, errConfig) {
		t.Fatalf("short key: err = %v, want a config error", err)
	}
}

func TestMemberlistLogsReachSlog(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a")
	b := startNode(t, "b", a.Addr())
	waitFor(t, converge, "a to see b", hasRing(a, "a", "b"))
	// b's join logs at debug level: "Initiating push/pull sync with: ...".
	waitFor(t, converge, "memberlist's join line in b's log", func() bool {
		return strings.Contains(b.logs.String(), "Initiating push/pull sync")
	})
	for _, line := range strings.Split(b.logs.String(), "\n") {
		if !strings.Contains(line, "Initiating push/pull sync") {
			continue
		}
		for _, want := range []string{"level=DEBUG", "component=memberlist", "node=b", `msg="Initiating`} {
			if !strings.Contains(line, want) {
				t.Fatalf("line %q lacks %q", line, want)
			}
		}
		if strings.Contains(line, "[DEBUG]") || strings.Contains(line, "memberlist: ") {
			t.Fatalf("line %q keeps memberlist's prefixes", line)
		}
	}
	if !strings.Contains(a.logs.String(), "component=cluster") {
		t.Fatal("no line of the cluster package's own in a's log")
	}
}

func TestStartValidatesConfig(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("p", 600)
	for name, edit := range map[string]func(*Config){
		"no name":             func(c *Config) { c.Name = "" },
		"bad ring":            func(c *Config) { c.Ring.Partitions = 8 },
		"hostname bind":       func(c *Config) { c.BindAddr = "localhost:0" },
		"no port":             func(c *Config) { c.BindAddr = "127.0.0.1" },
		"fixed adv port":      func(c *Config) { c.AdvertiseAddr = "127.0.0.1:9999" },
		"negative probe":      func(c *Config) { c.ProbeInterval = -time.Second },
		"meta too large":      func(c *Config) { c.Peer = long },
		"secret key of 7":     func(c *Config) { c.SecretKey = []byte("1234567") },
		"advertise host name": func(c *Config) { c.AdvertiseAddr = "example.org:1" },
	} {
		cfg := testConfig("v", &recorder{}, &syncBuffer{})
		edit(&cfg)
		if c, err := Start(context.Background(), cfg); err == nil {
			c.Close()
			t.Errorf("%s: Start succeeded", name)
		} else if name == "meta too large" && !errors.Is(err, errMetaTooLarge) {
			t.Errorf("%s: err = %v, want errMetaTooLarge", name, err)
		}
	}
}

func TestAdvertiseAddrAndDefaults(t *testing.T) {
	t.Parallel()
	// A bare advertise IP keeps the bound port.
	a := startWith(t, "a", func(c *Config) {
		c.AdvertiseAddr = "127.0.0.1"
		c.RejoinInterval, c.ProbeInterval, c.TCPTimeout = 0, 0, 0 // defaults
	})
	if _, port, _ := net.SplitHostPort(a.Addr()); port == "0" {
		t.Fatalf("Addr() = %s, want the bound port", a.Addr())
	}
	if a.cfg.RejoinInterval != defaultRejoinInterval || a.cfg.ProbeInterval != LANProfile().ProbeInterval || a.cfg.TCPTimeout != defaultTCPTimeout {
		t.Fatalf("defaults not applied: %+v", a.cfg)
	}
	if a.Name() != "a" {
		t.Fatalf("Name() = %q", a.Name())
	}
	if v := a.View(); v.Epoch != 1 || len(v.Members) != 1 || v.Members[0].Addr != a.Addr() {
		t.Fatalf("lone node's view = %+v", v)
	}
}

// A goodbye goes to the gossip address in this node's own view, IPv4 or
// IPv6; an address that does not parse is an error, not a goodbye to
// nowhere.
func TestGoodbyeAddressesComeFromTheView(t *testing.T) {
	for addr, want := range map[string]string{"127.0.0.1:7946": "127.0.0.1:7946", "[::1]:7947": "[::1]:7947"} {
		n, err := memberlistNode(Member{Name: "b", Addr: addr})
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		if got := n.FullAddress(); got.Addr != want || got.Name != "b" {
			t.Fatalf("%s: goodbye to %+v, want %s", addr, got, want)
		}
	}
	if _, err := memberlistNode(Member{Name: "b", Addr: "nowhere"}); err == nil {
		t.Fatal("a member without a usable address got a goodbye address")
	}
}
