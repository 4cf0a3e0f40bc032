package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-io/tandem/cmd/internal/cli"
)

// TestMain lets the test binary act as the tandem command, so tests can
// start real node processes and kill them.
func TestMain(m *testing.M) {
	if os.Getenv("TANDEM_TEST_AS_COMMAND") == "1" {
		if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "tandem:", err)
			os.Exit(exitStatus(err))
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// handedOut holds the ports freePort has returned in this test binary.
var handedOut sync.Map

// freePort returns a loopback port free for TCP and UDP at the time of the
// call. It picks below the kernel's ephemeral range (32768 and up by
// default), so an outgoing connection can never take the port of a node
// that is down and about to restart on it, and from 20000 to 27999, apart
// from the ports of the suites that run at the same time: the chaos
// harness's (below 20000) and cmd/tandem-demo's (28000 to 31999).
// A port is handed out once per test binary: two picks before either is
// bound would otherwise get the same one.
func freePort(t *testing.T) int {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(8000)
		if _, taken := handedOut.LoadOrStore(port, true); taken {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		if pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// proc is one node process.
type proc struct {
	name, http, gossip string
	cmd                *exec.Cmd
}

// startProc starts `tandem serve` as a child process, with extra flags.
func startProc(t *testing.T, name string, join string, extra ...string) *proc {
	t.Helper()
	p := &proc{
		name:   name,
		http:   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		gossip: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	// TANDEM_TEST_LOG_LEVEL=debug shows what the nodes did in a failed test.
	level := cmp.Or(os.Getenv("TANDEM_TEST_LOG_LEVEL"), "warn")
	args := []string{"serve", "-insecure", "-name", name, "-http", p.http, "-gossip", p.gossip, "-peer", "127.0.0.1:0", "-profile", "local", "-log-level", level}
	if join != "" {
		args = append(args, "-join", join)
	}
	args = append(args, extra...)
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(os.Environ(), "TANDEM_TEST_AS_COMMAND=1")
	p.cmd.Stderr = &prefixWriter{t: t, prefix: name}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	})
	return p
}

// prefixWriter logs a child's stderr through the test.
type prefixWriter struct {
	t      *testing.T
	prefix string
}

// Write logs p line by line.
func (w *prefixWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.t.Logf("[%s] %s", w.prefix, line)
	}
	return len(p), nil
}

// httpClient has a timeout so that no request of a test hangs.
var httpClient = &http.Client{Timeout: 10 * time.Second}

// do sends a JSON request and decodes a JSON answer into out.
func do(method, url, body string, out any) (int, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s: %w", b, err)
		}
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	return resp.StatusCode, nil
}

