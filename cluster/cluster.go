// Package cluster owns Tandem's membership: which nodes exist and which of
// them are alive. It runs hashicorp/memberlist (SWIM gossip with Lifeguard
// failure detection) and tells its user the current member set as a View;
// the user builds ring tables from View.Ring. The package knows nothing of
// sessions or replication.
//
// Each node gossips a small Meta about itself: a BootID that changes on every
// process start, its Peer and HTTP addresses, its lifecycle State (joining,
// active, leaving) and its ring settings. The package promises:
//
//   - Every node refuses peers whose ring settings differ from its own, in
//     both directions, so the members of one View always agree on how to
//     build the ring; a node that tries to join a cluster with other
//     settings gets an error that wraps ErrRingMismatch.
//   - View.Ring lists the alive (or merely suspect) nodes that are not
//     leaving; View.Epoch increases by one, on each node, whenever that list
//     changes, so an epoch names one ring member set on one node.
//   - OnChange sees every change in order, coalesced but never losing the
//     latest view, and never slows memberlist down.
//   - A crashed node is declared dead within a few seconds with the default
//     knobs; a node restarted under its old name, on any address, is taken
//     back with its new address and BootID; after a network cut heals, the
//     periodic re-join of the seeds merges the halves again.
//   - With gossip keys (Config.Keys), every gossip message is encrypted and
//     authenticated; a node without a key the cluster uses cannot join it
//     nor be heard by it, and keys rotate while the cluster runs
//     (Cluster.InstallKey, UseKey, RemoveKey).
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrJoin is wrapped by the error Start returns when it could join none of
// the seeds; the error also says why each seed failed.
var ErrJoin = errors.New("cluster: join failed")

// ErrRingMismatch is wrapped by the error a node gets when a peer has
// different ring settings: by Start when a seed's cluster was refused for
// that reason, and by the refusals memberlist logs.
var ErrRingMismatch = errors.New("cluster: ring settings differ")

// errClosed is returned by the methods of a closed Cluster.
var errClosed = fmt.Errorf("cluster: node is closed: %w", net.ErrClosed)

// ErrLeaving is returned by SetState for any state but StateLeaving once
// the node has announced it is leaving: leaving is final for a process.
var ErrLeaving = errors.New("cluster: the node is leaving")

// defaultOpTimeout bounds SetState and Leave when their context has no
// deadline.
const defaultOpTimeout = 5 * time.Second

// Cluster is this node's membership in a cluster. Its methods are safe for
// concurrent use.
type Cluster struct {
	cfg     Config // with defaults filled in
	log     *slog.Logger
	ml      *memberlist.Memberlist
	del     *delegate
	tracker *tracker
	addr    string // advertised gossip address
	port    uint16 // advertised gossip port
	bootID  string

	metaMu sync.Mutex // serialises changes of the local Meta
	// updateMu serialises memberlist's UpdateNode calls: each reads the
	// Meta when it runs and takes the next incarnation, so the last to
	// run, with the highest incarnation, carries the latest Meta (two at
	// once could pair an older Meta with the higher incarnation).
	updateMu sync.Mutex
	meta     Meta

	keyMu   sync.Mutex          // serialises keyring rotations and Keys
	keyring *memberlist.Keyring // gossip keys; nil when gossip is in the clear

	joined    int               // seed addresses Start joined
	takenSeen map[conflict]bool // live holders of our name already logged; the re-join loop's own

	stopRejoin chan struct{} // closed to stop the re-join loop
	rejoinDone chan struct{} // closed when the re-join loop has stopped
	stopNotify chan struct{} // closed to stop view delivery
	notifyDone chan struct{} // closed when view delivery has stopped

	lifeMu sync.Mutex  // serialises Leave and Close
	down   bool        // shut down; guarded by lifeMu
	closed atomic.Bool // Leave or Close has begun
}

