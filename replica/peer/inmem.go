package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// NetworkConfig configures a Network. The zero value is ready to use.
type NetworkConfig struct {
	// Clock times the delays set with SetDelay. Share a ManualClock with
	// the test to end delays by advancing it instead of sleeping. Nil
	// means SystemClock().
	Clock Clock

	// MaxFrameSize is the largest frame payload (header plus body) a call
	// may carry either way, as ClientConfig.MaxFrameSize and
	// ServerConfig.MaxFrameSize are on the real wire: args that encode
	// larger fail with ErrFrameTooLarge before anything is sent, and a
	// reply that encodes larger is answered with code "internal". Zero
	// means the real default, 16 MiB.
	MaxFrameSize int

	// Logger receives handler panics (at Error, with the stack) and
	// replies that cannot be encoded (at Warn), as a Server logs them.
	// Nil discards logs.
	Logger *slog.Logger
}

// Network is an in-memory peer network for tests, in the manner of
// memberlist's MockTransport and raft's InmemTransport: nodes Listen at
// made-up addresses, and each node's InmemCaller reaches the others without
// sockets. It is safe for concurrent use.
//
// A call goes through the same steps as on the real wire: args are encoded
// into a request frame (subject to MaxFrameSize), the handler gets the
// frame's body, runs in its own goroutine with a context that Close
// cancels (not the caller's: a deadline does not cross the wire), and its
// answer comes back as a response frame: an error as an *Error with the
// code a Server would send, a panic as code "internal". Call returns when
// the answer arrives or the caller's ctx ends, whichever is first; failures
// wrap ErrUnreachable (and ctx.Err()) exactly as Client's do, with the same
// "call METHOD on ADDR" prefix.
//
// # Faults
//
// Links are directed by who calls: link (from, to) carries from's calls to
// to, with their replies. Cut(a, b) stops a's calls to b while b's calls to
// a still work, as a firewall rule dropping the connections a opens to b
// would. The network offers two ways for a node to be unreachable, which
// callers see differently:
//
//   - Lost: on a cut link (Cut, Partition) or a dropped call (SetDropRate)
//     the request vanishes. The handler never runs and the call blocks until
//     its ctx ends, then fails with ErrUnreachable and ctx.Err(), as a packet
//     lost in a real partition costs the caller its whole deadline. A lost
//     call whose ctx never ends blocks forever.
//   - Refused: a call to an address nobody listens on (never listened, or
//     closed with Close) or marked with Refuse fails at once with
//     ErrUnreachable and syscall.ECONNREFUSED, as a dial to a closed port
//     does.
//
// Hang(addr, true) makes addr a stopped process (SIGSTOP): requests reach it
// but its handlers do not start, and replies of handlers already running are
// held, until Hang(addr, false) resumes it; callers meanwhile wait until
// their ctx ends.
//
// Link faults (cut, drop, delay) apply to calls made after they are set: a
// call already lost stays lost after Heal, and one already delayed keeps its
// delay. Refusals are checked when a request arrives (after any delay),
// hangs both when it arrives and when its reply leaves.
type Network struct {
	clock    Clock
	maxFrame int
	log      *slog.Logger
	nextID   atomic.Uint64 // request IDs, as a Client numbers its requests
	activity atomic.Uint64 // calls started plus calls ended: Quiet watches it
	inFlight atomic.Int64  // calls started and not yet ended
	starts   sync.RWMutex  // read-held to start a call; whileQuiet holds it

	mu      sync.Mutex
	nodes   map[string]*endpoint
	links   map[link]linkFault
	refused map[string]bool
	hung    map[string]chan struct{} // closed when the address resumes
	rng     *rand.Rand
	stats   map[CallKey]*CallStats
}

// link is one direction between two addresses: from's calls to to.
type link struct{ from, to string }

// linkFault is the set of faults injected on one link.
type linkFault struct {
	cut   bool
	delay time.Duration
	drop  float64
}

