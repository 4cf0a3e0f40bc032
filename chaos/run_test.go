package chaos

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestShortRealRunPasses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts node processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	rep, err := Run(ctx, Config{
		Nodes:    3,
		Profile:  "local", // quick failure detection keeps the test short
		Duration: 12 * time.Second,
		Seed:     3,
		// Quick kinds only (no restarts or splits), to keep the test
		// short; .ci/run's chaos run draws from every kind.
		Faults:    []FaultKind{FaultPartition, FaultOneWay, FaultIsolate, FaultDelay, FaultClock},
		MaxSkew:   500 * time.Millisecond,
		Workload:  WorkloadConfig{Clients: 4, Sessions: 8, MinIdle: time.Second, MaxIdle: 2 * time.Second, Client: 0.3, App: 0.2, Msgpack: 0.3},
		ReportDir: dir,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep.Summary())
	if rep.Verdict != "PASS" {
		t.Fatalf("verdict %s; nodes' logs in %s", rep.Verdict, filepath.Join(dir, "nodes"))
	}
	if len(rep.Faults) < 3 {
		t.Fatalf("only %d faults in 12s", len(rep.Faults))
	}
	if rep.Ops.ByOutcome[OK] < 100 {
		t.Fatalf("only %d requests answered", rep.Ops.ByOutcome[OK])
	}
	if rep.Ops.Smart < 100 || rep.Ops.App < 10 || rep.Ops.Posted == 0 || rep.Ops.ByKind[OpLogout] == 0 {
		t.Fatalf("%d requests through the smart client, %d through an app's session middleware, %d POST creates, %d logouts: want each sent", rep.Ops.Smart, rep.Ops.App, rep.Ops.Posted, rep.Ops.ByKind[OpLogout])
	}
	if len(rep.Warnings) > 0 {
		t.Fatalf("warnings: %v", rep.Warnings)
	}
	for _, f := range []string{"report.json", "report.html", "history.json"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}
