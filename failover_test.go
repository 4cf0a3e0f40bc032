package tandem

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tandem-io/tandem/cluster"
)

// startLAN starts n nodes on loopback with the failure detector timed for a
// real network (DefaultConfig's), as `tandem serve` runs them.
func startLAN(t *testing.T, n int) (context.Context, []*Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	nodes, err := StartLocal(ctx, n, func(_ int, cfg *Config) { cluster.LANProfile().Apply(&cfg.Cluster) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Kill()
		}
	})
	return ctx, nodes
}

// With the LAN failure detector, which takes seconds to declare a crash, a
// write to a session whose primary crashed succeeds well before that: the
// survivors find the primary's peer port refusing connections and move its
// partitions at once. The crashed node is still listed alive by membership
// when the write succeeds.
func TestWritesFailOverOnARefusedConnection(t *testing.T) {
	ctx, nodes := startLAN(t, 3)
	var id string
	for i := 0; ; i++ {
		id = fmt.Sprintf("early-failover-%06d", i)
		if p, _, _, _ := nodes[1].Owners(id); p.Name == nodes[0].Name() {
			break
		}
	}
	if _, err := nodes[1].Put(ctx, id, "alice", map[string][]byte{"n": {0x01}}); err != nil {
		t.Fatal(err)
	}
	victim := nodes[0].Name()
	nodes[0].Kill()
	crash := time.Now()
	var wrote time.Duration
	for {
		c, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
		_, err := nodes[1].Patch(c, id, map[string][]byte{"n": {0x02}}, nil)
		cancel()
		if err == nil {
			wrote = time.Since(crash)
			break
		}
		if time.Since(crash) > 4*time.Second {
			t.Fatalf("no write within 4s of the crash: %v", err)
		}
	}
	alive := false
	for _, m := range nodes[1].Status().Members {
		alive = alive || m.Name == victim && m.Health == "alive"
	}
	if !alive {
		t.Fatalf("membership declared %s dead within %v: the test shows nothing about early failover", victim, wrote)
	}
	if nodes[1].Stats().PeerWireDowns+nodes[2].Stats().PeerWireDowns == 0 {
		t.Fatal("no node took the crashed member out on evidence")
	}
	s, err := nodes[2].Peek(ctx, id)
	if err != nil || string(s.Attributes["n"]) != string([]byte{0x02}) {
		t.Fatalf("read after the failover: %+v %v", s, err)
	}
	t.Logf("write succeeded %v after the crash, %s still alive in membership", wrote, victim)
}

// A paused or hung node refuses nothing: its peer port accepts connections
// and nothing is taken out on evidence.
func TestAcceptedConnectionIsNoEvidence(t *testing.T) {
	_, nodes := startLAN(t, 3)
	target, _ := nodes[1].memberByName(nodes[0].Name())
	nodes[1].checkDown(target, true)
	if nodes[1].downs.Load() != 0 {
		t.Fatal("a live member was taken out")
	}
	if got := len(nodes[1].replica.Table().Members()); got != 3 {
		t.Fatalf("ring of %d after checking a live member", got)
	}
}

// A member told of a down member checks for itself: a false report (the
// member's port accepts connections) changes nothing.
func TestDownReportsAreChecked(t *testing.T) {
	ctx, nodes := startLAN(t, 3)
	m, _ := nodes[2].memberByName(nodes[0].Name())
	var reply struct{}
	err := nodes[1].client.Call(ctx, nodes[2].PeerAddr(), methodDown, downRequest{Name: m.Name, BootID: m.Meta.BootID}, &reply)
	if err != nil {
		t.Fatal(err)
	}
	if nodes[2].downs.Load() != 0 || len(nodes[2].replica.Table().Members()) != 3 {
		t.Fatal("a false report took a live member out")
	}
}
