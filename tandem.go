// Package tandem embeds a Tandem node in a Go program: a member of a
// peer-to-peer session cluster in which every session lives on two nodes, a
// primary and a buddy, and every write is acknowledged only once both hold
// it. Any node can serve any session; when a node fails its sessions are
// served by their buddies, and when it returns it gets them back before it
// serves them.
//
// Start a node with Start, then read and write sessions through it. Nodes
// find each other through gossip (the cluster package), place sessions on
// a consistent-hash ring (the ring package) and replicate through the
// replica package; this package wires them together.
package tandem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/cluster"
	"github.com/tandem-io/tandem/replica"
	"github.com/tandem-io/tandem/replica/peer"
	"github.com/tandem-io/tandem/ring"
)

// Errors returned by Node's session operations; test them with errors.Is.
var (
	// ErrNotFound: the session does not exist, was deleted or expired.
	ErrNotFound = replica.ErrNotFound
	// ErrConflict: a conditional write found another version.
	ErrConflict = replica.ErrConflict
	// ErrTooLarge: the session would exceed Config.MaxSessionBytes.
	ErrTooLarge = replica.ErrTooLarge
	// ErrInvalid: a malformed id, attribute value or request.
	ErrInvalid = replica.ErrInvalid
	// ErrUnavailable: the session's owners could not be reached before the
	// context ended; nothing was acknowledged.
	ErrUnavailable = replica.ErrUnavailable
	// ErrIndeterminate: a retried write had already been applied, once, but
	// later writes superseded it before its result could be returned.
	ErrIndeterminate = replica.ErrIndeterminate
)

// Session is a session as Tandem stores it.
type Session = replica.Session

// Op is one request against one session; see Node.Do.
type Op = replica.Op

// Config configures a Node. Start from DefaultConfig.
type Config struct {
	// Name identifies the node in the cluster. It must be unique and should
	// be stable across restarts, so a returning node gets its sessions back.
	Name string
	// GossipAddr is where the node gossips membership (UDP and TCP),
	// host:port; port 0 picks a free one.
	GossipAddr string
	// PeerAddr is where the node listens for replication and forwarded
	// requests from other nodes, host:port; port 0 picks a free one.
	PeerAddr string
	// HTTPAddr is the address of the node's HTTP API, if the program serves
	// one; it is advertised to other nodes and to clients asking who owns a
	// session. It may be empty.
	HTTPAddr string
	// Join lists gossip addresses of existing nodes. Empty starts a new
	// cluster.
	Join []string
	// JoinTimeout is how long Start keeps trying to join when no seed
	// answers yet, as when a whole cluster starts at once (default 30s).
	// Seeds that refuse the node, because its ring settings differ, fail
	// Start at once.
	JoinTimeout time.Duration
	// Ring holds the partitioning settings; every node must agree.
	Ring ring.Config
	// MaxSessionBytes bounds a session's encoded size (default 1 MiB).
	MaxSessionBytes int
	// IdleTimeout and AbsoluteTimeout apply to sessions written without
	// their own (defaults 30 minutes and 12 hours).
	IdleTimeout, AbsoluteTimeout time.Duration
	// RequestTimeout bounds each session operation whose context has no
	// deadline, including retries while owners change (default 5s).
	RequestTimeout time.Duration
	// SecretKey, if set, encrypts gossip (16, 24 or 32 bytes).
	SecretKey []byte
	// Logger receives the node's logs (default: discard).
	Logger *slog.Logger

	// Cluster tunes membership; Name, addresses, seeds, ring settings,
	// secret, logger and change callback are filled in from the fields
	// above. Zero fields take cluster.DefaultConfig's values.
	Cluster cluster.Config
	// Replica tunes the replication engine; Name, caller, logger and the
	// limits above are filled in. Zero fields take replica's defaults.
	// Set Replica.MinMembers to a majority of the cluster (2 of 3, 3 of 5)
	// so that the smaller side of a network cut answers ErrUnavailable
	// instead of serving alone.
	Replica replica.Config
	// Caller, if set, wraps the peer client; chaos tests use it to inject
	// faults. Nil uses the client as is.
	Caller func(peer.Caller) peer.Caller
}

