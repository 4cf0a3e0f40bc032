//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandem-io/tandem/chaos"
	"github.com/tandem-io/tandem/cmd/internal/material"
)

// The suite across hosts: every node is a real `tandem serve` process in a
// network namespace of its own, with its own address, as on a host of its
// own. It runs only as root with TANDEM_E2E=1 (.ci/run sets it; CI runs as
// root) and needs ip from iproute2.
//
// The suite makes its whole network and removes it in t.Cleanup, failed or
// not; it changes nothing in the host's own namespace, and every namespace
// name carries the process id and a counter, so runs side by side do not
// meet:
//
//	<prefix>-hub   bridge br0, 10.77.0.254/24: the test's own vantage point
//	<prefix>-nI    eth0 10.77.0.I/24, a veth to br0; no default route
//
// Nodes bind to wildcard addresses (0.0.0.0) and advertise 10.77.0.I. The
// test process itself stays in the host's namespace; its HTTP client opens
// every connection from inside the hub namespace (chaos.DialIn), so it reaches
// the nodes as a client on their network would, through the bridge, by the
// addresses they advertise.

// labCount tells the labs of one run apart.
var (
	labMu    sync.Mutex
	labCount int
)

// netLab is one suite's network: the hub and a namespace per node, with
// the cluster's security material and an HTTPS client on the hub.
type netLab struct {
	t         *testing.T
	prefix    string
	exe       string
	dir       string // security material for nodes n1 … nN
	client    *http.Client
	sessions  string // token of scope sessions
	admin     string // token of scope admin
	processes []*nsProc
}

// nodeIP is node i's address (i from 1).
func nodeIP(i int) string { return fmt.Sprintf("10.77.0.%d", i) }

// nodeName is node i's name.
func nodeName(i int) string { return fmt.Sprintf("n%d", i) }

// ns is node i's namespace.
func (l *netLab) ns(i int) string { return fmt.Sprintf("%s-n%d", l.prefix, i) }

// hub is the namespace of the bridge and of the test's client.
func (l *netLab) hub() string { return l.prefix + "-hub" }

// ip runs the ip command, failing the test on error.
func (l *netLab) ip(args ...string) {
	l.t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// addNamespace makes namespace name with its loopback up, and removes it
// when the test ends.
func (l *netLab) addNamespace(name string) {
	l.t.Helper()
	l.ip("netns", "add", name)
	l.t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			l.t.Errorf("remove namespace %s: %v: %s", name, err, out)
		}
	})
	l.ip("-n", name, "link", "set", "lo", "up")
}

// newNetLab skips unless the suite may run, then makes the hub, a
// namespace per node on the hub's bridge, and security material valid for
// the nodes' addresses.
func newNetLab(t *testing.T, nodes int) *netLab {
	t.Helper()
	if os.Getenv("TANDEM_E2E") != "1" {
		t.Skip("network-namespace suite: runs only with TANDEM_E2E=1, as root (it creates namespaces with ip netns)")
	}
	if os.Geteuid() != 0 {
		t.Skipf("network-namespace suite: needs root to create network namespaces (running as uid %d)", os.Geteuid())
	}
	if testing.Short() {
		t.Skip("network-namespace suite: starts processes")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("the network-namespace suite needs ip (apt-get install iproute2): %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	removeStaleLabs(t)
	labMu.Lock()
	labCount++
	l := &netLab{t: t, prefix: fmt.Sprintf("tnd%d-%d", os.Getpid(), labCount), exe: exe, dir: t.TempDir()}
	labMu.Unlock()

	l.addNamespace(l.hub())
	l.ip("-n", l.hub(), "link", "add", "br0", "type", "bridge")
	l.ip("-n", l.hub(), "addr", "add", "10.77.0.254/24", "dev", "br0")
	l.ip("-n", l.hub(), "link", "set", "br0", "up")
	var names, hosts []string
	for i := 1; i <= nodes; i++ {
		l.addNamespace(l.ns(i))
		veth := fmt.Sprintf("v%d", i)
		l.ip("-n", l.hub(), "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", l.ns(i))
		l.ip("-n", l.hub(), "link", "set", veth, "master", "br0")
		l.ip("-n", l.hub(), "link", "set", veth, "up")
		l.ip("-n", l.ns(i), "addr", "add", nodeIP(i)+"/24", "dev", "eth0")
		l.ip("-n", l.ns(i), "link", "set", "eth0", "up")
		names, hosts = append(names, nodeName(i)), append(hosts, nodeIP(i))
	}

	if err := material.Write(l.dir, material.Options{Nodes: names, Hosts: hosts}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(l.dir, material.TokensFile))
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := material.ParseTokens(raw)
	if err != nil {
		t.Fatal(err)
	}
	l.sessions, l.admin = tokens[material.ScopeSessions], tokens[material.ScopeAdmin]
	l.client = secureClient(t, l.dir)
	tr := l.client.Transport.(*http.Transport)
	tr.DialContext = chaos.DialIn("/var/run/netns/" + l.hub())
	t.Cleanup(tr.CloseIdleConnections)
	return l
}

// removeStaleLabs removes the namespaces of runs of this suite that died
// before their cleanup could run (a test binary killed on timeout): names
// tnd<pid>-<n>-… whose process is gone.
func removeStaleLabs(t *testing.T) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		var pid, n int
		var role string
		if _, err := fmt.Sscanf(name, "tnd%d-%d-%s", &pid, &n, &role); err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
				t.Logf("remove stale namespace %s: %v: %s", name, err, out)
			} else {
				t.Logf("removed stale namespace %s of a run that died (pid %d)", name, pid)
			}
		}
	}
}

