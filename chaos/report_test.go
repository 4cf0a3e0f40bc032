package chaos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestReportRoundTripsAndRechecks(t *testing.T) {
	dir := t.TempDir()
	h := HistoryOf([]Op{
		put(0, "a", 1, 0, 1),
		put(1, "b", 2, 2, 3),
		final(get(2, "a", 1, 10, 10.1)),
	})
	events := []FaultEvent{{Fault: Fault{Kind: FaultPause, Node: 1, Peer: -1, Duration: sec(3)}, Start: sec(1), End: sec(4), Recovered: sec(5)}}
	v := Check(h, CheckConfig{})
	rep := newReport(Config{Seed: 9, Nodes: 3, Duration: 10 * time.Second, Faults: AllFaults, ReportDir: dir}, h, events, v, []string{"n2 slow to recover"}, sec(12), 0)
	if err := WriteReport(dir, rep, h); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"FAIL", "<svg", "lost-write", "pause n2"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	again, err := Recheck(dir, CheckConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if again.Verdict != "FAIL" || len(again.Anomalies) != len(rep.Anomalies) || again.Seed != 9 || len(again.Faults) != 1 {
		t.Fatalf("recheck gave %s with %d anomalies (seed %d, %d faults), want FAIL with %d", again.Verdict, len(again.Anomalies), again.Seed, len(again.Faults), len(rep.Anomalies))
	}
	if len(again.Warnings) != 1 || again.Warnings[0] != "n2 slow to recover" {
		t.Errorf("recheck warnings %q, want the run's own only", again.Warnings)
	}
	if !strings.Contains(rep.Summary(), "lost-write") {
		t.Errorf("summary lacks the anomaly:\n%s", rep.Summary())
	}
}
