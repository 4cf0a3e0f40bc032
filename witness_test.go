package tandem_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tandem-io/tandem"
)

// startPair starts "server A and server B", with a witness beside them if
// witness is set, and returns the nodes (the witness last).
func startPair(t *testing.T, witness bool) []*tandem.Node {
	t.Helper()
	return startPairSeated(t, witness, 0)
}

// startPairSeated is startPair with Replica.Seats set to seats on every
// node (0: the leases).
func startPairSeated(t *testing.T, witness bool, seats int) []*tandem.Node {
	t.Helper()
	n := 2
	if witness {
		n = 3
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, n, func(i int, cfg *tandem.Config) { cfg.Witness, cfg.Replica.Seats = i == 2, seats })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, node := range nodes {
			node.Kill()
		}
	})
	return nodes
}

// writeSessions writes n sessions through node and returns their ids.
func writeSessions(t *testing.T, node *tandem.Node, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("witness-session-%06d", i)
		if _, err := node.Put(context.Background(), id, "alice", map[string][]byte{"n": encode(t, i)}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// Two nodes and a witness: the witness holds nothing and is never ready
// (a balancer leaves it out), and either node's crash leaves the other
// serving every session, reads and writes, since it and the witness are a
// majority of the three members. With seats (Replica.Seats), the three
// are the seats, and B and the witness are a majority of them.
func TestTwoNodesAndAWitnessSurviveACrash(t *testing.T) {
	for _, seats := range []int{0, 3} {
		t.Run(fmt.Sprintf("seats=%d", seats), func(t *testing.T) { twoNodesAndAWitnessSurviveACrash(t, seats) })
	}
}

func twoNodesAndAWitnessSurviveACrash(t *testing.T, seats int) {
	nodes := startPairSeated(t, true, seats)
	a, b, w := nodes[0], nodes[1], nodes[2]
	if r := w.Readiness(); r.Ready || r.Reason != tandem.NotReadyWitness {
		t.Fatalf("the witness's readiness: %+v, want not ready, %q", r, tandem.NotReadyWitness)
	}
	ids := writeSessions(t, a, 50)
	if primary, buddy := w.Count(); primary+buddy != 0 {
		t.Fatalf("the witness holds %d+%d copies, want none", primary, buddy)
	}
	for _, id := range ids {
		p, bd, _, err := a.Owners(id)
		if err != nil || p.Name == w.Name() || bd.Name == w.Name() {
			t.Fatalf("owners of %s: %s, %s (%v): the witness owns nothing", id, p.Name, bd.Name, err)
		}
	}

	a.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, id := range ids {
		for {
			c, stop := context.WithTimeout(ctx, time.Second)
			_, err := b.Patch(c, id, map[string][]byte{"after": encode(t, true)}, nil)
			stop()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("write to %s after A crashed: %v\nB %+v\nW %+v", id, err, *b.Status().Seats, *w.Status().Seats)
			}
		}
		s, err := b.Get(ctx, id)
		if err != nil || string(s.Attributes["after"]) != string(encode(t, true)) {
			t.Fatalf("read of %s after A crashed: %+v %v", id, s, err)
		}
	}
}

// A seated cluster has converged only once its seats have grown: a node
// is ready as soon as the founder, the only seat at first, grants it, and
// the seats grow one at a time from there, so StartLocal (WaitConverged)
// waits until every node knows one config holding the seats the policy
// keeps, here all three members. Returning before, it left the founder
// the only seat, and its crash left the others no majority of seats.
func TestStartLocalWaitsForTheSeatsToGrow(t *testing.T) {
	nodes := startPairSeated(t, true, 3)
	want := []string{"node-1", "node-2", "node-3"}
	for _, n := range nodes {
		st := n.Status().Seats
		if st == nil || !slices.Equal(st.Seats, want) || st.Version != nodes[0].Status().Seats.Version {
			t.Fatalf("%s, once the cluster converged, knows seats %+v; want %v, the same config on every node", n.Name(), st, want)
		}
	}
}

// Two nodes alone: the survivor of a crash cannot tell it from a network
// cut, and one of two is no majority, so it serves nothing rather than
// risk both sides acknowledging writes.
func TestTwoNodesAloneStopOnACrash(t *testing.T) {
	nodes := startPair(t, false)
	a, b := nodes[0], nodes[1]
	ids := writeSessions(t, a, 5)
	a.Kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := b.Peek(c, ids[0])
		cancel()
		if errors.Is(err, tandem.ErrUnavailable) && b.Readiness().Reason == tandem.NotReadyTooFewMembers {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the survivor of two still answers (%v, %+v) 30s after the crash", err, b.Readiness())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Server A restarted while server B is down, beside a witness that has
// served with them: A must not take the sessions for a new cluster's and
// serve them empty without a word. Its hand-offs find no holder (the
// witness holds nothing, and is not new), give up after HandoffTimeout,
// and the loss is reported: both owners failed, the one loss the
// guarantees allow, and never a silent one.
func TestAServerRestartedWhileTheOtherIsDownReportsTheLoss(t *testing.T) {
	const handoff = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, 3, func(i int, cfg *tandem.Config) {
		cfg.Witness = i == 2
		cfg.Replica.HandoffTimeout = handoff
	})
	if err != nil {
		t.Fatal(err)
	}
	a, b, w := nodes[0], nodes[1], nodes[2]
	t.Cleanup(w.Kill)
	ids := writeSessions(t, a, 20)
	time.Sleep(handoff) // the witness has served longer than a hand-off: it is no new cluster's
	a.Kill()
	b.Kill()
	// A comes back once the witness has declared both dead: its first ring
	// is itself and the witness.
	deadline := time.Now().Add(20 * time.Second)
	for alive := 1; alive > 0; {
		alive = 0
		for _, m := range w.Status().Members {
			if (m.Name == a.Name() || m.Name == b.Name()) && m.Health != "dead" {
				alive++
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the witness still sees the servers: %+v", w.Status().Members)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cfg := tandem.LocalConfig(a.Name())
	cfg.GossipAddr, cfg.PeerAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Join = []string{w.GossipAddr()}
	cfg.Replica.HandoffTimeout = handoff
	again, err := tandem.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(again.Kill)
	deadline = time.Now().Add(20 * time.Second)
	for len(again.Status().Lost.Partitions) == 0 {
		if time.Now().After(deadline) {
			s, err := again.Get(ctx, ids[0])
			t.Fatalf("server A, restarted beside the witness with B down, reports no loss; a read of %s: %v, %v", ids[0], s, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, id := range ids {
		if s, err := again.Get(ctx, id); err == nil {
			t.Fatalf("%s served after both servers failed: %+v", id, s)
		}
	}
}
