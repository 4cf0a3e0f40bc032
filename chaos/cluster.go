package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ClusterConfig configures a cluster of node processes.
type ClusterConfig struct {
	// Binary is the path of the tandem binary (see BuildBinary).
	Binary string
	// Nodes is how many nodes to run (default 5).
	Nodes int
	// Dir receives each node's log, node-N.log, appended across restarts.
	// Empty makes a temporary directory.
	Dir string
	// LogLevel is the nodes' -log-level (default "warn").
	LogLevel string
	// Profile is the nodes' -profile, their failure detector's timing:
	// "local" (probes every 200ms) or "lan" (every second). Empty passes
	// none: tandem serve's default, lan, as users' nodes run.
	Profile string
	// DrainTimeout is the nodes' -drain-timeout, the bound on a graceful
	// stop (default 10s).
	DrainTimeout time.Duration
	// StartTimeout bounds a node's start, from exec to answering HTTP
	// (default 30s).
	StartTimeout time.Duration
	// MinMembers is the nodes' -min-members, a floor under the smallest
	// ring a node serves in. Zero passes none: the nodes run on tandem
	// serve's default, a majority of the members they know, as users'
	// nodes do.
	MinMembers int
	// Seats is the nodes' -seats: above zero they lease from that many
	// agreed seats (experimental); zero passes none, tandem serve's
	// default leases.
	Seats int
	// Network is where the nodes run and how links are cut: NetworkLoopback
	// (the default: every node on 127.0.0.1, cuts injected inside the
	// processes) or NetworkNetns (every node in a network namespace of its
	// own, cuts made by nftables rules there; needs root, ip and nft, see
	// NetnsAvailable).
	Network string
	// Logger receives the harness's progress (default: discard).
	Logger *slog.Logger
}

// The networks a cluster runs on (ClusterConfig.Network).
const (
	NetworkLoopback = "loopback"
	NetworkNetns    = "netns"
)

// Ports of a node in its own namespace (NetworkNetns): every node has its
// own address, so all use the same ports.
const (
	netnsHTTPPort    = 7070
	netnsGossipPort  = 7946
	netnsPeerPort    = 7947
	netnsControlPort = 7071
)

// NodeInfo names a node's addresses: on loopback, or on the node's own
// address in its namespace. They stay the same across restarts.
type NodeInfo struct {
	// Index numbers the node from 0.
	Index int `json:"index"`
	// Name is its -name, n1, n2, ...
	Name string `json:"name"`
	// HTTP, Gossip, Peer and Control are its listen addresses; Control is
	// the hidden fault-injection endpoint.
	HTTP    string `json:"http"`
	Gossip  string `json:"gossip"`
	Peer    string `json:"peer"`
	Control string `json:"control"`
}

// NodeState says whether a node's process runs.
type NodeState string

// The states of a node process.
const (
	Running NodeState = "running"
	Paused  NodeState = "paused"
	Stopped NodeState = "stopped"
)

// procNode is one node and its current process.
type procNode struct {
	NodeInfo
	state NodeState
	cmd   *exec.Cmd
	done  chan struct{} // closed when cmd has exited
}

// Cluster is a running cluster of tandem node processes on loopback.
// Its methods are safe for concurrent use; Close kills every process.
type Cluster struct {
	cfg    ClusterConfig
	log    *slog.Logger
	client *http.Client
	net    *netnsNetwork  // nil on loopback
	ctl    []*http.Client // per node, the fault-control client: in its namespace in netns

	mu     sync.Mutex
	nodes  []*procNode
	closed bool
	// revokedExits counts the nodes that exited because the seats
	// revoked them for good (status exitRevoked).
	revokedExits int
}

// exitRevoked is tandem serve's exit status when the seats revoked the
// node for good: its supervisor is to start a new run.
const exitRevoked = 3

// RevokedExits returns how many times a node exited because the seats
// revoked it for good.
func (c *Cluster) RevokedExits() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.revokedExits
}