// Start creates this node's memberlist, with local State joining, and joins
// cfg.Seeds. If there are seeds and none can be joined, it returns an error
// wrapping ErrJoin that gives each seed's failure; if seeds refused the join
// because their ring settings differ, the error also wraps ErrRingMismatch.
// ctx bounds the join; the node keeps running after ctx ends, until Leave or
// Close.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	cfg = cfg.withDefaults()
	bind, adv, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	bootID, err := newBootID()
	if err != nil {
		return nil, err
	}
	meta := Meta{BootID: bootID, Peer: cfg.Peer, HTTP: cfg.HTTP, State: StateJoining, Ring: cfg.Ring.String(), Witness: cfg.Witness}
	encoded, err := encodeMeta(meta)
	if err != nil {
		return nil, fmt.Errorf("cluster: start %s: %w", cfg.Name, err)
	}

	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("node", cfg.Name)
	c := &Cluster{
		cfg:        cfg,
		log:        logger.With("component", "cluster"),
		meta:       meta,
		bootID:     bootID,
		stopRejoin: make(chan struct{}),
		rejoinDone: make(chan struct{}),
		stopNotify: make(chan struct{}),
		notifyDone: make(chan struct{}),
	}
	c.tracker = newTracker(c.log)
	c.del = &delegate{name: cfg.Name, ring: meta.Ring, tracker: c.tracker}
	c.del.meta.Store(&encoded)

	mlc := memberlist.DefaultLocalConfig()
	mlc.Name = cfg.Name
	mlc.BindAddr = bind.host
	if mlc.BindAddr == "" {
		mlc.BindAddr = "0.0.0.0"
	}
	mlc.BindPort = bind.port
	mlc.AdvertiseAddr = adv.host
	mlc.AdvertisePort = adv.port
	if adv.port == 0 {
		mlc.AdvertisePort = bind.port
	}
	keys, err := cfg.gossipKeys()
	if err != nil {
		return nil, err
	}
	if c.keyring, err = newKeyring(keys); err != nil {
		return nil, fmt.Errorf("cluster: start %s: %w", cfg.Name, err)
	}
	if c.keyring != nil {
		mlc.Keyring = c.keyring
		mlc.GossipVerifyIncoming, mlc.GossipVerifyOutgoing = true, true
	}
	mlc.ProbeInterval = cfg.ProbeInterval
	mlc.ProbeTimeout = cfg.ProbeTimeout
	mlc.SuspicionMult = cfg.SuspicionMult
	mlc.GossipInterval = cfg.GossipInterval
	mlc.PushPullInterval = cfg.PushPullInterval
	mlc.TCPTimeout = cfg.TCPTimeout
	mlc.GossipToTheDeadTime = cfg.GossipToTheDeadTime
	mlc.DeadNodeReclaimTime = max(cfg.DeadNodeReclaimTime, 0)
	mlc.Logger = newMemberlistLogger(logger)
	if cfg.WrapTransport != nil {
		nt, err := bindTransport(mlc)
		if err != nil {
			return nil, fmt.Errorf("cluster: start %s on %s: %w", cfg.Name, cfg.BindAddr, err)
		}
		mlc.Transport = cfg.WrapTransport(nt)
	}
	mlc.Delegate = c.del
	mlc.Events = c.del
	mlc.Alive = c.del
	mlc.Merge = c.del
	mlc.Conflict = c.del

	// Deliver views from the start: Create reports this node's own join.
	go func() {
		defer close(c.notifyDone)
		c.tracker.deliver(c.stopNotify, cfg.Name, cfg.GossipToTheDeadTime, cfg.OnChange)
	}()
	ml, err := memberlist.Create(mlc)
	if err != nil {
		close(c.stopNotify)
		<-c.notifyDone
		return nil, fmt.Errorf("cluster: start %s on %s: %w", cfg.Name, cfg.BindAddr, err)
	}
	c.ml = ml
	local := ml.LocalNode()
	c.addr, c.port = local.Address(), local.Port

	c.joined, err = c.joinSeeds(ctx)
	if err == nil {
		err = c.checkName(ctx, false)
	}
	if err != nil {
		_ = ml.Shutdown()
		close(c.stopNotify)
		<-c.notifyDone
		return nil, err
	}

	go c.rejoinLoop()
	c.log.Info("started", "addr", c.addr, "boot_id", bootID, "seeds_joined", c.joined)
	return c, nil
}

// Name returns this node's name.
func (c *Cluster) Name() string { return c.cfg.Name }

// Addr returns the gossip address other nodes reach this node at, host:port,
// with the port actually bound when Config.BindAddr asked for port 0. It is
// what other nodes put in their Seeds.
func (c *Cluster) Addr() string { return c.addr }

// View returns the current membership as this node sees it.
func (c *Cluster) View() View {
	v, _ := c.tracker.snapshot()
	return v
}

