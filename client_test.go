package tandem_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/ring"
)

// dial returns a client of the cluster nodes belong to, seeded with the
// first node only, closed when the test ends.
func dial(t *testing.T, nodes []*tandem.Node, cfg tandem.ClientConfig) *tandem.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tandem.Dial(ctx, []string{nodes[0].PeerAddr()}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// forwarded sums the requests nodes forwarded to a primary.
func forwarded(nodes []*tandem.Node) uint64 {
	var n uint64
	for _, node := range nodes {
		n += node.Stats().Forwarded
	}
	return n
}

// waitRing polls until the client's ring has n members.
func waitRing(t *testing.T, c *tandem.Client, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(c.Ring().Members()) != n {
		if time.Now().After(deadline) {
			t.Fatalf("client ring has %d members after %v, want %d", len(c.Ring().Members()), timeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClientSendsEveryRequestStraightToThePrimary(t *testing.T) {
	nodes := startCluster(t, 3)
	c := dial(t, nodes, tandem.ClientConfig{})
	ctx := context.Background()
	if got := len(c.Ring().Members()); got != 3 {
		t.Fatalf("client learned %d members from one seed", got)
	}

	fwd, wr := forwarded(nodes), writes(nodes)
	ids := make([]string, 300)
	for i := range ids {
		ids[i] = fmt.Sprintf("client-session-%06d", i)
		if _, err := c.Put(ctx, ids[i], "user", map[string][]byte{"i": encode(t, i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range ids {
		s, err := c.Get(ctx, id)
		if err != nil || string(s.Attributes["i"]) != string(encode(t, i)) || s.Principal != "user" {
			t.Fatalf("get %s: %+v %v", id, s, err)
		}
		if s, err = c.Patch(ctx, id, map[string][]byte{"j": encode(t, i)}, []string{"i"}); err != nil || s.Version != 2 || len(s.Attributes) != 1 {
			t.Fatalf("patch %s: %+v %v", id, s, err)
		}
	}
	if _, err := c.SetPrincipal(ctx, ids[0], "other"); err != nil {
		t.Fatal(err)
	}
	if err := c.Touch(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, ids[2]); err != nil {
		t.Fatal(err)
	}
	if got := forwarded(nodes) - fwd; got != 0 {
		t.Fatalf("nodes forwarded %d of the client's requests", got)
	}
	if got := writes(nodes) - wr; got != 2*300+2 {
		t.Fatalf("primaries acknowledged %d writes, want %d", got, 2*300+2)
	}
	for _, node := range nodes {
		if node.Stats().Writes == 0 {
			t.Fatalf("%s was primary of none of 300 sessions", node.Name())
		}
	}
	if s, err := nodes[1].Peek(ctx, ids[0]); err != nil || s.Principal != "other" || s.Version != 3 {
		t.Fatalf("read through a node: %+v %v", s, err)
	}

	// Errors come back as the node's sentinels.
	cases := []struct {
		name string
		do   func() error
		want error
	}{
		{"unknown", func() error { _, err := c.Peek(ctx, "no-such-session-0001"); return err }, tandem.ErrNotFound},
		{"deleted", func() error { _, err := c.Get(ctx, ids[2]); return err }, tandem.ErrNotFound},
		{"bad id", func() error { _, err := c.Get(ctx, "bad id"); return err }, tandem.ErrInvalid},
		{"bad value", func() error { _, err := c.Patch(ctx, ids[3], map[string][]byte{"x": {0xc1}}, nil); return err }, tandem.ErrInvalid},
		{"conflict", func() error {
			_, err := c.Do(ctx, &tandem.Op{Kind: tandem.OpPut, ID: ids[3], IfVersion: 99})
			return err
		}, tandem.ErrConflict},
		{"exists", func() error {
			_, err := c.Do(ctx, &tandem.Op{Kind: tandem.OpPut, ID: ids[3], IfAbsent: true})
			return err
		}, tandem.ErrConflict},
		{"too large", func() error {
			_, err := c.Put(ctx, ids[3], "", map[string][]byte{"big": encode(t, make([]byte, 2<<20))})
			return err
		}, tandem.ErrTooLarge},
		{"patch missing", func() error { _, err := c.Patch(ctx, "no-such-session-0001", nil, []string{"a"}); return err }, tandem.ErrNotFound},
	}
	for _, tc := range cases {
		if err := tc.do(); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestClientReadsThroughTheBuddyAndWritesAfterFailover(t *testing.T) {
	nodes := startCluster(t, 3)
	c := dial(t, nodes, tandem.ClientConfig{})
	ctx := context.Background()
	victim := nodes[1]
	var ids []string // sessions whose primary is the victim
	for i := 0; len(ids) < 50; i++ {
		id := fmt.Sprintf("failover-session-%06d", i)
		if _, err := c.Put(ctx, id, "", map[string][]byte{"n": encode(t, i)}); err != nil {
			t.Fatal(err)
		}
		if p, _, _, _ := nodes[0].Owners(id); p.Name == victim.Name() {
			ids = append(ids, id)
		}
	}

	victim.Kill()
	survivors := []*tandem.Node{nodes[0], nodes[2]}
	// At once, before membership notices: every read is served by a buddy.
	start := time.Now()
	for _, id := range ids {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		s, err := c.Get(rctx, id)
		cancel()
		if err != nil || s.Version != 1 {
			t.Fatalf("read %s right after its primary died: %+v %v", id, s, err)
		}
	}
	t.Logf("%d reads through buddies in %v", len(ids), time.Since(start))
	if _, err := c.Peek(ctx, "never-written-000001"); !errors.Is(err, tandem.ErrNotFound) {
		t.Fatalf("unknown session through a buddy: %v", err)
	}

	// Writes succeed once the buddies are promoted.
	for _, id := range ids {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		s, err := c.Patch(wctx, id, map[string][]byte{"after": encode(t, true)}, nil)
		cancel()
		if err != nil || s.Version != 2 {
			t.Fatalf("write %s after failover: %+v %v", id, s, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := tandem.WaitConverged(wctx, survivors); err != nil {
		t.Fatal(err)
	}
	waitRing(t, c, 2, 10*time.Second)
	for _, id := range ids {
		if s, err := survivors[0].Peek(ctx, id); err != nil || s.Version != 2 {
			t.Fatalf("%s on the survivors: %+v %v", id, s, err)
		}
	}
}

func TestClientLearnsAJoiningNode(t *testing.T) {
	nodes := startCluster(t, 2)
	c := dial(t, nodes, tandem.ClientConfig{RefreshInterval: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cfg := tandem.LocalConfig("node-3")
	cfg.GossipAddr, cfg.PeerAddr, cfg.Join = "127.0.0.1:0", "127.0.0.1:0", []string{nodes[0].GossipAddr()}
	joined, err := tandem.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(joined.Kill)
	nodes = append(nodes, joined)
	if err := tandem.WaitConverged(ctx, nodes); err != nil {
		t.Fatal(err)
	}
	waitRing(t, c, 3, 10*time.Second)
	if !slices.ContainsFunc(c.Ring().Members(), func(m ring.Member) bool { return m.Name == "node-3" }) {
		t.Fatalf("client ring %v lacks node-3", c.Ring().Members())
	}

	fwd := forwarded(nodes)
	for i := range 100 {
		if _, err := c.Put(ctx, fmt.Sprintf("joined-session-%06d", i), "", nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := forwarded(nodes) - fwd; got != 0 {
		t.Fatalf("nodes forwarded %d requests after the client learned the ring", got)
	}
	if joined.Stats().Writes == 0 {
		t.Fatal("the joined node was primary of none of 100 sessions")
	}
}

func TestDialNeedsAReachableSeed(t *testing.T) {
	if _, err := tandem.Dial(context.Background(), nil, tandem.ClientConfig{}); !errors.Is(err, tandem.ErrInvalid) {
		t.Fatalf("dial without seeds: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := tandem.Dial(ctx, []string{"127.0.0.1:1"}, tandem.ClientConfig{}); !errors.Is(err, tandem.ErrUnavailable) {
		t.Fatalf("dial a dead seed: %v", err)
	}
}
