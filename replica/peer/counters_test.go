package peer

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// counts returns a snapshot as method → [sent, received].
func counts(c *Counters) map[string][2]uint64 {
	out := map[string][2]uint64{}
	for _, m := range c.Snapshot() {
		out[m.Method] = [2]uint64{m.Sent, m.Received}
	}
	return out
}

// Every request written is counted by the client, every request read by
// the server, per method, whether the handler answers or refuses it; a
// call that never reaches the wire is not counted.
func TestCountersCountRequestsByMethod(t *testing.T) {
	var sc, cc Counters
	ts := startServer(t, testHandler, ServerConfig{Counters: &sc}, "127.0.0.1:0")
	c := newClient(t, ClientConfig{Counters: &cc})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 25 {
				var sum int
				if err := c.Call(ctx, ts.addr, "add", addArgs{1, 2}, &sum); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for range 3 {
		if err := c.Call(ctx, ts.addr, "not_found", nil, nil); err == nil {
			t.Fatal("not_found answered")
		}
	}
	// Args too large never reach the wire.
	small := newClient(t, ClientConfig{Counters: &cc, MaxFrameSize: 64})
	if err := small.Call(ctx, ts.addr, "echo", strings.Repeat("x", 100), nil); err == nil {
		t.Fatal("oversized args sent")
	}

	want := map[string][2]uint64{"add": {200, 0}, "not_found": {3, 0}}
	if got := counts(&cc); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("client counts %v, want %v", got, want)
	}
	// The server counts a request when it reads it, before the reply
	// reaches the client, so every reply received means it is counted.
	want = map[string][2]uint64{"add": {0, 200}, "not_found": {0, 3}}
	if got := counts(&sc); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("server counts %v, want %v", got, want)
	}
}

// A config without Counters counts into the process's.
func TestCountersDefaultToTheProcess(t *testing.T) {
	ts := startServer(t, testHandler, ServerConfig{}, "127.0.0.1:0")
	c := newClient(t, ClientConfig{})
	before := counts(ProcessCounters())["echo"]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Call(ctx, ts.addr, "echo", 1, nil); err != nil {
		t.Fatal(err)
	}
	after := counts(ProcessCounters())["echo"]
	// Other tests of the package may run in parallel and count too.
	if after[0] < before[0]+1 || after[1] < before[1]+1 {
		t.Errorf("process counts of echo went from %v to %v, want each up by at least 1", before, after)
	}
}

// Names that do not look like a method, and methods beyond the bound,
// are counted as OtherMethod, so a caller cannot grow the set.
func TestCountersBoundTheMethodNames(t *testing.T) {
	var c Counters
	for _, bad := range []string{"", "1lease", "_other", "lease\n", "lease{x=\"y\"}", strings.Repeat("a", 33), "lease\xff"} {
		c.received(bad)
	}
	for i := range maxCountedMethods + 10 {
		c.sent(fmt.Sprintf("m%03d", i))
	}
	c.sent("m000")
	got := c.Snapshot()
	if len(got) != maxCountedMethods+1 {
		t.Fatalf("%d methods counted, want %d and %s", len(got), maxCountedMethods, OtherMethod)
	}
	if got[0] != (MethodCount{Method: "m000", Sent: 2}) {
		t.Errorf("first count %+v, want m000 sent twice", got[0])
	}
	if last := got[len(got)-1]; last != (MethodCount{Method: OtherMethod, Sent: 10, Received: 7}) {
		t.Errorf("last count %+v, want %s with 10 sent and 7 received", last, OtherMethod)
	}
	for _, ok := range []string{"lease", "Ring", "a.b-c_1", strings.Repeat("a", 32)} {
		if !countableMethod(ok) {
			t.Errorf("%q not countable", ok)
		}
	}
}

// Counting a known method costs no allocation.
func TestCountingAllocatesNothing(t *testing.T) {
	var c Counters
	c.sent("lease")
	if n := testing.AllocsPerRun(100, func() { c.sent("lease"); c.received("lease") }); n != 0 {
		t.Errorf("%v allocations per count, want 0", n)
	}
}

func BenchmarkCountersParallel(b *testing.B) {
	var c Counters
	methods := []string{"lease", "replicate", "op", "read", "touch"}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.sent(methods[i%len(methods)])
			i++
		}
	})
}