// SetState sets this node's lifecycle State in its Meta and gossips it. The
// new state takes effect locally at once; SetState then waits, until ctx's
// deadline (5s if it has none) or ctx ends, for the update to be sent to the
// cluster, and returns an error if it was not. Gossip goes on regardless.
// Once the node is StateLeaving it stays so: any other state is refused
// with ErrLeaving, so that a late announcement (a node that found itself
// ready just as it was closed) cannot put a leaving node back in the
// rings in the middle of its drain.
func (c *Cluster) SetState(ctx context.Context, s State) error {
	if !s.valid() {
		return fmt.Errorf("cluster: set state: unknown state %d", uint8(s))
	}
	if c.closed.Load() {
		return fmt.Errorf("cluster: set state %s: %w", s, errClosed)
	}
	c.metaMu.Lock()
	m := c.meta
	if m.State == StateLeaving && s != StateLeaving {
		c.metaMu.Unlock()
		return fmt.Errorf("cluster: set state %s: %w", s, ErrLeaving)
	}
	m.State = s
	encoded, err := encodeMeta(m)
	if err == nil {
		c.meta = m
		c.del.meta.Store(&encoded)
	}
	c.metaMu.Unlock()
	if err != nil {
		return fmt.Errorf("cluster: set state %s: %w", s, err)
	}

	timeout := opTimeout(ctx)
	done := make(chan error, 1)
	go func() {
		c.updateMu.Lock()
		defer c.updateMu.Unlock()
		done <- c.ml.UpdateNode(timeout)
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("cluster: set state %s: %w", s, err)
	}
	return nil
}

// Leave leaves the cluster gracefully and shuts the node down: it tells the
// live members it is going, so they report it "left" rather than "dead",
// broadcasts memberlist's leave and waits for it to go out, until ctx's
// deadline (5s if it has none), then shuts down as Close does. Setting
// StateLeaving beforehand, so the others stop routing to this node while it
// can still answer, is the caller's job. Leave after Leave or Close fails.
func (c *Cluster) Leave(ctx context.Context) error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.down {
		return fmt.Errorf("cluster: leave: %w", errClosed)
	}
	c.closed.Store(true)
	deadline := time.Now().Add(opTimeout(ctx))
	c.stopRejoinLoop()

	c.tracker.goodbye(c.cfg.Name, c.bootID) // so our own view says "left" too
	c.sendGoodbyes(ctx, deadline)
	var errs []error
	if err := c.ml.Leave(max(time.Until(deadline), time.Millisecond)); err != nil {
		errs = append(errs, fmt.Errorf("cluster: leave: %w", err))
	}
	if err := c.shutdown(); err != nil {
		errs = append(errs, err)
	}
	c.log.Info("left")
	return errors.Join(errs...)
}

// Close shuts the node down without telling the cluster: the others will
// declare it dead once it stops answering probes, as if it had crashed. It
// stops every goroutine of the node, waiting for a running OnChange to
// return. Close after Close or Leave does nothing.
func (c *Cluster) Close() error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.down {
		return nil
	}
	c.closed.Store(true)
	c.stopRejoinLoop()
	return c.shutdown()
}

// shutdown stops memberlist and view delivery. The re-join loop must have
// stopped, and lifeMu be held.
func (c *Cluster) shutdown() error {
	c.down = true
	err := c.ml.Shutdown()
	close(c.stopNotify)
	<-c.notifyDone
	if err != nil {
		return fmt.Errorf("cluster: shutdown: %w", err)
	}
	return nil
}

// stopRejoinLoop stops the re-join loop and waits for it.
func (c *Cluster) stopRejoinLoop() {
	close(c.stopRejoin)
	<-c.rejoinDone
}

// opTimeout returns the time left until ctx's deadline, or
// defaultOpTimeout if it has none; at least a millisecond, since memberlist
// reads zero as "wait forever".
func opTimeout(ctx context.Context) time.Duration {
	d, ok := ctx.Deadline()
	if !ok {
		return defaultOpTimeout
	}
	return max(time.Until(d), time.Millisecond)
}

// memberlistNode returns a memberlist node record for m, to send it a
// message.
func memberlistNode(m Member) (*memberlist.Node, error) {
	ap, err := netip.ParseAddrPort(m.Addr)
	if err != nil {
		return nil, fmt.Errorf("member %s: gossip address %q: %w", m.Name, m.Addr, err)
	}
	return &memberlist.Node{Name: m.Name, Addr: ap.Addr().AsSlice(), Port: ap.Port()}, nil
}

