//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-io/tandem/cmd/internal/serveproc"
)

// The tool measures a 3-node cluster end to end, with short windows: it
// prints one row and every node used some CPU. Idle, no node asks for a
// lease; under the session mix (-rate) every node renews its leases with
// both others and answers theirs.
func TestMeasuresAnIdleCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tandem and runs node processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin, err := serveproc.Build(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	measure := func(t *testing.T, extra ...string) result {
		jsonFile := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "-")+".json")
		var out, errOut bytes.Buffer
		start := time.Now()
		args := append([]string{"-members", "3", "-settle", "1s", "-measure", "2s", "-start-timeout", "30s",
			"-binary", bin, "-json", jsonFile, "-logs", filepath.Join(dir, "logs")}, extra...)
		err = run(ctx, append(args, "--", "-log-level", "warn"), &out, &errOut)
		t.Logf("took %v\n%s\n%s", time.Since(start), errOut.String(), out.String())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "| 3 | ") {
			t.Errorf("no row for 3 members in\n%s", out.String())
		}
		b, err := os.ReadFile(jsonFile)
		if err != nil {
			t.Fatal(err)
		}
		var rep report
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Runs) != 1 || rep.Profile == "" || rep.Version == "" || rep.ClockTicks <= 0 {
			t.Fatalf("report %s", b)
		}
		r := rep.Runs[0]
		if r.Members != 3 || len(r.Nodes) != 3 || r.WindowSeconds < 1.9 || r.WindowSeconds > 10 {
			t.Fatalf("run %+v", r)
		}
		// A node uses well under a core, and something: the cluster's
		// 2s window holds a few 10ms ticks at least.
		if r.ClusterCPU <= 0 || r.NodeCPUMax >= 100 || math.Abs(3*r.NodeCPU-r.ClusterCPU) > 1e-9 {
			t.Errorf("CPU: cluster %v %%, per node %v %%, max %v %%", r.ClusterCPU, r.NodeCPU, r.NodeCPUMax)
		}
		for _, n := range r.Nodes {
			if n.RingMembers != 3 || n.PID <= 0 {
				t.Errorf("node %+v", n)
			}
			if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(n.PID))); err == nil {
				t.Errorf("node %s (pid %d) still runs", n.Name, n.PID)
			}
		}
		return r
	}
	t.Run("idle", func(t *testing.T) {
		r := measure(t)
		if r.Sent["lease"] != 0 || r.Received["lease"] != 0 || r.Requests != 0 {
			t.Errorf("idle: lease requests per node per second: sent %v, received %v; mix requests %d", r.Sent["lease"], r.Received["lease"], r.Requests)
		}
	})
	t.Run("mix", func(t *testing.T) {
		r := measure(t, "-rate", "200")
		if r.Requests < 200 || r.Failed > 0 {
			t.Errorf("session mix: %d requests in 2s at 200/s, %d failed", r.Requests, r.Failed)
		}
		for _, n := range r.Nodes {
			if n.Sent["lease"] == 0 || n.Received["lease"] == 0 {
				t.Errorf("node %s serving the mix sent %d and received %d lease requests", n.Name, n.Sent["lease"], n.Received["lease"])
			}
		}
	})
}

func TestParseStat(t *testing.T) {
	line := []byte("4242 (tandem (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 150 37 0 0 20 0 12 0 123456 1234567 890 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n")
	got, err := parseStat(line)
	if err != nil || got != 187 {
		t.Fatalf("parseStat = %d, %v; want 150+37", got, err)
	}
	if _, err := parseStat([]byte("4242 (tandem) S 1")); err == nil {
		t.Fatal("short line parsed")
	}
	busy, err := parseProcStat([]byte("cpu  100 5 30 1000 7 2 3 4 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"))
	if err != nil || busy != 100+5+30+2+3+4 {
		t.Fatalf("parseProcStat = %d, %v", busy, err)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP tandem_peer_requests_sent_total Requests.
# TYPE tandem_peer_requests_sent_total counter
tandem_peer_requests_sent_total{method="lease"} 1234
tandem_peer_requests_sent_total{method="_other"} 2
tandem_ring_epoch{node="a b\"c"} 7
go_goroutines 33
process_resident_memory_bytes 2.1286912e+07
broken{method="x} 1
`
	got := map[string]float64{}
	for _, s := range parseMetrics(text) {
		got[s.name+"/"+s.labels["method"]+s.labels["node"]] = s.value
	}
	want := map[string]float64{"tandem_peer_requests_sent_total/lease": 1234, "tandem_peer_requests_sent_total/_other": 2,
		`tandem_ring_epoch/a b"c`: 7, "go_goroutines/": 33, "process_resident_memory_bytes/": 21286912}
	if len(got) != len(want) {
		t.Fatalf("parsed %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestBadCommandLines(t *testing.T) {
	for _, args := range [][]string{{"-members", "0"}, {"-members", "3,x"}, {"-measure", "0s"}, {"-settle", "-1s"}, {"-rate", "-1"}, {"-nope"}} {
		if err := run(context.Background(), args, &bytes.Buffer{}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "usage") {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
}
