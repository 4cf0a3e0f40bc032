package tandem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandem-io/tandem/replica"
	"github.com/tandem-io/tandem/replica/peer"
	"github.com/tandem-io/tandem/ring"
)

// ClientConfig configures a Client. Zero fields take DefaultClientConfig's
// values.
type ClientConfig struct {
	// RequestTimeout bounds each operation whose context has no deadline,
	// retries included (default 5s).
	RequestTimeout time.Duration
	// CallTimeout bounds each call to one node, so a hung primary costs at
	// most this much before a read goes to the buddy (default 1s).
	CallTimeout time.Duration
	// RefreshInterval is how often the client asks a node for the ring, on
	// top of asking whenever a node says it is not the owner or cannot be
	// reached (default 2s).
	RefreshInterval time.Duration
	// Peer configures the connections to nodes: TLS, dial timeout, redial
	// backoff. Zero fields take peer.DefaultClientConfig's values. Nodes
	// that speak mutual TLS (Config.PeerTLS) admit a client only with a
	// client certificate from their CA: set Peer.TLS from
	// PeerTLS.ClientTLS.
	Peer peer.ClientConfig
	// Logger receives ring changes and refresh failures (default: discard).
	Logger *slog.Logger
}

// DefaultClientConfig returns a client's default settings.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{RequestTimeout: 5 * time.Second, CallTimeout: time.Second, RefreshInterval: 2 * time.Second}
}

// withDefaults fills c's zero fields.
func (c ClientConfig) withDefaults() ClientConfig {
	def := DefaultClientConfig()
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = def.RequestTimeout
	}
	if c.CallTimeout <= 0 {
		c.CallTimeout = def.CallTimeout
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = def.RefreshInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Client reaches a Tandem cluster from a program that is not a node: it
// keeps a copy of the ring and sends each operation straight to the
// session's primary over the peer wire, with no forwarding hop. When the
// primary cannot be reached, reads go to the buddy at once; writes wait,
// retrying, until the cluster has promoted a new primary. It follows ring
// changes: whenever a node says it is not the owner or cannot be reached,
// and every RefreshInterval. It is safe for concurrent use.
type Client struct {
	cfg  ClientConfig
	log  *slog.Logger
	peer *peer.Client
	tab  atomic.Pointer[ring.Table]

	mu    sync.Mutex
	addrs []string // peer addresses of the seeds and of every member seen
	known map[string]bool

	refreshing chan struct{} // holds a token while a refresh runs: one at a time

	ctx       context.Context // ends with Close
	cancel    context.CancelFunc
	done      sync.WaitGroup
	closeOnce sync.Once
}

// Dial returns a client of the cluster that the nodes at seeds (their peer
// addresses, Node.PeerAddr) belong to. It learns the ring from the first
// seed that answers, retrying until ctx ends (or cfg.RequestTimeout, if
// ctx has no deadline).
func Dial(ctx context.Context, seeds []string, cfg ClientConfig) (*Client, error) {
	if len(seeds) == 0 {
		return nil, fmt.Errorf("tandem: dial: %w: no seed addresses", ErrInvalid)
	}
	cfg = cfg.withDefaults()
	pc := cfg.Peer
	if pc.Logger == nil {
		pc.Logger = cfg.Logger
	}
	c := &Client{cfg: cfg, log: cfg.Logger, peer: peer.NewClient(pc), known: map[string]bool{}, refreshing: make(chan struct{}, 1)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.remember(seeds)
	ctx, cancel := c.bound(ctx)
	defer cancel()
	var backoff replica.Backoff
	for {
		err := c.refresh(ctx, "", nil)
		if err == nil {
			break
		}
		if !backoff.Wait(ctx) {
			c.Close()
			return nil, fmt.Errorf("tandem: dial %v: %w: %w", seeds, ErrUnavailable, err)
		}
	}
	c.done.Add(1)
	go c.refreshLoop()
	return c, nil
}

// Close stops the client's background refresh and closes its connections.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		c.done.Wait()
		c.peer.Close()
	})
	return nil
}

// Ring returns the ring the client currently sends requests by.
func (c *Client) Ring() *ring.Table { return c.tab.Load() }

// bound gives ctx the client's RequestTimeout if it has no deadline.
func (c *Client) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.cfg.RequestTimeout)
}

// remember adds peer addresses to the ones the client asks for the ring.
func (c *Client) remember(addrs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range addrs {
		if a != "" && !c.known[a] {
			c.known[a] = true
			c.addrs = append(c.addrs, a)
		}
	}
}

// candidates returns the addresses to ask for the ring: prefer first, then
// every known address in random order.
func (c *Client) candidates(prefer string) []string {
	c.mu.Lock()
	out := append([]string(nil), c.addrs...)
	c.mu.Unlock()
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	if prefer != "" {
		out = append([]string{prefer}, out...)
	}
	return out
}

// refresh asks known nodes, prefer first, for their ring until one
// answers, and adopts it. If seen is not nil and the client's ring is no
// longer seen, another caller refreshed meanwhile and refresh does nothing.
func (c *Client) refresh(ctx context.Context, prefer string, seen *ring.Table) error {
	select {
	case c.refreshing <- struct{}{}:
		defer func() { <-c.refreshing }()
	case <-ctx.Done():
		return ctx.Err()
	}
	if seen != nil && c.tab.Load() != seen {
		return nil
	}
	var errs []error
	for _, addr := range c.candidates(prefer) {
		var info replica.RingInfo
		cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
		err := c.peer.Call(cctx, addr, replica.MethodRing, struct{}{}, &info)
		cancel()
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		tab, err := info.Table()
		if err != nil {
			errs = append(errs, fmt.Errorf("ring from %s: %w", addr, err))
			continue
		}
		peers := make([]string, 0, len(info.Members))
		for _, m := range info.Members {
			peers = append(peers, m.Peer)
		}
		c.remember(peers)
		if old := c.tab.Swap(tab); old == nil || old.Fingerprint() != tab.Fingerprint() {
			c.log.Debug("tandem client: new ring", "from", addr, "members", len(info.Members))
		}
		return nil
	}
	return fmt.Errorf("no node answered for the ring: %w", errors.Join(errs...))
}