// nsProc is a `tandem serve` process in a node's namespace.
type nsProc struct {
	i      int
	name   string
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // its exit, once done is closed
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start runs `tandem serve` as node i in its namespace, bound to wildcard
// addresses on the default ports, with the lab's material and args.
func (l *netLab) start(i int, args ...string) *nsProc {
	l.t.Helper()
	p := &nsProc{i: i, name: nodeName(i), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	base := []string{"netns", "exec", l.ns(i), l.exe, "serve", "-certs-dir", l.dir, "-name", p.name,
		"-http", "0.0.0.0:7070", "-gossip", "0.0.0.0:7946", "-peer", "0.0.0.0:7947", "-log-level", "warn"}
	// ip netns exec execs the command in place: p.cmd's process is the node.
	p.cmd = exec.Command("ip", append(base, args...)...)
	p.cmd.Env = append(os.Environ(), "TANDEM_TEST_AS_COMMAND=1")
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = io.MultiWriter(&prefixWriter{t: l.t, prefix: p.name}, p.stderr)
	if err := p.cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	l.t.Cleanup(func() { p.kill(l.t) })
	return p
}

// kill stops the process with SIGKILL and waits for it (bounded).
func (p *nsProc) kill(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s still running 30s after SIGKILL", p.name)
	}
}

// exited waits up to timeout for the process to exit by itself.
func (p *nsProc) exited(timeout time.Duration) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return true
	case <-timer.C:
		return false
	}
}

