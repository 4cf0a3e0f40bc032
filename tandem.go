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
	// ErrIndeterminate: a retried write had already been applied, once, and
	// later writes superseded it before its result could be returned; or it
	// may have been applied before the session forgot it (Op.FirstSent).
	// It was not applied again: read the session to learn its state.
	ErrIndeterminate = replica.ErrIndeterminate
	// ErrRequestReused: a write carried the RequestID of an earlier write
	// to the session but other content (HTTP answers 422); nothing was
	// applied.
	ErrRequestReused = replica.ErrRequestReused
)

// Node is a running Tandem node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	replica *replica.Node
	client  *peer.Client
	server  *peer.Server
	members *cluster.Cluster
	peerLn  net.Listener

	peerAddr string // the peer listener's advertised address

	latency opLatencies // Do's durations by kind (latency.go)
	events  eventLog    // the latest ring changes (events.go)

	mu        sync.Mutex
	view      cluster.View
	joined    bool        // membership has finished joining; views are whole
	agreed    atomic.Bool // the other members once agreed on this node's ring
	announced time.Time   // when the node last announced itself to disagreeing members
	closed    bool
	stop      chan struct{}
	watcher   sync.WaitGroup

	// Early failover (failover.go), under mu: the incarnations (boot ids)
	// of members whose peer port refused connections, the checks running,
	// and the epoch of the last ring built.
	down     map[string]string
	checking map[string]bool
	epoch    uint64
	downs    atomic.Uint64 // members taken out on evidence from the peer wire

	requests peer.Counters // peer requests this node sent and received, by method
}

// Start starts a node: it listens for peers, joins the cluster through
// cfg.Join (or starts one) and begins taking over its share of sessions.
// The node serves requests at once, fetching sessions it has not been
// handed yet; Ready reports when the hand-off is done.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	cfg, err := cfg.checked()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{cfg: cfg, log: log.With("node", cfg.Name), stop: make(chan struct{})}
	serverTLS, clientTLS, err := cfg.PeerTLS.nodeTLS(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("tandem: start %s: %w", cfg.Name, err)
	}

	// The addresses others are given: never a wildcard (advertise.go).
	adv := &advertiser{advertise: cfg.Advertise, route: lookupDefaultRoute}
	httpAddr, gossipHost, err := cfg.advertisedAddrs(adv)
	if err != nil {
		return nil, fmt.Errorf("tandem: start %s: %w", cfg.Name, err)
	}
	cfg.HTTPAddr, n.cfg.HTTPAddr = httpAddr, httpAddr

	ln, err := net.Listen("tcp", cfg.PeerAddr)
	if err != nil {
		return nil, fmt.Errorf("tandem: start %s: listen for peers: %w", cfg.Name, err)
	}
	if n.peerAddr, err = adv.addr(ln.Addr().String()); err != nil {
		ln.Close()
		return nil, fmt.Errorf("tandem: start %s: peer address %s: %w", cfg.Name, cfg.PeerAddr, err)
	}
	n.peerLn = ln
	n.client = peer.NewClient(peer.ClientConfig{TLS: clientTLS, Logger: log, Counters: &n.requests})
	n.down, n.checking = map[string]string{}, map[string]bool{}
	var caller peer.Caller = n.client
	if cfg.Caller != nil {
		caller = cfg.Caller(caller)
	}
	caller = evidenceCaller{inner: caller, refused: n.refused}
	cc, rc, err := cfg.engineConfigs(n.peerAddr, caller, log, n.onMembership)
	if err != nil {
		n.client.Close()
		ln.Close()
		return nil, fmt.Errorf("tandem: start %s: %w", cfg.Name, err)
	}
	if gossipHost != "" {
		cc.AdvertiseAddr = gossipHost
	}
	n.replica = replica.New(rc)
	n.server = peer.NewServer(peer.HandlerFunc(n.servePeer), peer.ServerConfig{TLS: serverTLS, Logger: log, Counters: &n.requests})
	go n.server.Serve(ln)

	members, err := joinCluster(ctx, cc, cfg.JoinTimeout, n.log)
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
	view, err := firstView(ctx, members, members.Joined(), cfg.JoinTimeout)
	if err != nil {
		members.Close()
		n.shutdown()
		return nil, fmt.Errorf("tandem: start %s: %w", cfg.Name, err)
	}
	n.mu.Lock()
	n.joined = true
	n.mu.Unlock()
	n.onMembership(view)
	n.watcher.Add(2)
	go n.announceWhenReady()
	go n.every(time.Second, n.recheckDown)
	return n, nil
}

