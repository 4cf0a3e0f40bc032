package chaos

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"
)

func TestClusterCloseKillsEveryNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bin, err := BuildBinary(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartCluster(ctx, ClusterConfig{Binary: bin, Nodes: 2, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Cut(ctx, 0, 1); err != nil {
		t.Fatalf("control endpoint: %v", err)
	}
	if err := c.Heal(ctx, 0); err != nil {
		t.Fatalf("control endpoint: %v", err)
	}
	if err := c.Pause(1); err != nil {
		t.Fatal(err)
	}
	pids := []int{c.nodes[0].cmd.Process.Pid, c.nodes[1].cmd.Process.Pid}
	c.Close()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("node process %d still exists after Close (kill 0: %v)", pid, err)
		}
	}
	if err := c.StartNode(ctx, 0); err == nil {
		t.Error("a closed cluster started a node")
	}
}

// A full cut (peer traffic and gossip, both ways) between one node and the
// others makes each side's membership drop the other; healing merges the
// cluster back.
func TestFullCutSplitsMembership(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin, err := BuildBinary(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartCluster(ctx, ClusterConfig{Binary: bin, Nodes: 3, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	ringSize := func(i int) int {
		var st clusterStatus
		if err := c.get(ctx, c.nodes[i].HTTP, "/v1/cluster", &st); err != nil {
			return -1
		}
		return len(st.Partitions)
	}
	for _, o := range []int{1, 2} {
		if err := errors.Join(c.Cut(ctx, 0, o), c.Cut(ctx, o, 0)); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ringSize(1) != 2 || ringSize(2) != 2 || ringSize(0) != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("rings after a full cut: n1 %d, n2 %d, n3 %d members; want 1, 2, 2", ringSize(0), ringSize(1), ringSize(2))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 3 {
		if err := c.Heal(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatalf("after healing: %v", err)
	}
}
