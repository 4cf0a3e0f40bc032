package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
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
	c := startTestCluster(ctx, t, 2)
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
// others makes each side's membership drop the other; the smaller side
// serves nothing (it is below -min-members), the larger carries on, and
// after the heal every node serves what the larger side acknowledged.
func TestFullCutSplitsMembership(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := startTestCluster(ctx, t, 3)
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
	const id = "split-test-session-1"
	if v, code := putSession(t, c.nodes[0].HTTP, id, "before"); code != http.StatusCreated || v != 1 {
		t.Fatalf("put before the cut: %d, v%d", code, v)
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
	// The majority side (2 of 3, -min-members 2) carries on; the node cut
	// off serves nothing, neither the old copy nor a write of its own.
	if v, code := putSession(t, c.nodes[1].HTTP, id, "during"); code != http.StatusOK || v != 2 {
		t.Fatalf("put on the majority side: %d, v%d", code, v)
	}
	if v, code := getSession(t, c.nodes[0].HTTP, id); code != http.StatusServiceUnavailable {
		t.Fatalf("read through the node cut off: %d (v%d), want 503", code, v)
	}
	if _, code := putSession(t, c.nodes[0].HTTP, id, "alone"); code != http.StatusServiceUnavailable {
		t.Fatalf("write through the node cut off: %d, want 503", code)
	}
	if c.get(ctx, c.nodes[0].HTTP, "/readyz", nil) == nil {
		t.Fatal("the node cut off reports ready")
	}
	for i := range 3 {
		if err := c.Heal(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatalf("after healing: %v", err)
	}
	for i := range 3 {
		if v, code := getSession(t, c.nodes[i].HTTP, id); code != http.StatusOK || v != 2 {
			t.Fatalf("read through n%d after the heal: %d, v%d; want v2", i+1, code, v)
		}
	}
}

// startTestCluster builds the tandem binary and starts nodes processes
// of it, with the harness's defaults but the local profile's quick
// failure detection.
func startTestCluster(ctx context.Context, t *testing.T, nodes int) *Cluster {
	t.Helper()
	bin, err := BuildBinary(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartCluster(ctx, ClusterConfig{Binary: bin, Nodes: nodes, Dir: t.TempDir(), Profile: "local"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// putSession puts session id with one attribute through the node at addr
// and returns the version answered and the status.
func putSession(t *testing.T, addr, id, value string) (uint64, int) {
	t.Helper()
	body := fmt.Sprintf(`{"principal":"split","attributes":{"at":%q}}`, value)
	req, err := http.NewRequest(http.MethodPut, "http://"+addr+"/v1/sessions/"+id, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return doSession(t, req)
}

// getSession reads session id through the node at addr.
func getSession(t *testing.T, addr, id string) (uint64, int) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/sessions/"+id+"?touch=false", nil)
	if err != nil {
		t.Fatal(err)
	}
	return doSession(t, req)
}

// doSession sends a session request, bounded at 10 s, and returns the
// version answered (0 if none) and the status.
func doSession(t *testing.T, req *http.Request) (uint64, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	var s struct {
		Version uint64 `json:"version"`
	}
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated {
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatalf("%s %s: %v", req.Method, req.URL, err)
		}
	}
	return s.Version, resp.StatusCode
}