// running reports whether the process has not exited yet.
func (p *nsProc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// nsURL is node i's HTTPS URL for path.
func nsURL(i int, path string) string { return "https://" + net.JoinHostPort(nodeIP(i), "7070") + path }

// get sends GET with the token and decodes a 200 answer into out.
func (l *netLab) get(i int, path, token string, out any) (int, string) {
	status, body := call(l.t, l.client, http.MethodGet, nsURL(i, path), token, "")
	if status == http.StatusOK && out != nil {
		if err := json.Unmarshal([]byte(body), out); err != nil {
			return 0, fmt.Sprintf("decode %s: %v", body, err)
		}
	}
	return status, body
}

// netMember is a member as /v1/cluster shows it.
type netMember struct {
	Name   string `json:"name"`
	Gossip string `json:"gossip"`
	Health string `json:"health"`
	Meta   struct {
		Peer string `json:"peer"`
		HTTP string `json:"http"`
	} `json:"meta"`
}

// checkClusterView reads node i's /v1/cluster until it shows the nodes in
// want alive, and checks that every address in it is the member's own
// routable one, never a wildcard.
func (l *netLab) checkClusterView(i int, want ...int) {
	l.t.Helper()
	var members []netMember
	var body string
	waitFor(l.t, 60*time.Second, fmt.Sprintf("%s to see %d members alive", nodeName(i), len(want)), func() bool {
		var v struct {
			Members []netMember `json:"members"`
		}
		var status int
		if status, body = l.get(i, "/v1/cluster", l.admin, &v); status != http.StatusOK {
			return false
		}
		alive := 0
		for _, m := range v.Members {
			if m.Health == "alive" {
				alive++
			}
		}
		members = v.Members
		return alive == len(want)
	})
	for _, bad := range []string{"0.0.0.0", "[::]", "127.0.0.1"} {
		if strings.Contains(body, bad) {
			l.t.Errorf("%s's /v1/cluster names %s: %s", nodeName(i), bad, body)
		}
	}
	for _, j := range want {
		var m *netMember
		for k := range members {
			if members[k].Name == nodeName(j) {
				m = &members[k]
			}
		}
		if m == nil {
			l.t.Fatalf("%s's /v1/cluster has no %s: %s", nodeName(i), nodeName(j), body)
		}
		ip := nodeIP(j)
		if m.Gossip != ip+":7946" || m.Meta.Peer != ip+":7947" || m.Meta.HTTP != ip+":7070" {
			l.t.Errorf("%s's /v1/cluster gives %s at gossip %s, peer %s, HTTP %s; want %s:7946, :7947, :7070",
				nodeName(i), m.Name, m.Gossip, m.Meta.Peer, m.Meta.HTTP, ip)
		}
	}
}

// waitReady polls node i's /readyz until it answers 200.
func (l *netLab) waitReady(i int, timeout time.Duration) {
	l.t.Helper()
	waitFor(l.t, timeout, nodeName(i)+" ready at "+nsURL(i, "/readyz"), func() bool {
		status, _ := l.get(i, "/readyz", "", nil)
		return status == http.StatusOK
	})
}

// A node bound to wildcard addresses, in a namespace of its own: without
// -advertise and without a default route it refuses to start, naming the
// flag; with a default route it advertises the route's address.
func TestNetnsAdvertisedAddress(t *testing.T) {
	l := newNetLab(t, 1)

	p := l.start(1)
	if !p.exited(30 * time.Second) {
		t.Fatal("a node bound to 0.0.0.0 with no -advertise and no default route is still running after 30s")
	}
	var exit *exec.ExitError
	if !errors.As(p.err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("without -advertise or a default route: %v, want exit status 1", p.err)
	}
	// (Go reports a listener on 0.0.0.0 as the dual-stack [::].)
	for _, want := range []string{"HTTP address [::]:7070", "wildcard", "-advertise", "TANDEM_ADVERTISE", "network is unreachable"} {
		if !strings.Contains(p.stderr.String(), want) {
			t.Errorf("the refusal does not say %q: %s", want, p.stderr.String())
		}
	}

	// With a default route (through the hub), no -advertise is needed.
	l.ip("-n", l.ns(1), "route", "add", "default", "via", "10.77.0.254")
	p = l.start(1)
	want := "tandem node n1 serving https://10.77.0.1:7070 (gossip 10.77.0.1:7946, peer 10.77.0.1:7947)"
	waitFor(t, 30*time.Second, "n1 to say where it serves", func() bool {
		return strings.Contains(p.stdout.String(), "serving") || !p.running()
	})
	if got := p.stdout.String(); !strings.Contains(got, want+"\n") {
		t.Fatalf("with a default route and no -advertise, n1 printed %q, want the line %q", got, want)
	}
	t.Logf("with a default route and no -advertise: %s", want)
	l.waitReady(1, 30*time.Second)
	l.checkClusterView(1, 1)
}

// Three nodes on three "hosts": sessions are written and read through
// every node, the addresses handed out are routable ones, a kill -9 of a
// session's primary fails over to the survivors, and the node restarted
// on its host (same namespace, same name) comes back ready and serves the
// session.
func TestNetnsClusterAcrossHosts(t *testing.T) {
	l := newNetLab(t, 3)
	procs := map[int]*nsProc{}
	seed := nodeIP(1) + ":7946"
	procs[1] = l.start(1, "-advertise", nodeIP(1))
	l.waitReady(1, 60*time.Second)
	for _, i := range []int{2, 3} {
		procs[i] = l.start(i, "-advertise", nodeIP(i), "-join", seed)
	}
	for i := 1; i <= 3; i++ {
		l.waitReady(i, 60*time.Second)
	}
	for i := 1; i <= 3; i++ {
		l.checkClusterView(i, 1, 2, 3)
	}

	// Sessions written through every node, read through every node; each
	// one's owners are named by routable addresses.
	type written struct {
		id      string
		n       int
		version uint64
	}
	var sessions []written
	primaryOf := map[string]int{}
	for k := range 30 {
		w := written{id: fmt.Sprintf("netns-session-%04d", k), n: k}
		body := fmt.Sprintf(`{"principal":"user-%d","attributes":{"n":%d}}`, k, k)
		var s sessionAnswer
		waitFor(t, 20*time.Second, "a write of "+w.id+" through "+nodeName(k%3+1), func() bool {
			status, answer := call(t, l.client, http.MethodPut, nsURL(k%3+1, "/v1/sessions/"+w.id), l.sessions, body)
			return (status == http.StatusOK || status == http.StatusCreated) && json.Unmarshal([]byte(answer), &s) == nil
		})
		w.version = s.Version
		for i := 1; i <= 3; i++ {
			var got sessionAnswer
			if status, answer := l.get(i, "/v1/sessions/"+w.id+"?touch=false", l.sessions, &got); status != http.StatusOK || got.Version != w.version || got.Attributes["n"] != float64(k) {
				t.Fatalf("read %s through %s: %d %s, want v%d with n=%d", w.id, nodeName(i), status, answer, w.version, k)
			}
			var owners struct {
				Primary struct{ Name, HTTP string }
				Buddy   *struct{ Name, HTTP string }
			}
			if status, answer := l.get(i, "/v1/sessions/"+w.id+"/owners", l.sessions, &owners); status != http.StatusOK || owners.Buddy == nil {
				t.Fatalf("owners of %s through %s: %d %s", w.id, nodeName(i), status, answer)
			}
			for _, m := range []struct{ Name, HTTP string }{owners.Primary, *owners.Buddy} {
				var j int
				if _, err := fmt.Sscanf(m.Name, "n%d", &j); err != nil || m.HTTP != nodeIP(j)+":7070" {
					t.Fatalf("owners of %s through %s name %s at %q, want its routable address %s:7070", w.id, nodeName(i), m.Name, m.HTTP, nodeIP(j))
				}
			}
			if owners.Primary.Name == owners.Buddy.Name {
				t.Fatalf("owners of %s: %s is primary and buddy", w.id, owners.Primary.Name)
			}
			var primary int
			fmt.Sscanf(owners.Primary.Name, "n%d", &primary)
			primaryOf[w.id] = primary
		}
		sessions = append(sessions, w)
	}

	// kill -9 the primary of the first session.
	victim := primaryOf[sessions[0].id]
	var survivors []int
	for i := 1; i <= 3; i++ {
		if i != victim {
			survivors = append(survivors, i)
		}
	}
	orphans := 0
	for _, w := range sessions {
		if primaryOf[w.id] == victim {
			orphans++
		}
	}
	t.Logf("kill -9 %s (%s), primary of %d of %d sessions", nodeName(victim), nodeIP(victim), orphans, len(sessions))
	killed := time.Now()
	procs[victim].kill(t)

	// Reads, then writes, through the survivors.
	for k, w := range sessions {
		via := survivors[k%2]
		var got sessionAnswer
		waitFor(t, 30*time.Second, fmt.Sprintf("a read of %s through %s after the kill", w.id, nodeName(via)), func() bool {
			status, _ := l.get(via, "/v1/sessions/"+w.id+"?touch=false", l.sessions, &got)
			return status == http.StatusOK
		})
		if got.Version != w.version || got.Attributes["n"] != float64(w.n) {
			t.Fatalf("%s through %s after the kill: v%d %v, want v%d with n=%d", w.id, nodeName(via), got.Version, got.Attributes, w.version, w.n)
		}
	}
	t.Logf("every session read through the survivors %v after the kill", time.Since(killed).Round(time.Millisecond))
	for k := range sessions {
		w := &sessions[k]
		via := survivors[(k+1)%2]
		body := fmt.Sprintf(`{"principal":"user-%d","attributes":{"n":%d,"after":true}}`, w.n, w.n)
		var s sessionAnswer
		waitFor(t, 60*time.Second, fmt.Sprintf("a write of %s through %s after the kill", w.id, nodeName(via)), func() bool {
			status, answer := call(t, l.client, http.MethodPut, nsURL(via, "/v1/sessions/"+w.id), l.sessions, body)
			return status == http.StatusOK && json.Unmarshal([]byte(answer), &s) == nil
		})
		if s.Version <= w.version || s.Attributes["after"] != true {
			t.Fatalf("write of %s after the kill: v%d %v, want above v%d with after=true", w.id, s.Version, s.Attributes, w.version)
		}
		w.version = s.Version
	}
	t.Logf("every session written through the survivors %v after the kill", time.Since(killed).Round(time.Millisecond))
	for _, i := range survivors {
		l.checkClusterView(i, survivors...)
	}

	// The killed node restarts on its host under its name: it becomes
	// ready, and serves every session at its latest version.
	var join []string
	for _, i := range survivors {
		join = append(join, nodeIP(i)+":7946")
	}
	procs[victim] = l.start(victim, "-advertise", nodeIP(victim), "-join", strings.Join(join, ","))
	l.waitReady(victim, 60*time.Second)
	for i := 1; i <= 3; i++ {
		l.checkClusterView(i, 1, 2, 3)
	}
	for _, w := range sessions {
		var got sessionAnswer
		if status, answer := l.get(victim, "/v1/sessions/"+w.id+"?touch=false", l.sessions, &got); status != http.StatusOK || got.Version != w.version || got.Attributes["after"] != true {
			t.Fatalf("read %s through the restarted %s: %d %s, want v%d with after=true", w.id, nodeName(victim), status, answer, w.version)
		}
	}
}