// checked returns cfg with the root's defaults filled in, or an error if it
// cannot start a node.
func (cfg Config) checked() (Config, error) {
	if cfg.Name == "" {
		return cfg, fmt.Errorf("tandem: start: %w: a node needs a name", ErrInvalid)
	}
	if cfg.Ring == (ring.Config{}) {
		cfg.Ring = ring.DefaultConfig()
	}
	if err := cfg.Ring.Validate(); err != nil {
		return cfg, fmt.Errorf("tandem: start %s: %w", cfg.Name, err)
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.Replica.Seats > 0 && cfg.Replica.AllowMinority {
		return cfg, fmt.Errorf("tandem: start %s: %w: Replica.Seats keeps every node without a majority of the seats from serving, and Replica.AllowMinority asks the smaller side of a cut to serve: choose one", cfg.Name, ErrInvalid)
	}
	return cfg, nil
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

// onMembership turns a membership view into the ring the node serves by
// (installRing, failover.go).
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
	n.replica.SetLeaving(leavingMembers(v, n.cfg.Name))
	n.installRing()
}

// leavingMembers returns the members of v other than self that said they
// are leaving and are still alive: their drains are under way.
func leavingMembers(v cluster.View, self string) []string {
	var out []string
	for _, m := range v.Members {
		if m.Name != self && m.Meta.State == cluster.StateLeaving && (m.Health == "alive" || m.Health == "suspect") {
			out = append(out, m.Name)
		}
	}
	return out
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
			if errors.Is(err, cluster.ErrLeaving) {
				return // closed since it found itself ready: leaving is final
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

// PeerAddr returns the address of the node's peer listener, as other
// nodes are given it: with the advertised host (Config.Advertise) if the
// listener is bound to a wildcard address.
func (n *Node) PeerAddr() string { return n.peerAddr }

// HTTPAddr returns Config.HTTPAddr as other nodes and clients are given it
// (with the advertised host if it names a wildcard address), or "".
func (n *Node) HTTPAddr() string { return n.cfg.HTTPAddr }

// Ready reports whether the node has joined, the other members agree on
// its ring (checked once, when it starts), and it holds every partition it
// owns. Health-checking balancers should send users only to ready nodes.
// Readiness says why it is not.
func (n *Node) Ready() bool { return n.Readiness().Ready }

// Now returns the node's wall time as its expiry and write stamps read it
// (a stepped system clock is followed slowly): turn an age a client gives,
// such as how long ago a retried request was first sent, into an
// Op.FirstSent with it.
func (n *Node) Now() time.Time { return n.replica.Wall() }

// Do runs op through the session's primary, retrying while owners change,
// until ctx ends (or Config.RequestTimeout, if ctx has no deadline).
func (n *Node) Do(ctx context.Context, op *Op) (*Session, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.RequestTimeout)
		defer cancel()
	}
	start := time.Now()
	s, err := n.replica.Do(ctx, engineOp(op))
	n.latency.observe(op.Kind, time.Since(start))
	return answerOf(s, err)
}

// Get reads session id and moves its idle deadline.
func (n *Node) Get(ctx context.Context, id string) (*Session, error) {
	return n.Do(ctx, &Op{Kind: OpGet, ID: id})
}

// Peek reads session id without moving its idle deadline.
func (n *Node) Peek(ctx context.Context, id string) (*Session, error) {
	return n.Do(ctx, &Op{Kind: OpGet, ID: id, NoTouch: true})
}

// Put creates or replaces session s.ID with s's principal and attributes
// and the node's default timeouts, and returns the stored session.
func (n *Node) Put(ctx context.Context, id, principal string, attributes map[string][]byte) (*Session, error) {
	op := &Op{Kind: OpPut, ID: id, Principal: principal, Attributes: raw(attributes)}
	return n.Do(ctx, op)
}

// Patch changes only the named attributes of session id: set replaces
// values, del removes names; attributes it does not name are left as they
// are, so concurrent patches of different attributes all survive.
func (n *Node) Patch(ctx context.Context, id string, set map[string][]byte, del []string) (*Session, error) {
	return n.Do(ctx, &Op{Kind: OpPatch, ID: id, Set: raw(set), Delete: del})
}

// SetPrincipal names the user session id belongs to, leaving its attributes
// as they are.
func (n *Node) SetPrincipal(ctx context.Context, id, principal string) (*Session, error) {
	return n.Do(ctx, &Op{Kind: OpPatch, ID: id, SetPrincipal: true, Principal: principal})
}

// InvalidatePrincipal deletes every session of principal across the
// cluster ("log this user out everywhere") and returns how many it deleted.
// It succeeds only once every member has listed its sessions of principal:
// while one cannot be reached, or the node is cut off from the majority,
// it fails with ErrUnavailable (having deleted what it found), and the
// caller retries.
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
	_, err := n.Do(ctx, &Op{Kind: OpDelete, ID: id})
	return err
}

// Touch moves session id's idle deadline without reading it.
func (n *Node) Touch(ctx context.Context, id string) error {
	_, err := n.Do(ctx, &Op{Kind: OpTouch, ID: id})
	return err
}

// raw converts encoded attribute values to the type Op carries.
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

// announceLeavingTimeout bounds Close's wait for its "leaving" state to be
// gossiped.
const announceLeavingTimeout = 3 * time.Second

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
	// Announcing "leaving" lets the others stop routing here before the
	// drain; it is a courtesy, bounded so that a broadcast memberlist
	// cannot finish (its last peer just left) does not eat the drain's
	// time. The leave itself, below, is what the others act on.
	announce, cancel := context.WithTimeout(ctx, announceLeavingTimeout)
	if err := n.members.SetState(announce, cluster.StateLeaving); err != nil {
		n.log.Warn("could not announce leaving; draining anyway", "err", err)
	}
	cancel()
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
	n.mu.Lock()
	n.epoch++
	epoch := n.epoch
	n.mu.Unlock()
	tab, err := ring.New(n.cfg.Ring, epoch, rest)
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
