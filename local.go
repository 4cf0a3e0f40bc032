package tandem

import (
	"context"
	"fmt"
	"time"
)

// StartLocal starts a cluster of n nodes on loopback (LocalConfig), named node-1 … node-n,
// on free ports, and waits until every node is ready and all agree on the
// ring (and, with Replica.Seats, on the seats: WaitConverged). tune, if not nil, adjusts each node's Config before it starts (i
// counts from 0). It is how `tandem dev` and tests get a cluster. On error,
// the nodes already started are stopped.
func StartLocal(ctx context.Context, n int, tune func(i int, cfg *Config)) ([]*Node, error) {
	var nodes []*Node
	fail := func(err error) ([]*Node, error) {
		for _, node := range nodes {
			node.Kill()
		}
		return nil, err
	}
	for i := range n {
		cfg := LocalConfig(fmt.Sprintf("node-%d", i+1))
		cfg.GossipAddr, cfg.PeerAddr = "127.0.0.1:0", "127.0.0.1:0"
		if i > 0 {
			cfg.Join = []string{nodes[0].GossipAddr()}
		}
		if tune != nil {
			tune(i, &cfg)
		}
		node, err := Start(ctx, cfg)
		if err != nil {
			return fail(fmt.Errorf("start local cluster: %w", err))
		}
		nodes = append(nodes, node)
	}
	if err := WaitConverged(ctx, nodes); err != nil {
		return fail(err)
	}
	return nodes, nil
}

// WaitConverged waits until every node is ready, has finished reconciling,
// and all serve by the same ring of exactly these nodes, or ctx ends. With
// Replica.Seats, it waits too until all know one config, holding the seats
// the policy keeps for these nodes (replica.SeatStatus.Settled).
func WaitConverged(ctx context.Context, nodes []*Node) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if converged(nodes) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d nodes to converge: %w", len(nodes), ctx.Err())
		case <-t.C:
		}
	}
}

// converged reports whether nodes are ready and share one ring of
// themselves and, with seats (Replica.Seats), one config of the seats
// the policy keeps for them. A node is ready once a seat has granted it,
// while a young cluster's seats still grow one at a time: until they
// have grown, a crash of the founder leaves the others without a
// majority of seats (TestTwoNodesAndAWitnessSurviveACrash).
func converged(nodes []*Node) bool {
	var fingerprint, version uint64
	for i, node := range nodes {
		tab := node.replica.Table()
		if tab == nil || !(node.Ready() || node.Readiness().Reason == NotReadyWitness) || node.replica.Pending() > 0 || len(tab.Members()) != len(nodes) {
			return false
		}
		seats := node.replica.SeatStatus()
		if seats.Running && !seats.Settled {
			return false
		}
		if i == 0 {
			fingerprint, version = tab.Fingerprint(), seats.Version
		} else if tab.Fingerprint() != fingerprint || seats.Version != version {
			return false
		}
	}
	return true
}
