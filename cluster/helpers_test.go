package cluster

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-io/tandem/ring"
)

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// recorder keeps every view OnChange delivered.
type recorder struct {
	mu    sync.Mutex
	views []View
}

// onChange is the OnChange callback.
func (r *recorder) onChange(v View) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.views = append(r.views, v)
}

// all returns the views delivered so far.
func (r *recorder) all() []View {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.views)
}

// node is a started Cluster with its recorded views and logs.
type node struct {
	*Cluster
	rec  *recorder
	logs *syncBuffer
}

// waitFor polls cond every 10ms until it holds, failing the test if it does
// not within timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testConfig returns a config for a loopback node on a free port, logging
// at debug level into logs and recording views into rec.
func testConfig(name string, rec *recorder, logs *syncBuffer, seeds ...string) Config {
	cfg := DefaultConfig(name)
	LocalProfile().Apply(&cfg)
	cfg.BindAddr = "127.0.0.1:0"
	cfg.Seeds = seeds
	cfg.Peer = name + ".peer:7000"
	cfg.HTTP = name + ".http:8080"
	cfg.PushPullInterval = time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.OnChange = rec.onChange
	return cfg
}

// startNode starts a node named name that joins seeds; see startConfig.
func startNode(t *testing.T, name string, seeds ...string) *node {
	t.Helper()
	return startWith(t, name, func(*Config) {}, seeds...)
}

// startWith starts a node from testConfig as changed by edit, closing it
// when the test ends and printing the tail of its logs if the test failed.
func startWith(t *testing.T, name string, edit func(*Config), seeds ...string) *node {
	t.Helper()
	n, err := tryStart(t, name, edit, seeds...)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	return n
}

// tryStart is startWith returning Start's error instead of failing.
func tryStart(t *testing.T, name string, edit func(*Config), seeds ...string) (*node, error) {
	t.Helper()
	n := &node{rec: &recorder{}, logs: &syncBuffer{}}
	cfg := testConfig(name, n.rec, n.logs, seeds...)
	edit(&cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t.Cleanup(func() {
		if t.Failed() {
			logs := n.logs.String()
			if len(logs) > 8000 {
				logs = "…" + logs[len(logs)-8000:]
			}
			t.Logf("logs of %s:\n%s", name, logs)
		}
	})
	c, err := Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	n.Cluster = c
	t.Cleanup(func() { _ = c.Close() })
	return n, nil
}

// ringNames returns the names of v.Ring().
func ringNames(v View) []string {
	var out []string
	for _, m := range v.Ring() {
		out = append(out, m.Name)
	}
	return out
}

// hasRing reports whether n's ring is exactly names.
func hasRing(n *node, names ...string) func() bool {
	return func() bool { return slices.Equal(ringNames(n.View()), names) }
}

// wantRing checks that members are names with test addresses, each with
// its own incarnation.
func wantRing(t *testing.T, got []ring.Member, names ...string) {
	t.Helper()
	var want []ring.Member
	for _, n := range names {
		want = append(want, ring.Member{Name: n, Peer: n + ".peer:7000", HTTP: n + ".http:8080"})
	}
	boots := map[string]bool{}
	anon := slices.Clone(got)
	for i, m := range anon {
		if m.Incarnation == "" || boots[m.Incarnation] {
			t.Fatalf("ring = %v: member %s has no incarnation of its own", got, m.Name)
		}
		boots[m.Incarnation] = true
		anon[i].Incarnation = ""
	}
	if !slices.Equal(anon, want) {
		t.Fatalf("ring = %v, want %v", anon, want)
	}
}

// member returns the member called name, if the view knows it.
func (v View) member(name string) (Member, bool) {
	i, ok := slices.BinarySearchFunc(v.Members, name, func(m Member, n string) int { return strings.Compare(m.Name, n) })
	if !ok {
		return Member{}, false
	}
	return v.Members[i], true
}

// startOnFreePort starts a node bound to a fixed free port on 127.0.0.1,
// whose seeds may name that address; it retries if another test took the
// port first.
func startOnFreePort(t *testing.T, name string, seeds func(self string) []string) *node {
	t.Helper()
	for range 10 {
		self := net.JoinHostPort("127.0.0.1", freePort(t))
		n, err := tryStart(t, name, func(c *Config) { c.BindAddr = self }, seeds(self)...)
		if err == nil {
			return n
		}
		if !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("start %s: %v", name, err)
		}
	}
	t.Fatalf("start %s: no free port", name)
	return nil
}

// freePort returns a port that was free on 127.0.0.1 for both TCP and UDP a
// moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", port))
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return ""
}
