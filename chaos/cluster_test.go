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