// clusterView is the part of /v1/cluster the tests read.
type clusterView struct {
	Ready   bool `json:"ready"`
	Members []struct {
		Name   string `json:"name"`
		Health string `json:"health"`
	} `json:"members"`
	Partitions map[string]any `json:"partitions"`
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ringOf returns the names a node's ring holds, or nil.
func ringOf(p *proc) []string {
	var v clusterView
	if _, err := do("GET", "http://"+p.http+"/v1/cluster", "", &v); err != nil || !v.Ready {
		return nil
	}
	var names []string
	for name := range v.Partitions {
		names = append(names, name)
	}
	return names
}

// sessionAnswer is the part of a session answer the tests read.
type sessionAnswer struct {
	Version    uint64         `json:"version"`
	Attributes map[string]any `json:"attributes"`
}

func TestKillNineLosesNoAcknowledgedWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	p1 := startProc(t, "node-1", "")
	waitFor(t, 20*time.Second, "node-1 to be ready", func() bool { return len(ringOf(p1)) == 1 })
	procs := []*proc{p1, startProc(t, "node-2", p1.gossip), startProc(t, "node-3", p1.gossip)}
	for _, p := range procs {
		waitFor(t, 20*time.Second, p.name+" to see a ready 3-node ring", func() bool { return len(ringOf(p)) == 3 })
	}

	// 500 sessions through random nodes; every other one written twice.
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[string]uint64{}
	primaryOf := map[string]string{}
	for i := range 500 {
		id := fmt.Sprintf("proc-session-%06d-xyz", i)
		for w := 0; w <= i%2; w++ {
			var s sessionAnswer
			body := fmt.Sprintf(`{"principal":"user-%d","attributes":{"write":%d}}`, i, w)
			if _, err := do("PUT", "http://"+procs[rng.IntN(3)].http+"/v1/sessions/"+id, body, &s); err != nil {
				t.Fatal(err)
			}
			want[id] = s.Version
		}
		var owners struct{ Primary struct{ Name string } }
		if _, err := do("GET", "http://"+procs[0].http+"/v1/sessions/"+id+"/owners", "", &owners); err != nil {
			t.Fatal(err)
		}
		primaryOf[id] = owners.Primary.Name
	}

	victim := procs[rng.IntN(3)]
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = victim.cmd.Wait()
	var survivors []*proc
	for _, p := range procs {
		if p != victim {
			survivors = append(survivors, p)
		}
	}
	killed := 0
	for id := range want {
		if primaryOf[id] == victim.name {
			killed++
		}
	}
	t.Logf("killed %s, primary of %d of 500 sessions", victim.name, killed)

	// At once, before membership notices: every session reads back from the
	// survivors at its latest acknowledged version.
	readAll := func(stage string) {
		for id, v := range want {
			var s sessionAnswer
			if _, err := do("GET", "http://"+survivors[rng.IntN(2)].http+"/v1/sessions/"+id+"?touch=false", "", &s); err != nil {
				t.Fatalf("%s: %v", stage, err)
			}
			if s.Version != v {
				t.Fatalf("%s: %s at v%d, want v%d", stage, id, s.Version, v)
			}
		}
	}
	readAll("right after kill -9")

	for _, p := range survivors {
		waitFor(t, 30*time.Second, p.name+" to drop "+victim.name+" from its ring", func() bool { return len(ringOf(p)) == 2 })
	}
	// Two copies again: the survivors' under-replicated partitions return
	// to 0 in /v1/cluster and in /metrics.
	waitFor(t, 30*time.Second, "under-replicated partitions to return to 0", func() bool {
		for _, p := range survivors {
			var v struct {
				UnderReplicated int `json:"under_replicated"`
			}
			if _, err := do("GET", "http://"+p.http+"/v1/cluster", "", &v); err != nil || v.UnderReplicated != 0 {
				return false
			}
		}
		return true
	})
	resp, err := httpClient.Get("http://" + survivors[0].http + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`(?m)^tandem_under_replicated_partitions\{node="[^"]+"\} 0$`).Match(metrics) {
		t.Fatalf("/metrics does not show 0 under-replicated partitions:\n%s", metrics)
	}
	readAll("after membership settled")
	for id, v := range want {
		var s sessionAnswer
		if _, err := do("PUT", "http://"+survivors[rng.IntN(2)].http+"/v1/sessions/"+id, `{"attributes":{"after":true}}`, &s); err != nil {
			t.Fatalf("write after failover: %v", err)
		}
		if s.Version != v+1 {
			t.Fatalf("write after failover: %s at v%d, want v%d", id, s.Version, v+1)
		}
	}
}

func TestDevStartsALocalCluster(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r, w := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"dev", "-http-port", "0"}, w, io.Discard); w.Close() }()
	urls := regexp.MustCompile(`http://127\.0\.0\.1:\d+`)
	var found []string
	sc := bufio.NewScanner(r)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "Try:") {
		if u := urls.FindString(sc.Text()); u != "" {
			found = append(found, u)
		}
	}
	go io.Copy(io.Discard, r)
	if len(found) != 3 {
		t.Fatalf("dev printed %d URLs: %v", len(found), found)
	}
	if _, err := do("PUT", found[0]+"/v1/sessions/dev-session-0000001", `{"principal":"x"}`, nil); err != nil {
		t.Fatal(err)
	}
	var s sessionAnswer
	if _, err := do("GET", found[2]+"/v1/sessions/dev-session-0000001", "", &s); err != nil || s.Version != 1 {
		t.Fatalf("read back through the third node: %+v %v", s, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("dev: %v", err)
	}
}

// isUsageError reports whether err is a command-line mistake, found by
// the command or by cli.Parse.
func isUsageError(err error) bool {
	return errors.As(err, new(usageError)) || errors.As(err, new(cli.UsageError))
}

func TestBadCommandLines(t *testing.T) {
	cases := [][]string{{"frobnicate"}, {"serve", "-no-such-flag"}, {"dev", "-nodes", "0"}, {"serve", "extra"}, {"serve", "-min-members", "0"}}
	for _, args := range cases {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if !isUsageError(err) {
			t.Errorf("run %q: %v, want a usage error", args, err)
		}
	}
	if err := run(context.Background(), []string{"serve", "-name", "a"}, io.Discard, io.Discard); !isUsageError(err) || !strings.Contains(err.Error(), "tandem certs") || !strings.Contains(err.Error(), "-insecure") {
		t.Errorf("serve without security material: %v, want a refusal saying how to make it", err)
	}
	if err := run(context.Background(), []string{"serve", "-insecure", "-certs-dir", t.TempDir()}, io.Discard, io.Discard); !isUsageError(err) {
		t.Errorf("-insecure with -certs-dir: %v, want a usage error", err)
	}
	t.Setenv("TANDEM_MAX_SESSION_BYTES", "lots")
	if err := run(context.Background(), []string{"serve"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "TANDEM_MAX_SESSION_BYTES") {
		t.Errorf("bad environment value: %v", err)
	}
}
