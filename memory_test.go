package tandem_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMemoryPerSession measures what a session costs a cluster: it writes
// sessions of 1 KiB of attributes into three nodes in this process and
// reads the live heap before and after (docs/OPERATIONS.md, "Sizing").
// It runs only when asked:
//
//	TANDEM_MEASURE_MEMORY=1 go test -run TestMemoryPerSession -count=1 -v .
//
// TANDEM_MEASURE_SESSIONS sets the number of sessions (default 20000).
func TestMemoryPerSession(t *testing.T) {
	if os.Getenv("TANDEM_MEASURE_MEMORY") != "1" {
		t.Skip("a measurement: set TANDEM_MEASURE_MEMORY=1 to run it")
	}
	sessions := 20000
	if v := os.Getenv("TANDEM_MEASURE_SESSIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("TANDEM_MEASURE_SESSIONS=%q", v)
		}
		sessions = n
	}
	nodes := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before, rssBefore := heap(), rss(t)
	filler := strings.Repeat("x", 1024-3-8)
	start := time.Now()
	for i := range sessions {
		id := fmt.Sprintf("memory-session-%08d", i)
		// 1 KiB encoded (a msgpack str 16 header and 1021 bytes), each
		// session's its own, as values that arrive in requests are: a
		// value shared by every session would count once.
		value := encode(t, fmt.Sprintf("%08d", i)+filler)
		if len(value) != 1024 {
			t.Fatalf("value of %d bytes", len(value))
		}
		if _, err := nodes[i%3].Put(ctx, id, "user-"+strconv.Itoa(i%1000), map[string][]byte{"v": value}); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	after, rssAfter := heap(), rss(t)
	copies := 0
	for _, n := range nodes {
		p, b := n.Count()
		copies += p + b
	}
	if copies != 2*sessions {
		t.Fatalf("%d copies of %d sessions, want two each", copies, sessions)
	}
	perSession := float64(after-before) / float64(sessions)
	t.Logf("%d sessions of 1 KiB written in %v: live heap %d → %d KiB, %.0f bytes per session (%.0f per copy, %d copies); RSS %d → %d MiB (%.0f bytes per session)",
		sessions, took.Round(time.Millisecond), before>>10, after>>10, perSession, perSession/2, copies, rssBefore>>20, rssAfter>>20, float64(rssAfter-rssBefore)/float64(sessions))
}

// rss reads this process's resident memory from /proc, 0 where there is
// none.
func rss(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	return 0
}