// BuildBinary builds the tandem node binary into dir, with the build tag
// chaos that compiles its fault-injection hooks in, and returns its path.
// It runs `go build` in the current directory, so it needs the Go
// toolchain and a module that requires github.com/tandem-io/tandem (or is
// it). LocateBinary finds an installed one instead.
func BuildBinary(ctx context.Context, dir string) (string, error) {
	return buildIn(ctx, "", dir)
}

// buildIn builds the tandem node binary with the build tag chaos into
// outDir, running `go build` in srcDir (empty: the current directory).
func buildIn(ctx context.Context, srcDir, outDir string) (string, error) {
	bin := filepath.Join(outDir, "tandem")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "chaos", "-o", bin, TandemPackage)
	cmd.Dir = srcDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build tandem: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// StartCluster starts cfg.Nodes node processes, the first alone and the
// others joining it, and waits until every node is ready with all of them
// in its ring. On error every process started is killed.
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	if cfg.Binary == "" {
		return nil, errors.New("chaos: start cluster: no tandem binary given")
	}
	if cfg.Nodes == 0 {
		cfg.Nodes = 5
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "warn"
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Dir == "" {
		dir, err := os.MkdirTemp("", "tandem-chaos-")
		if err != nil {
			return nil, fmt.Errorf("chaos: start cluster: %w", err)
		}
		cfg.Dir = dir
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("chaos: start cluster: %w", err)
	}
	// A node's log is appended across its restarts within this run, never
	// across runs: a report dir used again would count an earlier run's
	// lines (the lost-partition log lines) as this one's.
	for i := range cfg.Nodes {
		if err := os.Remove(filepath.Join(cfg.Dir, fmt.Sprintf("node-%d.log", i+1))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("chaos: start cluster: %w", err)
		}
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 4}
	c := &Cluster{cfg: cfg, log: cfg.Logger, client: &http.Client{Transport: transport}}
	switch cfg.Network {
	case "", NetworkLoopback:
		c.cfg.Network = NetworkLoopback
		ports, err := freePorts(4 * cfg.Nodes)
		if err != nil {
			return nil, fmt.Errorf("chaos: start cluster: %w", err)
		}
		for i := range cfg.Nodes {
			addr := func(k int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[4*i+k])) }
			c.nodes = append(c.nodes, &procNode{NodeInfo: NodeInfo{Index: i, Name: fmt.Sprintf("n%d", i+1),
				HTTP: addr(0), Gossip: addr(1), Peer: addr(2), Control: addr(3)}, state: Stopped})
		}
	case NetworkNetns:
		nw, err := newNetnsNetwork(ctx, cfg.Nodes)
		if err != nil {
			return nil, fmt.Errorf("chaos: start cluster in network namespaces: %w", err)
		}
		c.net = nw
		transport.DialContext = nw.dial
		for i := range cfg.Nodes {
			addr := func(port int) string { return net.JoinHostPort(netnsNodeIP(i), strconv.Itoa(port)) }
			// The fault-control endpoint listens on the node's own
			// loopback, as tandem serve insists; the harness reaches it
			// from inside the node's namespace.
			control := net.JoinHostPort("127.0.0.1", strconv.Itoa(netnsControlPort))
			c.nodes = append(c.nodes, &procNode{NodeInfo: NodeInfo{Index: i, Name: fmt.Sprintf("n%d", i+1),
				HTTP: addr(netnsHTTPPort), Gossip: addr(netnsGossipPort), Peer: addr(netnsPeerPort), Control: control}, state: Stopped})
			c.ctl = append(c.ctl, &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DialContext: nw.dialNode(i)}})
		}
	default:
		return nil, fmt.Errorf("chaos: start cluster: unknown network %q (want %s or %s)", cfg.Network, NetworkLoopback, NetworkNetns)
	}
	for i := range c.nodes {
		if err := c.StartNode(ctx, i); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.WaitHealthy(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// freePorts returns n distinct loopback ports free for TCP and UDP, chosen
// below the kernel's ephemeral range so that no outgoing connection takes
// a stopped node's port before it restarts, and below 20000, so that a
// harness running beside the cmd/tandem suites (which pick from 20000 up,
// as `go test ./...` runs packages at once) never takes a port one of
// them has picked but not yet bound.
func freePorts(n int) ([]int, error) {
	lo, hi := 10000, 20000
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if eph, err := strconv.Atoi(f[0]); err == nil && eph > lo+1000 && eph-1 < hi {
				hi = eph - 1
			}
		}
	}
	seen := map[int]bool{}
	var out []int
	for try := 0; len(out) < n; try++ {
		if try > 100*n {
			return nil, fmt.Errorf("found only %d of %d free ports in %d-%d", len(out), n, lo, hi)
		}
		p := lo + rand.IntN(hi-lo)
		if seen[p] {
			continue
		}
		seen[p] = true
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		out = append(out, p)
	}
	return out, nil
}

