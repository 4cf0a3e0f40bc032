package tandem_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tandem-io/tandem"
)

// startPair starts "server A and server B", with a witness beside them if
// witness is set, and returns the nodes (the witness last).
func startPair(t *testing.T, witness bool) []*tandem.Node {
	t.Helper()
	n := 2
	if witness {
		n = 3
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, n, func(i int, cfg *tandem.Config) { cfg.Witness = i == 2 })
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
// majority of the three members.
func TestTwoNodesAndAWitnessSurviveACrash(t *testing.T) {
	nodes := startPair(t, true)
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
				t.Fatalf("write to %s after A crashed: %v", id, err)
			}
		}
		s, err := b.Get(ctx, id)
		if err != nil || string(s.Attributes["after"]) != string(encode(t, true)) {
			t.Fatalf("read of %s after A crashed: %+v %v", id, s, err)
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
