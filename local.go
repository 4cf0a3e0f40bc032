package tandem

import (
	"context"
	"fmt"
	"time"
)

// StartLocal starts a cluster of n nodes on loopback (LocalConfig), named node-1 … node-n,
// on free ports, and waits until every node is ready and all agree on the
// ring. tune, if not nil, adjusts each node's Config before it starts (i
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
// and all serve by the same ring of exactly these nodes, or ctx ends.
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
// themselves.
func converged(nodes []*Node) bool {
	var fingerprint uint64
	for i, node := range nodes {
		tab := node.replica.Table()
		if tab == nil || !(node.Ready() || node.Readiness().Reason == NotReadyWitness) || node.replica.Pending() > 0 || len(tab.Members()) != len(nodes) {
			return false
		}
		if i == 0 {
			fingerprint = tab.Fingerprint()
		} else if tab.Fingerprint() != fingerprint {
			return false
		}
	}
	return true
}