// endpoint is one listening address.
type endpoint struct {
	h      Handler
	ctx    context.Context // parents handler contexts; cancelled by Close
	cancel context.CancelFunc
	done   chan struct{}  // closed by Close: calls waiting on this node fail
	closed bool           // guarded by Network.mu
	wg     sync.WaitGroup // running handlers; Add only under Network.mu while !closed
}

// CallKey names a kind of call for Stats: who called, whom, and what.
type CallKey struct {
	// From is the address given to Network.Caller.
	From string
	// To is the address called.
	To string
	// Method is the method called.
	Method string
}

// CallStats counts calls for Stats. Every count covers finished and
// unfinished calls alike, so they may be read while calls are in flight.
type CallStats struct {
	// Calls is the number of calls made.
	Calls int
	// Delivered is the number whose request reached the handler: calls not
	// lost, refused or abandoned on the way.
	Delivered int
	// Failed is the number that returned an error of any kind: transport
	// failures, *Error answers, encoding and decoding errors.
	Failed int
	// Unreachable is the number of failures that wrap ErrUnreachable.
	Unreachable int
}

// add adds o's counts to s.
func (s *CallStats) add(o CallStats) {
	s.Calls += o.Calls
	s.Delivered += o.Delivered
	s.Failed += o.Failed
	s.Unreachable += o.Unreachable
}

// errNodeClosed fails calls waiting on a node that Close took down.
var errNodeClosed = fmt.Errorf("%w: connection lost: node closed", ErrUnreachable)

// NewNetwork returns an empty network with no faults, its drop decisions
// seeded with 1 so runs are reproducible until Seed is called.
func NewNetwork(cfg NetworkConfig) *Network {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock()
	}
	if cfg.MaxFrameSize <= 0 {
		cfg.MaxFrameSize = DefaultClientConfig().MaxFrameSize
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Network{
		clock:    cfg.Clock,
		maxFrame: cfg.MaxFrameSize,
		log:      cfg.Logger,
		nodes:    make(map[string]*endpoint),
		links:    make(map[link]linkFault),
		refused:  make(map[string]bool),
		hung:     make(map[string]chan struct{}),
		stats:    make(map[CallKey]*CallStats),
	}
	n.Seed(1)
	return n
}

// Listen serves h at addr until Close(addr). It fails if addr is taken.
func (n *Network) Listen(addr string, h Handler) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.nodes[addr]; ok {
		return fmt.Errorf("listen %s: %w", addr, syscall.EADDRINUSE)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.nodes[addr] = &endpoint{h: h, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	return nil
}

// Close stops serving addr, as Server.Close does: calls waiting on it fail
// with ErrUnreachable, its handlers' contexts are cancelled (their answers
// are discarded), and Close waits for them to return. Later calls to addr
// are refused until it is listened on again. Closing an address nobody
// listens on does nothing.
func (n *Network) Close(addr string) {
	n.mu.Lock()
	ep := n.nodes[addr]
	if ep == nil {
		n.mu.Unlock()
		return
	}
	delete(n.nodes, addr)
	ep.closed = true
	close(ep.done)
	n.mu.Unlock()

	ep.cancel()
	ep.wg.Wait()
}

// Caller returns a Caller that calls as the node at address from; link
// faults and Stats are keyed by it. from need not be listening.
func (n *Network) Caller(from string) *InmemCaller {
	return &InmemCaller{net: n, from: from}
}

// Seed reseeds the random source behind drop decisions. Equal seeds and an
// equal sequence of calls over dropping links give equal drops.
func (n *Network) Seed(seed uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// Cut loses every call from makes to to (not the other way) until Heal or
// HealAll: the call blocks until its ctx ends. See Network for lost versus
// refused calls.
func (n *Network) Cut(from, to string) {
	n.updateLink(from, to, func(f *linkFault) { f.cut = true })
}

// Partition cuts both ways between every two nodes in different groups.
// The groups should be disjoint. Links within a group, and of nodes in no
// group, are left as they are. Undo it with HealAll, or Heal link by link.
func (n *Network) Partition(groups ...[]string) {
	for i, g := range groups {
		for _, h := range groups[i+1:] {
			for _, a := range g {
				for _, b := range h {
					if a != b {
						n.Cut(a, b)
						n.Cut(b, a)
					}
				}
			}
		}
	}
}

// SetDelay adds latency d before each call from makes to to reaches its
// handler, timed by the network's Clock. If ctx ends during the delay the
// call fails with ErrUnreachable and ctx.Err() without being delivered.
// Zero removes the delay.
func (n *Network) SetDelay(from, to string, d time.Duration) {
	n.updateLink(from, to, func(f *linkFault) { f.delay = max(d, 0) })
}

// SetDropRate loses each call from makes to to with probability p (clamped
// to [0, 1]), decided by the network's seeded random source when the call
// starts. A lost call behaves as on a cut link. Zero removes the fault.
func (n *Network) SetDropRate(from, to string, p float64) {
	n.updateLink(from, to, func(f *linkFault) { f.drop = min(max(p, 0), 1) })
}

// Heal removes the faults of the link from → to: cut, delay and drop rate.
func (n *Network) Heal(from, to string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.links, link{from, to})
}

// HealAll removes every fault: every link's, every refusal and every hang
// (hung nodes resume).
func (n *Network) HealAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.links)
	clear(n.refused)
	for addr, resume := range n.hung {
		close(resume)
		delete(n.hung, addr)
	}
}