// Size returns the number of nodes.
func (c *Cluster) Size() int { return len(c.nodes) }

// Node returns node i's addresses.
func (c *Cluster) Node(i int) NodeInfo { return c.nodes[i].NodeInfo }

// Nodes returns every node's addresses.
func (c *Cluster) Nodes() []NodeInfo {
	out := make([]NodeInfo, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.NodeInfo
	}
	return out
}

// Dir returns the directory holding the nodes' logs.
func (c *Cluster) Dir() string { return c.cfg.Dir }

// State returns whether node i's process runs, is paused or is stopped.
func (c *Cluster) State(i int) NodeState {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[i]
	if n.state != Stopped {
		select {
		case <-n.done:
			n.state = Stopped
		default:
		}
	}
	return n.state
}

// StartNode starts node i, empty, under its name, joining every other
// node, and waits until its HTTP API answers. A running node is left as it
// is.
func (c *Cluster) StartNode(ctx context.Context, i int) error {
	n := c.nodes[i]
	switch c.State(i) {
	case Paused:
		return nil
	case Running:
		return c.awaitHTTP(ctx, n)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errors.New("chaos: cluster closed")
	}
	var join []string
	for _, o := range c.nodes {
		if o != n && o.state != Stopped {
			join = append(join, o.Gossip)
		}
	}
	// The harness runs its nodes without security material: the faults
	// it injects are about membership and replication, not attackers.
	args := []string{"serve", "-insecure", "-name", n.Name, "-http", n.HTTP, "-gossip", n.Gossip, "-peer", n.Peer,
		"-log-level", c.cfg.LogLevel, "-drain-timeout", c.cfg.DrainTimeout.String(), "-chaos-control", n.Control}
	if c.cfg.Profile != "" {
		args = append(args, "-profile", c.cfg.Profile)
	}
	if c.cfg.MinMembers > 0 {
		args = append(args, "-min-members", strconv.Itoa(c.cfg.MinMembers))
	}
	if c.cfg.Seats > 0 {
		args = append(args, "-seats", strconv.Itoa(c.cfg.Seats))
	}
	if len(join) > 0 {
		args = append(args, "-join", strings.Join(join, ","))
	}
	logf, err := os.OpenFile(filepath.Join(c.cfg.Dir, fmt.Sprintf("node-%d.log", i+1)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.mu.Unlock()
		return fmt.Errorf("chaos: start %s: %w", n.Name, err)
	}
	fmt.Fprintf(logf, "\n=== %s start %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(args, " "))
	cmd := exec.Command(c.cfg.Binary, args...)
	if c.net != nil {
		cmd = c.net.command(i, c.cfg.Binary, args...) // ip netns exec: the same process, in the node's namespace
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	if err := cmd.Start(); err != nil {
		logf.Close()
		c.mu.Unlock()
		return fmt.Errorf("chaos: start %s: %w", n.Name, err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		logf.Close()
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == exitRevoked {
			// The seats revoked it for good (tandem serve -seats): it
			// exits for its supervisor to start a new run, and the
			// harness, its supervisor, restarts it with the nodes it
			// finds down at its next recovery.
			c.mu.Lock()
			if n.cmd == cmd && n.state == Running {
				n.state = Stopped
				c.revokedExits++
			}
			c.mu.Unlock()
			c.log.Warn("node exited: the seats revoked it for good; restarting it with the nodes found down", "node", n.Name)
		}
		close(done)
	}()
	n.cmd, n.done, n.state = cmd, done, Running
	c.mu.Unlock()
	c.log.Debug("node started", "node", n.Name, "pid", cmd.Process.Pid)
	return c.awaitHTTP(ctx, n)
}

// awaitHTTP waits, within StartTimeout, until node n answers HTTP.
func (c *Cluster) awaitHTTP(ctx context.Context, n *procNode) error {
	c.mu.Lock()
	done := n.done
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.StartTimeout)
	defer cancel()
	for {
		if c.get(ctx, n.HTTP, "/livez", nil) == nil {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("chaos: %s exited while starting; see %s", n.Name, filepath.Join(c.cfg.Dir, fmt.Sprintf("node-%d.log", n.Index+1)))
		case <-ctx.Done():
			return fmt.Errorf("chaos: %s did not answer HTTP: %w", n.Name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// signal sends sig to node i's process if it runs.
func (c *Cluster) signal(i int, sig os.Signal) (*procNode, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[i]
	if n.state == Stopped || n.cmd == nil {
		return nil, fmt.Errorf("chaos: signal %s: not running", n.Name)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return nil, fmt.Errorf("chaos: signal %s %v: %w", n.Name, sig, err)
	}
	return n, nil
}

// Kill kills node i with SIGKILL and waits until it has exited.
func (c *Cluster) Kill(i int) error {
	n, err := c.signal(i, os.Kill)
	if err != nil {
		return err
	}
	<-n.done
	c.setState(i, Stopped)
	return nil
}

// Stop stops node i gracefully with SIGTERM and waits until it exits; if
// it has not exited when ctx ends, it is killed and Stop says so.
func (c *Cluster) Stop(ctx context.Context, i int) error {
	c.Resume(i) // a paused process cannot handle SIGTERM
	n, err := c.signal(i, sigTerm)
	if err != nil {
		return err
	}
	select {
	case <-n.done:
		c.setState(i, Stopped)
		return nil
	case <-ctx.Done():
		_ = c.Kill(i)
		return fmt.Errorf("chaos: %s did not stop gracefully, killed: %w", n.Name, ctx.Err())
	}
}

// Pause freezes node i with SIGSTOP.
func (c *Cluster) Pause(i int) error {
	if _, err := c.signal(i, sigPause); err != nil {
		return err
	}
	c.setState(i, Paused)
	return nil
}

// Resume thaws node i with SIGCONT; a node that is not paused is left alone.
func (c *Cluster) Resume(i int) error {
	if c.State(i) != Paused {
		return nil
	}
	if _, err := c.signal(i, sigResume); err != nil {
		return err
	}
	c.setState(i, Running)
	return nil
}

// setState records node i's state.
func (c *Cluster) setState(i int, s NodeState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[i].state = s
}

// Cut cuts node from's traffic to node to, peer calls and gossip, one way
// (cut both ways for a partition). On loopback the node's calls fail at
// once and its gossip is lost, inside the process; in network namespaces
// an nftables rule in to's namespace drops every packet from sends it, so
// they vanish and connections hang until their timeouts.
func (c *Cluster) Cut(ctx context.Context, from, to int) error {
	if c.net != nil {
		return c.net.drop(ctx, from, to, false)
	}
	return c.control(ctx, from, "/cut", url.Values{"addr": {c.nodes[to].Peer}, "gossip": {c.nodes[to].Gossip}})
}

// CutPeer cuts node from's peer calls to node to, while gossip still
// flows: inside the process on loopback, by an nftables rule in to's
// namespace dropping from's TCP to its peer port in network namespaces.
func (c *Cluster) CutPeer(ctx context.Context, from, to int) error {
	if c.net != nil {
		return c.net.drop(ctx, from, to, true)
	}
	return c.control(ctx, from, "/cut", url.Values{"addr": {c.nodes[to].Peer}})
}

// Network returns where the nodes run: NetworkLoopback or NetworkNetns.
func (c *Cluster) Network() string { return c.cfg.Network }

// DialContext opens a connection to a node's address as the harness's own
// clients do: from inside the namespaces' hub in network namespaces.
func (c *Cluster) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if c.net != nil {
		return c.net.dial(ctx, network, addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// SetDelay makes node from's calls to node to wait d first. It is
// injected inside the process, on every network.
func (c *Cluster) SetDelay(ctx context.Context, from, to int, d time.Duration) error {
	return c.control(ctx, from, "/delay", url.Values{"addr": {c.nodes[to].Peer}, "ms": {strconv.FormatInt(d.Milliseconds(), 10)}})
}

// SetDropRate makes node from's calls to node to be lost with probability
// p. It is injected inside the process, on every network.
func (c *Cluster) SetDropRate(ctx context.Context, from, to int, p float64) error {
	return c.control(ctx, from, "/drop", url.Values{"addr": {c.nodes[to].Peer}, "p": {strconv.FormatFloat(p, 'f', -1, 64)}})
}

// Heal removes every link fault node i injects, peer and gossip: the
// nftables rules in its namespace, and what its process injects.
func (c *Cluster) Heal(ctx context.Context, i int) error {
	if c.net != nil {
		if err := c.net.heal(ctx, i); err != nil {
			return fmt.Errorf("chaos: heal %s: %w", c.nodes[i].Name, err)
		}
	}
	return c.control(ctx, i, "/heal", nil)
}

// SetClock shifts node i's replica clock by offset (zero resets it).
func (c *Cluster) SetClock(ctx context.Context, i int, offset time.Duration) error {
	return c.control(ctx, i, "/clock", url.Values{"offset": {offset.String()}})
}

// control posts a fault-control request to node i.
func (c *Cluster) control(ctx context.Context, i int, path string, q url.Values) error {
	n := c.nodes[i]
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	u := "http://" + n.Control + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return fmt.Errorf("chaos: control %s %s: %w", n.Name, path, err)
	}
	client := c.client
	if c.ctl != nil {
		client = c.ctl[i]
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("chaos: control %s %s: %w", n.Name, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("chaos: control %s %s: %s: %s", n.Name, path, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// clusterStatus is the part of GET /v1/cluster the harness reads.
type clusterStatus struct {
	Ready      bool           `json:"ready"`
	Partitions map[string]any `json:"partitions"`
	// Lost is the node's latest loss of partitions with both owners.
	Lost struct {
		Epoch      uint64 `json:"epoch"`
		Partitions []int  `json:"partitions"`
	} `json:"lost"`
}

// get fetches path from addr and decodes its JSON answer into out.
func (c *Cluster) get(ctx context.Context, addr, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s%s: %s", addr, path, resp.Status)
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Healthy reports whether every node runs, is ready, and serves by a ring
// holding every node: two copies of everything again.
func (c *Cluster) Healthy(ctx context.Context) bool {
	for i, n := range c.nodes {
		if c.State(i) != Running {
			return false
		}
		var st clusterStatus
		if err := c.get(ctx, n.HTTP, "/v1/cluster", &st); err != nil || !st.Ready || len(st.Partitions) != len(c.nodes) {
			return false
		}
	}
	return true
}

// WaitHealthy polls until the cluster is healthy or ctx ends.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	for {
		if c.Healthy(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("chaos: cluster not healthy: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close kills every node process and waits for them to exit. It is safe
// to call more than once.
func (c *Cluster) Close() {
	c.mu.Lock()
	c.closed = true
	var running []*procNode
	for _, n := range c.nodes {
		if n.cmd != nil && n.state != Stopped {
			_ = n.cmd.Process.Kill()
			running = append(running, n)
		}
		n.state = Stopped
	}
	c.mu.Unlock()
	for _, n := range running {
		<-n.done
	}
	c.client.CloseIdleConnections()
	for _, ctl := range c.ctl {
		ctl.CloseIdleConnections()
	}
	if c.net != nil {
		c.net.close()
	}
}
