//go:build linux

package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A netns network puts every node in a network namespace of its own, as on
// a host of its own, and cuts links from outside the processes, as Jepsen
// does: nftables rules in the receiving node's namespace drop what the cut
// node sends it, so its packets vanish (the sender learns nothing) and
// connections hang until their timeouts.
//
//	<prefix>-hub  bridge br0, 10.79.0.254/24: the harness's own vantage point
//	<prefix>-nI   eth0 10.79.0.I/24, a veth to br0
//
// The harness process stays in its own namespace; it opens every
// connection to the nodes from inside the hub (dialHub). Nothing is
// changed in the host's namespace, and Close removes every namespace.
// Names carry the harness's process id and a counter, so harnesses side by
// side (and the cmd/tandem namespace suite) never meet, and namespaces
// left by a harness that died are removed by the next one.
type netnsNetwork struct {
	prefix string
	mu     sync.Mutex
	made   []string            // namespaces made, to remove
	cuts   map[int]map[int]int // receiving node → sending node → cutAll or cutPeer
}

// What a cut drops of a sender's packets at the receiver.
const (
	cutPeer = 1 // TCP to the peer port: calls, not gossip
	cutAll  = 2 // everything
)

// netnsCount tells the networks of one process apart.
var (
	netnsMu    sync.Mutex
	netnsCount int
)

// NetnsAvailable reports whether this process can run a cluster in
// network namespaces: it runs as root and has ip (iproute2) and nft
// (nftables). The error says what is missing.
func NetnsAvailable() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("not root (uid %d): network namespaces need root", os.Geteuid())
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := lookTool(tool); err != nil {
			return fmt.Errorf("%s not found (apt-get install iproute2 nftables): %w", tool, err)
		}
	}
	return nil
}