// DefaultConfig returns settings for a node called name on loopback, on the
// default ports: gossip 7946, peer 7947.
func DefaultConfig(name string) Config {
	return Config{
		Name:            name,
		GossipAddr:      "127.0.0.1:7946",
		PeerAddr:        "127.0.0.1:7947",
		Ring:            ring.DefaultConfig(),
		MaxSessionBytes: 1 << 20,
		IdleTimeout:     30 * time.Minute,
		AbsoluteTimeout: 12 * time.Hour,
		RequestTimeout:  5 * time.Second,
		JoinTimeout:     30 * time.Second,
	}
}

// joinCluster starts membership, retrying while no seed answers, for up to
// timeout or until ctx ends.
func joinCluster(ctx context.Context, cc cluster.Config, timeout time.Duration) (*cluster.Cluster, error) {
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		members, err := cluster.Start(ctx, cc)
		if err == nil || !errors.Is(err, cluster.ErrJoin) || errors.Is(err, cluster.ErrRingMismatch) || time.Now().After(deadline) {
			return members, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Node is a running Tandem node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	replica *replica.Node
	client  *peer.Client
	server  *peer.Server
	members *cluster.Cluster
	peerLn  net.Listener

	mu        sync.Mutex
	view      cluster.View
	joined    bool        // membership has finished joining; views are whole
	agreed    atomic.Bool // the other members once agreed on this node's ring
	announced time.Time   // when the node last announced itself to disagreeing members
	closed    bool
	stop      chan struct{}
	watcher   sync.WaitGroup
}

// Start starts a node: it listens for peers, joins the cluster through
// cfg.Join (or starts one) and begins taking over its share of sessions.
// The node serves requests at once, fetching sessions it has not been
// handed yet; Ready reports when the hand-off is done.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Name == "" {
		return nil, fmt.Errorf("tandem: start: %w: a node needs a name", ErrInvalid)
	}
	if cfg.Ring == (ring.Config{}) {
		cfg.Ring = ring.DefaultConfig()
	}
	if err := cfg.Ring.Validate(); err != nil {
		return nil, fmt.Errorf("tandem: start %s: %w", cfg.Name, err)
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, log: log.With("node", cfg.Name), stop: make(chan struct{})}

	ln, err := net.Listen("tcp", cfg.PeerAddr)
	if err != nil {
		return nil, fmt.Errorf("tandem: start %s: listen for peers: %w", cfg.Name, err)
	}
	n.peerLn = ln
	n.client = peer.NewClient(peer.ClientConfig{Logger: log})
	var caller peer.Caller = n.client
	if cfg.Caller != nil {
		caller = cfg.Caller(caller)
	}
	rc := cfg.Replica
	rc.Name, rc.Caller, rc.Logger, rc.Partitions = cfg.Name, caller, log, cfg.Ring.Partitions
	rc.MaxSessionBytes, rc.IdleTimeout, rc.AbsoluteTimeout = cfg.MaxSessionBytes, cfg.IdleTimeout, cfg.AbsoluteTimeout
	n.replica = replica.New(rc)
	n.server = peer.NewServer(n.replica, peer.ServerConfig{Logger: log})
	go n.server.Serve(ln)

	cc := cfg.Cluster
	def := cluster.DefaultConfig(cfg.Name)
	if cc.ProbeInterval == 0 {
		wrap := cc.WrapTransport
		cc = def
		cc.WrapTransport = wrap
	}
	cc.Name, cc.BindAddr, cc.Seeds = cfg.Name, cfg.GossipAddr, cfg.Join
	cc.Peer, cc.HTTP, cc.Ring = ln.Addr().String(), cfg.HTTPAddr, cfg.Ring
	cc.SecretKey, cc.Logger, cc.OnChange = cfg.SecretKey, log, n.onMembership
	members, err := joinCluster(ctx, cc, cfg.JoinTimeout)
	if err != nil {
		n.shutdown()
		return nil, fmt.Errorf("tandem: start %s: %w", cfg.Name, err)
	}
	n.members = members
	// The first ring comes from a view after the join that holds the other
	// members, so a node that starts with empty memory sees every partition
	// it owns as one to be handed over, not as one it already holds. Member
	// events are applied asynchronously, so the view right after the join
	// may still hold this node alone.
	view, err := firstView(ctx, members, len(cfg.Join) > 0, cfg.JoinTimeout)
	if err != nil {
		members.Close()
		n.shutdown()
		return nil, fmt.Errorf("tandem: start %s: %w", cfg.Name, err)
	}
	n.mu.Lock()
	n.joined = true
	n.mu.Unlock()
	n.onMembership(view)
	n.watcher.Add(1)
	go n.announceWhenReady()
	return n, nil
}