// Refuse, while on, makes calls to addr fail at once with ErrUnreachable and
// syscall.ECONNREFUSED, as if nothing listened there, while its handler
// stays registered and handlers already running finish normally.
func (n *Network) Refuse(addr string, on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if on {
		n.refused[addr] = true
	} else {
		delete(n.refused, addr)
	}
}

// Hang, while on, stops the node at addr like a SIGSTOP: calls to it are
// accepted but not served, and replies of its running handlers are held,
// so callers wait until their ctx ends. Hang(addr, false) resumes it:
// calls still waiting are then served and held replies sent. Only calls to
// addr are affected, not calls addr makes.
func (n *Network) Hang(addr string, on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	resume, hung := n.hung[addr]
	switch {
	case on && !hung:
		n.hung[addr] = make(chan struct{})
	case !on && hung:
		close(resume)
		delete(n.hung, addr)
	}
}

// Activity returns a counter that grows whenever a call starts or ends,
// and the number of calls under way. An Autopilot watches them to advance
// a ManualClock only once the nodes have stopped talking.
func (n *Network) Activity() (changes uint64, inFlight int64) {
	return n.activity.Load(), n.inFlight.Load()
}

// whileQuiet runs f, with no call able to start meanwhile, if the
// activity counter still reads seen, and reports whether it did. An
// Autopilot advances the clock in f, so that its judgement of the
// network as idle cannot be overtaken by a call starting between the
// judgement and the advance.
func (n *Network) whileQuiet(seen uint64, f func()) bool {
	n.starts.Lock()
	defer n.starts.Unlock()
	if n.activity.Load() != seen {
		return false
	}
	f()
	return true
}

// Stats returns a snapshot of the call counts per (from, to, method). Kinds
// of call never made are absent.
func (n *Network) Stats() map[CallKey]CallStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[CallKey]CallStats, len(n.stats))
	for k, s := range n.stats {
		out[k] = *s
	}
	return out
}

// Total returns the call counts summed over every kind of call.
func (n *Network) Total() CallStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	var t CallStats
	for _, s := range n.stats {
		t.add(*s)
	}
	return t
}

// updateLink edits a link's faults under the lock, forgetting it once clear.
func (n *Network) updateLink(from, to string, edit func(*linkFault)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := link{from, to}
	f := n.links[l]
	edit(&f)
	if f == (linkFault{}) {
		delete(n.links, l)
	} else {
		n.links[l] = f
	}
}