// refreshLoop refreshes the ring every RefreshInterval until Close.
func (c *Client) refreshLoop() {
	defer c.done.Done()
	t := time.NewTicker(c.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.RequestTimeout)
		if err := c.refresh(ctx, "", nil); err != nil && c.ctx.Err() == nil {
			c.log.Warn("tandem client: cannot refresh the ring", "err", err)
		}
		cancel()
	}
}

// Do runs req on the session's primary, retrying while owners change or
// cannot be reached, until ctx ends (or ClientConfig.RequestTimeout, if
// ctx has no deadline). Reads whose primary cannot be reached are
// answered by the buddy.
func (c *Client) Do(ctx context.Context, req *Op) (*Session, error) {
	op := engineOp(req)
	if err := op.Validate(); err != nil {
		return nil, err
	}
	if op.Kind != replica.OpGet && op.Kind != replica.OpTouch && op.RequestID == "" {
		o := *op
		o.RequestID = replica.NewRequestID() // retries below carry it, so no write applies twice
		op = &o
	}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	s, err := replica.Retry{}.Do(ctx, op, nil, func(ctx context.Context) (*replica.Session, error) { return c.try(ctx, op) })
	return answerOf(s, err)
}

// try runs op once by the client's ring (replica.Route: the primary, and
// for a get it cannot answer, the buddy), and refreshes the ring when the
// answer says it is out of date.
func (c *Client) try(ctx context.Context, op *replica.Op) (*replica.Session, error) {
	tab := c.tab.Load()
	s, err := replica.Route(ctx, tab, op, replica.Hops{
		Primary: func(ctx context.Context, name string) (*replica.Session, error) {
			m, _ := tab.Member(name)
			var reply replica.OpReply
			// A write may make the primary fetch and replicate before it answers.
			wait := replica.ForwardTimeout(op, c.cfg.CallTimeout)
			sent := *op
			sent.NotAfter = time.Now().Add(wait).UnixNano() // a late delivery is refused, never applied
			if err := c.call(ctx, wait, m.Peer, replica.MethodOp, &sent, &reply); err != nil {
				return nil, fmt.Errorf("%s %s on primary %s: %w", op.Kind, op.ID, name, err)
			}
			return reply.Session, nil
		},
		Buddy: func(ctx context.Context, name string) (*replica.Session, error) {
			m, _ := tab.Member(name)
			var reply replica.ReadReply
			err := c.call(ctx, c.cfg.CallTimeout, m.Peer, replica.MethodRead, replica.ReadRequest{Partition: tab.Partition(op.ID), ID: op.ID}, &reply)
			return reply.Session, err
		},
	})
	switch {
	case errors.Is(err, replica.ErrNotOwner):
		// A node's ring differs from ours: take the primary's view.
		primary, _ := tab.Member(tab.OwnersOf(op.ID).Primary)
		_ = c.refresh(ctx, primary.Peer, tab)
	case errors.Is(err, peer.ErrUnreachable):
		_ = c.refresh(ctx, "", tab)
	}
	return s, err
}

// call sends one request to the node at addr, bounded by timeout, and
// turns a remote error back into its sentinel. Transport failures keep
// wrapping peer.ErrUnreachable and also wrap ErrUnavailable.
func (c *Client) call(ctx context.Context, timeout time.Duration, addr, method string, args, reply any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return replica.FromWire(c.peer.Call(ctx, addr, method, args, reply))
}

// Get reads session id and moves its idle deadline.
func (c *Client) Get(ctx context.Context, id string) (*Session, error) {
	return c.Do(ctx, &Op{Kind: OpGet, ID: id})
}

// Peek reads session id without moving its idle deadline.
func (c *Client) Peek(ctx context.Context, id string) (*Session, error) {
	return c.Do(ctx, &Op{Kind: OpGet, ID: id, NoTouch: true})
}

// Put creates or replaces session id with principal and attributes and
// the cluster's default timeouts, and returns the stored session.
func (c *Client) Put(ctx context.Context, id, principal string, attributes map[string][]byte) (*Session, error) {
	return c.Do(ctx, &Op{Kind: OpPut, ID: id, Principal: principal, Attributes: raw(attributes)})
}

// Patch changes only the named attributes of session id: set replaces
// values, del removes names; see Node.Patch.
func (c *Client) Patch(ctx context.Context, id string, set map[string][]byte, del []string) (*Session, error) {
	return c.Do(ctx, &Op{Kind: OpPatch, ID: id, Set: raw(set), Delete: del})
}

// SetPrincipal names the user session id belongs to, leaving its
// attributes as they are.
func (c *Client) SetPrincipal(ctx context.Context, id, principal string) (*Session, error) {
	return c.Do(ctx, &Op{Kind: OpPatch, ID: id, SetPrincipal: true, Principal: principal})
}

// Delete deletes session id.
func (c *Client) Delete(ctx context.Context, id string) error {
	_, err := c.Do(ctx, &Op{Kind: OpDelete, ID: id})
	return err
}

// Touch moves session id's idle deadline without reading it.
func (c *Client) Touch(ctx context.Context, id string) error {
	_, err := c.Do(ctx, &Op{Kind: OpTouch, ID: id})
	return err
}