// firstView returns the membership view a node starts serving by: once it
// joined through seeds, one that holds another member.
func firstView(ctx context.Context, members *cluster.Cluster, joined bool, timeout time.Duration) (cluster.View, error) {
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		v := members.View()
		if !joined || len(v.Ring()) > 1 {
			return v, nil
		}
		if time.Now().After(deadline) {
			return v, fmt.Errorf("%w: joined, but no other member appeared within %v", ErrUnavailable, timeout)
		}
		select {
		case <-ctx.Done():
			return v, fmt.Errorf("wait for the first membership view: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// onMembership turns a membership view into the ring the node serves by.
func (n *Node) onMembership(v cluster.View) {
	n.mu.Lock()
	if !n.joined {
		n.mu.Unlock()
		return // views during the join are partial
	}
	if v.Epoch < n.view.Epoch {
		n.mu.Unlock()
		return
	}
	n.view = v
	n.mu.Unlock()
	members := v.Ring()
	if len(members) == 0 {
		return
	}
	tab, err := ring.New(n.cfg.Ring, v.Epoch, members)
	if err != nil {
		n.log.Error("cannot build ring from membership", "epoch", v.Epoch, "err", err)
		return
	}
	if err := n.replica.SetTable(tab); err != nil {
		n.log.Error("cannot serve by new ring", "epoch", v.Epoch, "err", err)
	}
}

// checkAgreement records whether every member of the node's ring serves by
// the same ring, with this node at its current peer address. A node
// restarted on new addresses before the others noticed the old incarnation
// die is in its own ring at once, but the others still route to the old
// address, and memberlist refuses the new one until the old is declared
// dead; until they agree, the node must not report ready.
func (n *Node) checkAgreement() {
	tab := n.replica.Table()
	if tab == nil {
		return
	}
	if !n.agreesWith(tab) {
		// Tell the others of this incarnation now rather than at the next
		// periodic exchange.
		if time.Since(n.announced) > 500*time.Millisecond {
			n.announced = time.Now()
			var addrs []string
			for _, m := range n.members.View().Members {
				if m.Name != n.cfg.Name && (m.Health == "alive" || m.Health == "suspect") {
					addrs = append(addrs, m.Addr)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, _ = n.members.Announce(ctx, addrs)
			cancel()
		}
		return
	}
	n.agreed.Store(true)
}

// agreesWith reports whether every other member of tab serves by the same
// ring, holding this node at its current peer address.
func (n *Node) agreesWith(tab *ring.Table) bool {
	for _, m := range tab.Members() {
		if m.Name == n.cfg.Name {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		var info replica.RingInfo
		err := n.client.Call(ctx, m.Peer, replica.MethodRing, struct{}{}, &info)
		cancel()
		if err != nil {
			return false
		}
		theirs, err := info.Table()
		if err != nil || theirs.Fingerprint() != tab.Fingerprint() {
			return false
		}
		if me, ok := theirs.Member(n.cfg.Name); !ok || me.Peer != n.PeerAddr() {
			return false
		}
	}
	return true
}

// announceWhenReady gossips state active once the node holds every
// partition it owns and the other members agree on its ring.
func (n *Node) announceWhenReady() {
	defer n.watcher.Done()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		if !n.agreed.Load() {
			n.checkAgreement()
		}
		if n.Ready() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			stop := context.AfterFunc(stopContext(n.stop), cancel)
			err := n.members.SetState(ctx, cluster.StateActive)
			stop()
			cancel()
			if err == nil {
				n.log.Info("node ready", "epoch", n.replica.Table().Epoch())
				return
			}
			n.log.Warn("cannot announce readiness", "err", err)
		}
	}
}

// stopContext returns a context that ends when stop is closed.
func stopContext(stop <-chan struct{}) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-stop
		cancel()
	}()
	return ctx
}

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// GossipAddr returns the address other nodes join through.
func (n *Node) GossipAddr() string { return n.members.Addr() }

// PeerAddr returns the address of the node's peer listener.
func (n *Node) PeerAddr() string { return n.peerLn.Addr().String() }

// Ready reports whether the node has joined, the other members agree on
// its ring (checked once, when it starts), and it holds every partition it
// owns. Health-checking balancers should send users only to ready nodes.
func (n *Node) Ready() bool {
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	return !closed && n.agreed.Load() && n.replica.Ready()
}

// Do runs op through the session's primary, retrying while owners change,
// until ctx ends (or Config.RequestTimeout, if ctx has no deadline).
func (n *Node) Do(ctx context.Context, op *Op) (*Session, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.RequestTimeout)
		defer cancel()
	}
	return n.replica.Do(ctx, op)
}