// count adds o to key's counts.
func (n *Network) count(key CallKey, o CallStats) {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.stats[key]
	if s == nil {
		s = new(CallStats)
		n.stats[key] = s
	}
	s.add(o)
}

// InmemCaller is the Caller of one node on a Network.
type InmemCaller struct {
	net  *Network
	from string
}

var _ Caller = (*InmemCaller)(nil)

// Call sends method with args to the node at addr over the network and
// decodes the answer into reply, which may be nil to discard it. Its errors
// are those of Client.Call: a handler error is a wrapped *Error; transport
// failures, refusals, lost calls and ctx expiry wrap ErrUnreachable (and
// ctx.Err()); args over MaxFrameSize wrap ErrFrameTooLarge. Every error is
// prefixed with "call METHOD on ADDR".
func (c *InmemCaller) Call(ctx context.Context, addr, method string, args, reply any) error {
	key := CallKey{From: c.from, To: addr, Method: method}
	c.net.count(key, CallStats{Calls: 1})
	if err := c.net.call(ctx, key, args, reply); err != nil {
		failed := CallStats{Failed: 1}
		if errors.Is(err, ErrUnreachable) {
			failed.Unreachable = 1
		}
		c.net.count(key, failed)
		return fmt.Errorf("call %s on %s: %w", method, addr, err)
	}
	return nil
}

// response is what a handler goroutine hands back to its caller: a response
// frame's payload, or a failure that broke the "connection".
type response struct {
	payload []byte
	err     error
}

// call is InmemCaller.Call without the error prefix and the stats.
func (n *Network) call(ctx context.Context, key CallKey, args, reply any) error {
	n.starts.RLock()
	n.activity.Add(1)
	n.inFlight.Add(1)
	n.starts.RUnlock()
	defer func() {
		n.inFlight.Add(-1)
		n.activity.Add(1)
	}()
	id := n.nextID.Add(1)
	req, err := n.encode(Header{ID: id, Kind: KindRequest, Method: key.Method}, args)
	if err != nil {
		return err
	}
	if err := n.transit(ctx, key); err != nil {
		return err
	}
	ep, err := n.arrive(ctx, key.To)
	if err != nil {
		return err
	}
	n.count(key, CallStats{Delivered: 1})

	res := make(chan response, 1)
	gone := make(chan struct{}) // closed when the caller stops waiting
	go n.serve(ep, key.To, req, res, gone)
	select {
	case r := <-res:
		if r.err != nil {
			return r.err
		}
		return decodeResponse(r.payload, reply)
	case <-ctx.Done():
		close(gone)
		return unreachable(ctx.Err())
	case <-ep.done:
		close(gone)
		return errNodeClosed
	}
}

// transit applies the faults of key's link: a lost call waits for its ctx,
// a delayed one for the clock.
func (n *Network) transit(ctx context.Context, key CallKey) error {
	n.mu.Lock()
	f := n.links[link{key.From, key.To}]
	lost := f.cut || (f.drop > 0 && n.rng.Float64() < f.drop)
	n.mu.Unlock()

	if lost {
		<-ctx.Done()
		return unreachable(ctx.Err())
	}
	if f.delay > 0 {
		t := n.clock.NewTimer(f.delay)
		select {
		case <-t.Chan():
		case <-ctx.Done():
			t.Stop()
			return unreachable(ctx.Err())
		}
	}
	return nil
}

// arrive delivers a request to addr: it is refused if nobody listens there
// or addr refuses, waits while addr is hung, and otherwise registers a
// handler run with the endpoint, which the caller must start.
func (n *Network) arrive(ctx context.Context, addr string) (*endpoint, error) {
	for {
		n.mu.Lock()
		ep, resume := n.nodes[addr], n.hung[addr]
		if ep == nil || n.refused[addr] {
			n.mu.Unlock()
			return nil, unreachable(fmt.Errorf("dial %s: %w", addr, syscall.ECONNREFUSED))
		}
		if resume == nil {
			ep.wg.Add(1) // ep is not closed: Close removes it from nodes first
			n.mu.Unlock()
			return ep, nil
		}
		n.mu.Unlock()

		select {
		case <-resume:
		case <-ctx.Done():
			return nil, unreachable(ctx.Err())
		case <-ep.done:
			return nil, errNodeClosed
		}
	}
}

