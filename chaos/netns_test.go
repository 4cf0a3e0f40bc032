//go:build linux

package chaos

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// In network namespaces, a cut is made outside the processes: after
// Cut(0, 1), a connection from n1's namespace to n2's peer port is never
// answered (its packets vanish at n2: the dial times out, it is not
// refused), while the other way and the other nodes still connect; after
// Heal(0) it connects again, and the cluster is healthy. Runs only as
// root with TANDEM_E2E=1, as CI does.
func TestNetnsCutsArePacketsThatVanish(t *testing.T) {
	if os.Getenv("TANDEM_E2E") != "1" || testing.Short() {
		t.Skip("network-namespace suite: runs with TANDEM_E2E=1, as root (ip and nft)")
	}
	if err := NetnsAvailable(); err != nil {
		t.Fatalf("TANDEM_E2E=1 but: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin, err := BuildBinary(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartCluster(ctx, ClusterConfig{Binary: bin, Nodes: 3, Dir: t.TempDir(), Profile: "local", Network: NetworkNetns})
	if err != nil {
		t.Fatal(err)
	}
	prefix := c.net.prefix
	defer func() {
		c.Close()
		out, _ := exec.Command("ip", "netns", "list").Output()
		if strings.Contains(string(out), prefix) {
			t.Errorf("namespaces left after Close:\n%s", out)
		}
	}()
	if c.Network() != NetworkNetns || !strings.HasPrefix(c.Node(1).Peer, "10.79.0.2:") {
		t.Fatalf("network %s, n2's peer address %s", c.Network(), c.Node(1).Peer)
	}
	connects := func(from, to int) error {
		dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		conn, err := c.net.dialNode(from)(dctx, "tcp", c.Node(to).Peer)
		if err == nil {
			conn.Close()
		}
		return err
	}
	if err := connects(0, 1); err != nil {
		t.Fatalf("n1 to n2 before the cut: %v", err)
	}
	if err := c.Cut(ctx, 0, 1); err != nil {
		t.Fatal(err)
	}
	err = connects(0, 1)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("n1 to n2 across the cut: %v; want a dial that times out", err)
	}
	if err := connects(1, 0); err != nil {
		// n2's SYN reaches n1, but n1's SYN-ACK vanishes at n2: one-way
		// cuts break TCP both ways, as on a real network.
		t.Logf("n2 to n1 across a one-way cut: %v", err)
	}
	if err := connects(0, 2); err != nil {
		t.Fatalf("n1 to n3, not cut: %v", err)
	}
	if err := c.Heal(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := connects(0, 1); err != nil {
		t.Fatalf("n1 to n2 after the heal: %v", err)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
}
