package tandem

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// startThree starts a local 3-node cluster, bounded by a minute, and kills
// whatever nodes the slice holds when the test ends.
func startThree(t *testing.T) (context.Context, []*Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	nodes, err := StartLocal(ctx, 3, nil)
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

// A node restarted under its name with empty memory reports ready only once
// it holds every session it is primary of — never before, however its
// membership view arrives.
func TestRejoinedNodeIsReadyOnlyWhenItHoldsItsSessions(t *testing.T) {
	ctx, nodes := startThree(t)
	const sessions = 3000
	for i := range sessions {
		if _, err := nodes[i%3].Put(ctx, fmt.Sprintf("rejoin-session-%06d", i), "", nil); err != nil {
			t.Fatal(err)
		}
	}
	name := nodes[0].Name()
	nodes[0].Kill()
	if err := WaitConverged(ctx, nodes[1:]); err != nil {
		t.Fatal(err)
	}
	cfg := LocalConfig(name)
	cfg.GossipAddr, cfg.PeerAddr, cfg.Join = "127.0.0.1:0", "127.0.0.1:0", []string{nodes[1].GossipAddr()}
	back, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	nodes[0] = back
	for !back.Ready() {
		if ctx.Err() != nil {
			t.Fatal("never ready")
		}
		time.Sleep(time.Millisecond)
	}
	held, _ := back.replica.Count()
	want := 0
	for i := range sessions {
		if p, _, _, _ := back.Owners(fmt.Sprintf("rejoin-session-%06d", i)); p.Name == name {
			want++
		}
	}
	if want == 0 || held < want {
		t.Fatalf("ready while holding %d of the %d sessions it is primary of", held, want)
	}
}

// A node restarted on new addresses before the others noticed its old
// incarnation die reports ready only once they serve by a ring that holds
// it at its new address.
func TestRestartOnNewAddressesIsReadyOnlyWhenOthersAgree(t *testing.T) {
	ctx, nodes := startThree(t)
	name := nodes[0].Name()
	nodes[0].Kill()
	cfg := LocalConfig(name)
	cfg.GossipAddr, cfg.PeerAddr, cfg.Join = "127.0.0.1:0", "127.0.0.1:0", []string{nodes[1].GossipAddr()}
	back, err := Start(ctx, cfg) // at once: the others still list the old incarnation
	if err != nil {
		t.Fatal(err)
	}
	nodes[0] = back
	for !back.Ready() {
		if ctx.Err() != nil {
			t.Fatal("never ready")
		}
		time.Sleep(time.Millisecond)
	}
	for _, other := range nodes[1:] {
		m, ok := other.replica.Table().Member(name)
		if !ok || m.Peer != back.PeerAddr() {
			t.Fatalf("%s reported ready while %s's ring has it as %+v (present %v), not at %s", name, other.Name(), m, ok, back.PeerAddr())
		}
	}
}

// A node killed and started again at once under its name, on the same
// addresses and empty — before the failure detector notices — never
// answers for its sessions from its empty memory.
func TestImmediateRestartServesNoEmptyCopy(t *testing.T) {
	ctx, nodes := startThree(t)
	const sessions = 600
	want := map[string]uint64{}
	for i := range sessions {
		id := fmt.Sprintf("instant-session-%06d", i)
		s, err := nodes[i%3].Put(ctx, id, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		want[id] = s.Version
	}
	old := nodes[0]
	cfg := LocalConfig(old.Name())
	cfg.GossipAddr, cfg.PeerAddr, cfg.Join = old.GossipAddr(), old.PeerAddr(), []string{nodes[1].GossipAddr()}
	old.Kill()
	back, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	nodes[0] = back
	for _, n := range []*Node{back, nodes[1], nodes[2]} {
		for id, v := range want {
			s, err := n.Peek(ctx, id)
			if err != nil || s.Version != v {
				t.Fatalf("%s through %s right after the restart: %+v %v, want v%d", id, n.Name(), s, err, v)
			}
		}
	}
}