// serve runs ep's handler for the request frame req and hands the response
// to res, as Server.handle does, unless the node closes or hangs until the
// caller is gone.
func (n *Network) serve(ep *endpoint, addr string, req []byte, res chan<- response, gone <-chan struct{}) {
	defer ep.wg.Done()
	var r response
	h, body, err := decodePayload(req)
	if err != nil {
		// The real server drops a connection that sends a bad frame.
		r.err = fmt.Errorf("%w: connection lost: server refused request: %w", ErrUnreachable, err)
	} else {
		r = n.handle(ep, h, body)
	}
	if n.holdReply(ep, addr, gone) {
		res <- r // buffered, never blocks
	}
}

// handle runs the handler and encodes its answer as a response frame.
func (n *Network) handle(ep *endpoint, req Header, body msgpack.RawMessage) response {
	resp := Header{ID: req.ID, Kind: KindResponse}
	reply, err := n.invoke(ep, req.Method, body)
	if err != nil {
		resp.Code, resp.Msg = errorFields(err)
		reply = nil
	}
	payload, err := n.encode(resp, reply)
	if err != nil {
		n.log.Warn("peer: cannot encode reply", "method", req.Method, "err", err)
		resp.Code, resp.Msg = codeInternal, err.Error()
		if payload, err = n.encode(resp, nil); err != nil {
			// The real server closes the connection when not even the
			// error fits.
			return response{err: fmt.Errorf("%w: connection lost: %w", ErrUnreachable, err)}
		}
	}
	return response{payload: payload}
}

// invoke calls the handler, turning a panic into an internal error.
func (n *Network) invoke(ep *endpoint, method string, body msgpack.RawMessage) (reply any, err error) {
	defer func() {
		if p := recover(); p != nil {
			n.log.Error("peer: handler panic", "method", method, "panic", p, "stack", string(debug.Stack()))
			reply, err = nil, &Error{Code: codeInternal, Message: fmt.Sprintf("handler panic: %v", p)}
		}
	}()
	return ep.h.ServePeer(ep.ctx, method, body)
}

// holdReply waits while addr is hung. It reports whether the reply should
// be sent: not if the node closed or the caller stopped waiting.
func (n *Network) holdReply(ep *endpoint, addr string, gone <-chan struct{}) bool {
	for {
		n.mu.Lock()
		closed, resume := ep.closed, n.hung[addr]
		n.mu.Unlock()
		if closed {
			return false // answers cut short by Close are discarded, as on the wire
		}
		if resume == nil {
			return true
		}
		select {
		case <-resume:
		case <-ep.done:
			return false
		case <-gone:
			return false
		}
	}
}

// encode renders a frame's payload (header and body, without the length
// prefix) into a fresh slice, refusing one over the frame size limit.
func (n *Network) encode(h Header, body any) ([]byte, error) {
	fb := getFrameBuf()
	defer putFrameBuf(fb)
	frame, err := fb.encode(h, body, n.maxFrame)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(frame[lenSize:]), nil
}

// decodeResponse turns a response payload into the call's result, as
// Client.call does.
func decodeResponse(payload []byte, reply any) error {
	h, body, err := decodePayload(payload)
	if err != nil {
		return fmt.Errorf("%w: connection lost: %w", ErrUnreachable, err)
	}
	if h.Code != "" {
		return &Error{Code: h.Code, Message: h.Msg}
	}
	if reply != nil {
		if err := decodeReply(body, reply); err != nil {
			return err
		}
	}
	return nil
}