// sendGoodbyes tells every other live member, concurrently, that this node
// is leaving; it gives up at deadline or when ctx ends. Goodbyes are best
// effort: a member that misses one reports this node "dead" instead of
// "left".
func (c *Cluster) sendGoodbyes(ctx context.Context, deadline time.Time) {
	msg, err := encodeGoodbye(c.cfg.Name, c.bootID)
	if err != nil {
		c.log.Warn("no goodbye sent", "error", err)
		return
	}
	// The addresses come from this node's own view, not from
	// memberlist.Members(): its nodes are memberlist's own records, which
	// it goes on updating while the goodbyes are sent.
	v, _ := c.tracker.snapshot()
	var wg sync.WaitGroup
	for _, m := range v.Members {
		if m.Name == c.cfg.Name || m.Health != healthAlive {
			continue
		}
		to, err := memberlistNode(m)
		if err != nil {
			c.log.Debug("no goodbye for a member without a usable address", "peer", m.Name, "error", err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.ml.SendReliable(to, msg); err != nil {
				c.log.Debug("goodbye not delivered", "peer", m.Name, "error", err)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case <-done:
	case <-ctx.Done():
	case <-timer.C:
	}
}

// normalizeAddr returns addr as host:port, adding defaultPort if it has
// none, so that it compares equal to a memberlist node's Address().
func normalizeAddr(addr string, defaultPort uint16) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return net.JoinHostPort(strings.Trim(addr, "[]"), strconv.Itoa(int(defaultPort)))
	}
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	return net.JoinHostPort(host, port)
}

// Announce exchanges full state with the nodes at the given gossip
// addresses (a memberlist push/pull), so they learn of this node's current
// incarnation now rather than at the next periodic exchange: a node
// restarted on new addresses uses it until the others have taken it back.
// It returns how many answered.
func (c *Cluster) Announce(ctx context.Context, addrs []string) (int, error) {
	if c.closed.Load() {
		return 0, fmt.Errorf("cluster: announce: %w", errClosed)
	}
	done := make(chan struct{})
	var n int
	var err error
	go func() {
		defer close(done)
		n, err = c.ml.Join(addrs)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return 0, fmt.Errorf("cluster: announce: %w", ctx.Err())
	}
	if err != nil {
		return n, fmt.Errorf("cluster: announce to %v: %w", addrs, err)
	}
	return n, nil
}

// rejoinLoop re-joins, every RejoinInterval, the seeds that are not live
// members, until stopRejoin is closed.
func (c *Cluster) rejoinLoop() {
	defer close(c.rejoinDone)
	if c.cfg.RejoinInterval < 0 {
		<-c.stopRejoin
		return
	}
	ticker := time.NewTicker(c.cfg.RejoinInterval)
	defer ticker.Stop()
	for {
		select {
		case <-c.stopRejoin:
			return
		case <-ticker.C:
		}
		c.rejoin()
	}
}

// rejoin resolves the seeds again and joins those of their addresses that
// are not live members, then checks that no live member holds this node's
// name (logging it if one does). It gives up when stopRejoin is closed.
func (c *Cluster) rejoin() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.stopRejoin:
			cancel()
		case <-ctx.Done():
		}
	}()
	targets, errs := c.targets(ctx)
	for _, err := range errs {
		c.log.Debug("re-join: seed not resolved", "error", err)
	}
	for _, t := range targets {
		if c.tracker.isAliveAddr(t.addr) {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if err := c.joinSeed(t); errors.Is(err, ErrRingMismatch) {
			c.log.Warn("re-join refused", "seed", t.seed, "addr", t.addr, "error", err)
		} else if err != nil {
			c.log.Debug("re-join failed", "seed", t.seed, "addr", t.addr, "error", err)
		} else {
			c.log.Info("re-joined seed", "seed", t.seed, "addr", t.addr)
		}
	}
	var taken *NameTakenError
	if err := c.checkName(ctx, true); errors.As(err, &taken) && c.reportTaken(taken) {
		c.log.Error("a live member at another address has this node's name; one of the two must be renamed or stopped",
			"member", taken.Name, "addr", taken.Addr, "boot_id", taken.BootID)
	}
}

// bindTransport binds memberlist's network transport for mlc, as
// memberlist.Create would, so that it can be wrapped; a bind port of 0 is
// replaced in mlc by the port bound. Binding UDP and TCP to one free port
// races with other programs, so port 0 is tried a few times.
func bindTransport(mlc *memberlist.Config) (*memberlist.NetTransport, error) {
	tries := 1
	if mlc.BindPort == 0 {
		tries = 10
	}
	var err error
	for range tries {
		var nt *memberlist.NetTransport
		nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{mlc.BindAddr}, BindPort: mlc.BindPort, Logger: mlc.Logger})
		if err == nil {
			if mlc.BindPort == 0 {
				mlc.BindPort = nt.GetAutoBindPort()
				if mlc.AdvertisePort == 0 {
					mlc.AdvertisePort = mlc.BindPort
				}
			}
			return nt, nil
		}
	}
	return nil, fmt.Errorf("bind gossip transport: %w", err)
}