// Get reads session id and moves its idle deadline.
func (n *Node) Get(ctx context.Context, id string) (*Session, error) {
	return n.Do(ctx, &Op{Kind: replica.OpGet, ID: id})
}

// Peek reads session id without moving its idle deadline.
func (n *Node) Peek(ctx context.Context, id string) (*Session, error) {
	return n.Do(ctx, &Op{Kind: replica.OpGet, ID: id, NoTouch: true})
}

// Put creates or replaces session s.ID with s's principal and attributes
// and the node's default timeouts, and returns the stored session.
func (n *Node) Put(ctx context.Context, id, principal string, attributes map[string][]byte) (*Session, error) {
	op := &Op{Kind: replica.OpPut, ID: id, Principal: principal, Attributes: raw(attributes)}
	return n.Do(ctx, op)
}

// Patch changes only the named attributes of session id: set replaces
// values, del removes names; attributes it does not name are left as they
// are, so concurrent patches of different attributes all survive.
func (n *Node) Patch(ctx context.Context, id string, set map[string][]byte, del []string) (*Session, error) {
	return n.Do(ctx, &Op{Kind: replica.OpPatch, ID: id, Set: raw(set), Delete: del})
}

// SetPrincipal names the user session id belongs to, leaving its attributes
// as they are.
func (n *Node) SetPrincipal(ctx context.Context, id, principal string) (*Session, error) {
	return n.Do(ctx, &Op{Kind: replica.OpPatch, ID: id, SetPrincipal: true, Principal: principal})
}

// InvalidatePrincipal deletes every session of principal across the
// cluster ("log this user out everywhere") and returns how many it deleted.
func (n *Node) InvalidatePrincipal(ctx context.Context, principal string) (int, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.RequestTimeout)
		defer cancel()
	}
	return n.replica.InvalidatePrincipal(ctx, principal)
}

// Delete deletes session id.
func (n *Node) Delete(ctx context.Context, id string) error {
	_, err := n.Do(ctx, &Op{Kind: replica.OpDelete, ID: id})
	return err
}

// Touch moves session id's idle deadline without reading it.
func (n *Node) Touch(ctx context.Context, id string) error {
	_, err := n.Do(ctx, &Op{Kind: replica.OpTouch, ID: id})
	return err
}