// lookTool finds tool on PATH or in /usr/sbin and /sbin, where Debian
// puts ip and nft for root.
func lookTool(tool string) (string, error) {
	if p, err := exec.LookPath(tool); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := dir + "/" + tool
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// nodeIP is node i's address (i from 0).
func netnsNodeIP(i int) string { return fmt.Sprintf("10.79.0.%d", i+1) }

// newNetnsNetwork makes the hub and a namespace per node, each with an
// nftables table whose output chain the cuts fill.
func newNetnsNetwork(ctx context.Context, nodes int) (*netnsNetwork, error) {
	if err := NetnsAvailable(); err != nil {
		return nil, err
	}
	if nodes > 250 {
		return nil, fmt.Errorf("at most 250 nodes in a netns network, not %d", nodes)
	}
	removeStaleNetns()
	netnsMu.Lock()
	netnsCount++
	n := &netnsNetwork{prefix: fmt.Sprintf("tch%d-%d", os.Getpid(), netnsCount), cuts: map[int]map[int]int{}}
	netnsMu.Unlock()
	fail := func(err error) (*netnsNetwork, error) {
		n.close()
		return nil, err
	}
	hub := n.hub()
	if err := n.addNamespace(ctx, hub); err != nil {
		return fail(err)
	}
	for _, args := range [][]string{
		{"-n", hub, "link", "add", "br0", "type", "bridge"},
		{"-n", hub, "addr", "add", "10.79.0.254/24", "dev", "br0"},
		{"-n", hub, "link", "set", "br0", "up"},
	} {
		if err := run(ctx, "ip", args...); err != nil {
			return fail(err)
		}
	}
	for i := range nodes {
		ns := n.ns(i)
		if err := n.addNamespace(ctx, ns); err != nil {
			return fail(err)
		}
		veth := fmt.Sprintf("v%d", i+1)
		for _, args := range [][]string{
			{"-n", hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"-n", hub, "link", "set", veth, "master", "br0"},
			{"-n", hub, "link", "set", veth, "up"},
			{"-n", ns, "addr", "add", netnsNodeIP(i) + "/24", "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
		} {
			if err := run(ctx, "ip", args...); err != nil {
				return fail(err)
			}
		}
		if err := n.nft(ctx, i, fmt.Sprintf(`add table inet chaos
add set inet chaos cut { type ipv4_addr; }
add set inet chaos cutpeer { type ipv4_addr; }
add chain inet chaos input { type filter hook input priority 0; policy accept; }
add rule inet chaos input ip saddr @cut drop
add rule inet chaos input ip saddr @cutpeer tcp dport %d drop
`, netnsPeerPort)); err != nil {
			return fail(err)
		}
	}
	return n, nil
}

// hub is the namespace of the bridge and of the harness's connections.
func (n *netnsNetwork) hub() string { return n.prefix + "-hub" }

// ns is node i's namespace.
func (n *netnsNetwork) ns(i int) string { return fmt.Sprintf("%s-n%d", n.prefix, i+1) }

// addNamespace makes namespace name with its loopback up.
func (n *netnsNetwork) addNamespace(ctx context.Context, name string) error {
	if err := run(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	n.mu.Lock()
	n.made = append(n.made, name)
	n.mu.Unlock()
	return run(ctx, "ip", "-n", name, "link", "set", "lo", "up")
}

// command returns the command that runs name with args in node i's
// namespace.
func (n *netnsNetwork) command(i int, name string, args ...string) *exec.Cmd {
	ip, err := lookTool("ip")
	if err != nil {
		ip = "ip"
	}
	return exec.Command(ip, append([]string{"netns", "exec", n.ns(i), name}, args...)...)
}

// nft runs an nftables script in node i's namespace.
func (n *netnsNetwork) nft(ctx context.Context, i int, script string) error {
	nft, err := lookTool("nft")
	if err != nil {
		return err
	}
	ip, err := lookTool("ip")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ip, "netns", "exec", n.ns(i), nft, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %w: %s", n.ns(i), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// drop makes node from's packets to node to vanish at to: every packet,
// or with peerOnly only TCP to to's peer port.
func (n *netnsNetwork) drop(ctx context.Context, from, to int, peerOnly bool) error {
	kind := cutAll
	if peerOnly {
		kind = cutPeer
	}
	n.mu.Lock()
	if n.cuts[to] == nil {
		n.cuts[to] = map[int]int{}
	}
	n.cuts[to][from] = max(n.cuts[to][from], kind)
	script := n.setsScript(to)
	n.mu.Unlock()
	return n.nft(ctx, to, script)
}

// heal ends every cut of node i's packets, at every receiver.
func (n *netnsNetwork) heal(ctx context.Context, i int) error {
	n.mu.Lock()
	scripts := map[int]string{}
	for to, from := range n.cuts {
		if _, ok := from[i]; ok {
			delete(from, i)
			scripts[to] = n.setsScript(to)
		}
	}
	n.mu.Unlock()
	var errs []error
	for to, script := range scripts {
		errs = append(errs, n.nft(ctx, to, script))
	}
	return errors.Join(errs...)
}

// setsScript is the nftables script that sets receiving node to's cut
// sets to the cuts recorded. Called with mu held.
func (n *netnsNetwork) setsScript(to int) string {
	var all, peer []string
	for from, kind := range n.cuts[to] {
		if kind == cutAll {
			all = append(all, netnsNodeIP(from))
		} else {
			peer = append(peer, netnsNodeIP(from))
		}
	}
	var b strings.Builder
	b.WriteString("flush set inet chaos cut\nflush set inet chaos cutpeer\n")
	if len(all) > 0 {
		fmt.Fprintf(&b, "add element inet chaos cut { %s }\n", strings.Join(all, ", "))
	}
	if len(peer) > 0 {
		fmt.Fprintf(&b, "add element inet chaos cutpeer { %s }\n", strings.Join(peer, ", "))
	}
	return b.String()
}

// dial opens a connection to addr from inside the hub.
func (n *netnsNetwork) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialIn("/var/run/netns/"+n.hub(), ctx, network, addr)
}

// dialNode returns a dialer that opens connections from inside node i's
// namespace: to its loopback-only fault-control endpoint.
func (n *netnsNetwork) dialNode(i int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return DialIn("/var/run/netns/" + n.ns(i))
}

// close removes every namespace made. Processes still in them are the
// caller's to kill first.
func (n *netnsNetwork) close() {
	n.mu.Lock()
	made := n.made
	n.made = nil
	n.mu.Unlock()
	for i := len(made) - 1; i >= 0; i-- {
		_ = run(context.Background(), "ip", "netns", "del", made[i])
	}
}

// removeStaleNetns removes the namespaces of harnesses that died before
// removing theirs: names tch<pid>-<n>-… whose process is gone.
func removeStaleNetns() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		var pid, k int
		var role string
		if _, err := fmt.Sscanf(name, "tch%d-%d-%s", &pid, &k, &role); err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = exec.Command("ip", "netns", "del", name).Run()
		}
	}
}

// run runs a tool, bounded in time, with its output in the error.
func run(ctx context.Context, tool string, args ...string) error {
	path, err := lookTool(tool)
	if err != nil {
		return fmt.Errorf("%s: %w", tool, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, path, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// DialIn returns a dial function that opens connections from inside the
// network namespace at nsPath (a file under /var/run/netns): it moves its
// (locked) OS thread into the namespace, opens the socket there, and moves
// the thread back. A socket stays in the namespace it was made in, so the
// connection is the namespace's while the rest of the process stays in its
// own. A thread that cannot move back stays locked, and Go ends it with its
// goroutine. Linux only; it needs root.
func DialIn(nsPath string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialIn(nsPath, ctx, network, addr)
	}
}

// dialIn dials from inside the network namespace at nsPath: it moves its
// (locked) OS thread into the namespace, opens the socket there, and moves
// the thread back. A socket stays in the namespace it was made in. A
// thread that cannot move back stays locked, and Go ends it with its
// goroutine.
func dialIn(nsPath string, ctx context.Context, network, addr string) (net.Conn, error) {
	target, err := os.Open(nsPath)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer self.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter %s: %w", nsPath, err)
	}
	// An IP literal is dialled on this goroutine, so on this thread.
	var d net.Dialer
	conn, dialErr := d.DialContext(ctx, network, addr)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("leave %s: %w", nsPath, err)
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}
