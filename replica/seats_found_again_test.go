package replica

import (
	"testing"
	"time"
)

// Over the peer wire: node-0 founds alone; node-1 hears of that cluster
// from node-0's probe but cannot reach node-0 to recover; node-0 crashes
// and comes back as a new run ("z", after the first's ""), and founds
// again; the two agree (they did not, while a blank run's asks named the
// cluster it meant to join: node-0 left its new cluster on each).
func TestASeatClusterWhoseOnlySeatRestartedIsFoundedAgain(t *testing.T) {
	tune := func(c *Config) { c.Seats = 3 }
	c := newTestCluster(t, 0, nil)
	c.start("node-0", tune)
	c.publish()
	deadline := time.Now().Add(30 * time.Second)
	for !c.node("node-0").seatStatus().Active {
		if time.Now().After(deadline) {
			t.Fatal("node-0 did not found")
		}
		time.Sleep(10 * time.Millisecond)
	}
	A := c.node("node-0").seatStatus().Config.Cluster
	n1 := c.start("node-1", tune)
	n1.faults.Cut("node-0") // node-1's asks do not reach node-0; node-0's probes reach node-1
	c.publish()
	for c.node("node-1").seatStatus().Joining != A {
		if time.Now().After(deadline) {
			t.Fatalf("node-1 did not hear of %v: %+v", A, c.node("node-1").seatStatus())
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.restartTuned("z", tune, "node-0")
	n1.faults.HealAll()
	c.publish()
	end := time.Now().Add(30 * time.Second)
	for time.Now().Before(end) {
		if ok, _, _ := seatsAgree(c, func([]string) bool { return true }); ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	r := c.node("node-0").seats
	r.mu.Lock()
	restarts := r.restarts
	r.mu.Unlock()
	_, _, found := seatsAgree(c, func([]string) bool { return true })
	t.Errorf("no agreement in 30 s after node-0's restart: node-0's runner started %d runs after its first; node-1 joining %v; %s", restarts, c.node("node-1").seatStatus().Joining, found)
}