// raw converts encoded attribute values to the replica's type.
func raw(in map[string][]byte) map[string]msgpack.RawMessage {
	if in == nil {
		return nil
	}
	out := make(map[string]msgpack.RawMessage, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}

// Owners names the primary and buddy of session id in the node's ring,
// with the ring's epoch.
func (n *Node) Owners(id string) (primary, buddy ring.Member, epoch uint64, err error) {
	tab := n.replica.Table()
	if tab == nil {
		return ring.Member{}, ring.Member{}, 0, fmt.Errorf("%w: %s has no ring yet", ErrUnavailable, n.cfg.Name)
	}
	if err := replica.ValidateID(id); err != nil {
		return ring.Member{}, ring.Member{}, 0, err
	}
	o := tab.OwnersOf(id)
	primary, _ = tab.Member(o.Primary)
	buddy, _ = tab.Member(o.Buddy)
	return primary, buddy, tab.Epoch(), nil
}

// ClusterStatus is a node's view of the cluster, for operators.
type ClusterStatus struct {
	// Node is the name of the node answering.
	Node string `json:"node"`
	// Epoch names the ring the node serves by.
	Epoch uint64 `json:"epoch"`
	// Ready says whether the node holds every partition it owns.
	Ready bool `json:"ready"`
	// Members lists every node known, with its state and addresses.
	Members []cluster.Member `json:"members"`
	// Partitions counts each ring member's partitions by role.
	Partitions map[string]ring.MemberLoad `json:"partitions"`
	// UnderReplicated counts partitions with fewer than two copies as far
	// as this node can tell: those without a buddy in the ring, and those
	// it owns but is still waiting to be handed. Summed over the nodes it
	// returns to 0 once every partition has two copies again.
	UnderReplicated int `json:"under_replicated"`
	// PendingHandoff counts partitions this node owns but is still being
	// handed or reconciling.
	PendingHandoff int `json:"pending_handoff"`
	// Lost names the latest partitions that lost both owners at once, as
	// this node saw it; their sessions are gone.
	Lost replica.LostPartitions `json:"lost"`
	// Conflicts counts different copies of one version reconciled after a
	// network cut healed.
	Conflicts uint64 `json:"conflicts"`
}

// Status returns the node's view of the cluster.
func (n *Node) Status() ClusterStatus {
	n.mu.Lock()
	v := n.view
	n.mu.Unlock()
	st := ClusterStatus{Node: n.cfg.Name, Ready: n.Ready(), Members: v.Members, PendingHandoff: n.replica.Pending(),
		Lost: n.replica.Lost(), Conflicts: n.replica.Stats().Conflicts.Load()}
	if tab := n.replica.Table(); tab != nil {
		st.Epoch = tab.Epoch()
		st.Partitions = tab.Load()
		for p := range tab.Partitions() {
			if o := tab.Owners(p); o.Buddy == "" && o.Primary == n.cfg.Name {
				st.UnderReplicated++
			}
		}
		st.UnderReplicated += n.replica.Handoffs()
	}
	return st
}

// Count returns how many session copies the node holds as primary and as
// buddy.
func (n *Node) Count() (primary, backup int) { return n.replica.Count() }

// Stats returns the replication engine's counters.
func (n *Node) Stats() *replica.Stats { return n.replica.Stats() }

// Close drains the node and stops it: it stops being ready, tells the
// cluster it is leaving, stops acknowledging writes of its own, hands every
// copy it holds to the sessions' owners in the ring without it and waits
// for their acknowledgements, then leaves the membership and stops. ctx
// bounds the whole drain; what was not handed off by then is logged and
// returned as an error (those sessions still have their other copy).
func (n *Node) Close(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	var errs []error
	if err := n.members.SetState(ctx, cluster.StateLeaving); err != nil {
		errs = append(errs, fmt.Errorf("announce leaving: %w", err))
	}
	if err := n.drain(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := n.members.Leave(ctx); err != nil {
		errs = append(errs, fmt.Errorf("leave: %w", err))
	}
	n.shutdown()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("tandem: close %s: %w", n.cfg.Name, err)
	}
	return nil
}

// drain serves by the ring without this node, then hands its copies over.
func (n *Node) drain(ctx context.Context) error {
	cur := n.replica.Table()
	if cur == nil {
		return nil
	}
	var rest []ring.Member
	for _, m := range cur.Members() {
		if m.Name != n.cfg.Name {
			rest = append(rest, m)
		}
	}
	if len(rest) == 0 {
		n.log.Warn("last node leaving: its sessions go with it")
		return nil
	}
	tab, err := ring.New(n.cfg.Ring, cur.Epoch()+1, rest)
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	if err := n.replica.SetTable(tab); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	return n.replica.Drain(ctx, tab)
}

// Kill stops the node at once, without telling anyone, as a crash would.
// Tests use it.
func (n *Node) Kill() {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	if n.members != nil {
		n.members.Close()
	}
	n.shutdown()
}

// shutdown stops the node's own parts.
func (n *Node) shutdown() {
	select {
	case <-n.stop:
	default:
		close(n.stop)
	}
	n.watcher.Wait()
	n.server.Close()
	n.replica.Close()
	n.client.Close()
}
