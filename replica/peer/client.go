package peer

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// ClientConfig configures a Client. Zero fields take the value from
// DefaultClientConfig, so a partially filled config is fine.
type ClientConfig struct {
	// DialTimeout bounds how long dialling a node (TCP connect plus TLS
	// handshake) may take. It applies to every dial regardless of the
	// deadline of the call that triggered it, because the resulting
	// connection is shared by later calls. Default 1s.
	DialTimeout time.Duration

	// MaxFrameSize is the largest frame payload (header plus body, without
	// the 4-byte length prefix) the client sends or accepts. A call whose
	// args encode larger fails with ErrFrameTooLarge without touching the
	// connection; a larger response is a protocol error that breaks the
	// connection. It must not exceed the server's MaxFrameSize for requests
	// to get through. Default 16 MiB.
	MaxFrameSize int

	// MinBackoff and MaxBackoff bound the wait before redialling an address
	// whose last dial failed. The first failure waits MinBackoff, each
	// further consecutive failure doubles the wait up to MaxBackoff, and a
	// successful dial resets it. A call made while its address is in
	// backoff fails fast with ErrUnreachable instead of dialling, so a dead
	// node costs callers nothing. A connection that breaks after a
	// successful dial is redialled at once. Defaults 50ms and 2s.
	MinBackoff, MaxBackoff time.Duration

	// TLS, when non-nil, makes the client speak TLS with this
	// configuration. If ServerName is empty it is taken from the address
	// being dialled. Nil means plain TCP. MutualTLS builds a node's and
	// ClientTLS a smart client's.
	TLS *tls.Config

	// Logger receives connection events: Debug for routine connects,
	// disconnects and dial failures, Warn for protocol violations by the
	// remote node. Nil discards logs.
	Logger *slog.Logger

	// Counters count every request the client writes (Counters.Sent).
	// Nil means ProcessCounters().
	Counters *Counters
}

// DefaultClientConfig returns the default client settings: 1s dial timeout,
// 16 MiB frames, 50ms..2s redial backoff, plain TCP, no logging.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{
		DialTimeout:  time.Second,
		MaxFrameSize: 16 << 20,
		MinBackoff:   50 * time.Millisecond,
		MaxBackoff:   2 * time.Second,
	}
}

// Client calls other nodes over pipelined, long-lived connections, one per
// remote address. It is safe for concurrent use; see the package
// documentation for its guarantees.
type Client struct {
	cfg      ClientConfig
	log      *slog.Logger
	counters *Counters
	dialer   interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	}
	ctx    context.Context // cancelled by Close; parents every dial
	cancel context.CancelFunc
	wg     sync.WaitGroup // dial and read goroutines

	mu      sync.Mutex
	remotes map[string]*remote
	closed  bool
}

// remote is the client's state for one address. Guarded by Client.mu.
type remote struct {
	conn    *conn         // live connection, nil if none
	dialing chan struct{} // closed when the dial in progress ends; nil if none
	backoff time.Duration // current redial backoff; zero after a good dial
	retryAt time.Time     // no dial before this
	lastErr error         // why the last dial failed
}

// errClientClosed fails calls made on, or pending when, the client closes.
var errClientClosed = fmt.Errorf("%w: client closed", ErrUnreachable)

var _ Caller = (*Client)(nil)

// NewClient returns a Client; it dials nothing until the first Call.
func NewClient(cfg ClientConfig) *Client {
	def := DefaultClientConfig()
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = def.DialTimeout
	}
	if cfg.MaxFrameSize <= 0 {
		cfg.MaxFrameSize = def.MaxFrameSize
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = def.MinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = def.MaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	c := &Client{cfg: cfg, log: cfg.Logger, counters: cfg.Counters, remotes: make(map[string]*remote)}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.counters == nil {
		c.counters = ProcessCounters()
	}
	if cfg.TLS != nil {
		c.dialer = &tls.Dialer{Config: cfg.TLS}
	} else {
		c.dialer = &net.Dialer{}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// Call sends method with args to the node at addr and decodes the answer into
// reply, which may be nil to discard it. It blocks until the answer arrives,
// the connection breaks, or ctx ends; with no deadline on ctx it may block
// as long as the remote handler runs.
//
// A handler error is returned as a wrapped *Error. Transport failures and
// ctx expiry wrap ErrUnreachable (and ctx.Err()). Args over MaxFrameSize
// wrap ErrFrameTooLarge; encoding and reply decoding errors are returned
// wrapped. Every error is prefixed with "call METHOD on ADDR".
func (c *Client) Call(ctx context.Context, addr, method string, args, reply any) error {
	if err := c.call(ctx, addr, method, args, reply); err != nil {
		return fmt.Errorf("call %s on %s: %w", method, addr, err)
	}
	return nil
}

// call is Call without the error prefix.
func (c *Client) call(ctx context.Context, addr, method string, args, reply any) error {
	cn, err := c.conn(ctx, addr)
	if err != nil {
		return err
	}
	res, err := cn.roundTrip(ctx, method, args)
	if err != nil {
		return err
	}
	if res.h.Code != "" {
		return &Error{Code: res.h.Code, Message: res.h.Msg}
	}
	if reply != nil {
		if err := msgpack.Unmarshal(res.body, reply); err != nil {
			return fmt.Errorf("decode reply: %w", err)
		}
	}
	return nil
}

// Close fails every in-flight call with ErrUnreachable, closes all
// connections, aborts dials in progress and waits for the client's
// goroutines to exit. Later calls fail with ErrUnreachable. Close is
// idempotent and always returns nil.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	var conns []*conn
	for _, r := range c.remotes {
		if r.conn != nil {
			conns = append(conns, r.conn)
		}
	}
	c.mu.Unlock()

	c.cancel()
	for _, cn := range conns {
		cn.fail(errClientClosed)
	}
	c.wg.Wait()
	return nil
}

// conn returns the live connection to addr, dialling it if needed. Callers
// arriving while a dial is in progress wait for that dial instead of
// starting their own.
func (c *Client) conn(ctx context.Context, addr string) (*conn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, errClientClosed
		}
		r := c.remotes[addr]
		if r == nil {
			r = &remote{}
			c.remotes[addr] = r
		}
		if r.conn != nil {
			cn := r.conn
			c.mu.Unlock()
			return cn, nil
		}
		if r.dialing == nil {
			if wait := time.Until(r.retryAt); wait > 0 {
				err := r.lastErr
				c.mu.Unlock()
				return nil, fmt.Errorf("%w: in redial backoff for %v after: %w", ErrUnreachable, wait.Round(time.Millisecond), err)
			}
			r.dialing = make(chan struct{})
			c.wg.Add(1)
			go c.dial(addr, r)
		}
		dialing := r.dialing
		c.mu.Unlock()

		select {
		case <-dialing:
		case <-ctx.Done():
			return nil, unreachable(ctx.Err())
		}
	}
}

// dial connects to addr and installs the connection in r, or records the
// failure and extends r's backoff. It runs in its own goroutine so that
// waiting callers can give up on their ctx without aborting the dial.
func (c *Client) dial(addr string, r *remote) {
	defer c.wg.Done()
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.DialTimeout)
	nc, err := c.dialer.DialContext(ctx, "tcp", addr)
	cancel()

	c.mu.Lock()
	defer c.mu.Unlock()
	close(r.dialing)
	r.dialing = nil
	if err != nil {
		r.backoff = min(max(2*r.backoff, c.cfg.MinBackoff), c.cfg.MaxBackoff)
		r.retryAt = time.Now().Add(r.backoff)
		r.lastErr = err
		c.log.Debug("peer: dial failed", "addr", addr, "err", err, "backoff", r.backoff)
		return
	}
	if c.closed {
		nc.Close()
		return
	}
	r.backoff, r.retryAt, r.lastErr = 0, time.Time{}, nil
	r.conn = newConn(c, addr, nc)
	c.wg.Add(1)
	go r.conn.readLoop()
	c.log.Debug("peer: connected", "addr", addr, "local", nc.LocalAddr().String())
}

// drop forgets cn if it is still addr's live connection.
func (c *Client) drop(cn *conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.remotes[cn.addr]; r != nil && r.conn == cn {
		r.conn = nil
	}
}

// result is what a pending call receives: a response or a failure.
type result struct {
	h    Header
	body msgpack.RawMessage
	err  error
}

// conn is one client connection: a lock-protected writer shared by all
// calls and a reader goroutine dispatching responses by ID.
type conn struct {
	client *Client
	addr   string
	nc     net.Conn
	wlock  chan struct{} // write mutex; a channel so waiters can watch ctx
	done   chan struct{} // closed when the connection fails

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan result // nil once failed
	err     error                  // why the connection failed; wraps ErrUnreachable
}

// newConn wraps a freshly dialled connection.
func newConn(c *Client, addr string, nc net.Conn) *conn {
	return &conn{
		client:  c,
		addr:    addr,
		nc:      nc,
		wlock:   make(chan struct{}, 1),
		done:    make(chan struct{}),
		pending: make(map[uint64]chan result),
	}
}

// roundTrip sends one request and waits for its response, a connection
// failure or the end of ctx.
func (cn *conn) roundTrip(ctx context.Context, method string, args any) (result, error) {
	id, ch, err := cn.register()
	if err != nil {
		return result{}, err
	}
	fb := getFrameBuf()
	frame, err := fb.encode(Header{ID: id, Kind: KindRequest, Method: method}, args, cn.client.cfg.MaxFrameSize)
	if err == nil {
		err = cn.write(ctx, frame)
	}
	putFrameBuf(fb)
	if err != nil {
		cn.unregister(id)
		return result{}, err
	}
	cn.client.counters.sent(method)

	select {
	case res := <-ch:
		return res, res.err
	case <-ctx.Done():
		cn.unregister(id)
		return result{}, unreachable(ctx.Err())
	}
}

// register allocates a request ID and the channel its response will arrive on.
func (cn *conn) register() (uint64, chan result, error) {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.err != nil {
		return 0, nil, cn.err
	}
	cn.nextID++
	ch := make(chan result, 1)
	cn.pending[cn.nextID] = ch
	return cn.nextID, ch, nil
}

// unregister forgets a call that gave up; a late response is then dropped.
func (cn *conn) unregister(id uint64) {
	cn.mu.Lock()
	delete(cn.pending, id)
	cn.mu.Unlock()
}

// deliver hands res to the call waiting for id, if it is still waiting.
func (cn *conn) deliver(id uint64, res result) {
	cn.mu.Lock()
	ch, ok := cn.pending[id]
	delete(cn.pending, id)
	cn.mu.Unlock()
	if ok {
		ch <- res // buffered, never blocks
	}
}

// failure returns why the connection failed.
func (cn *conn) failure() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.err
}

// write sends one encoded frame. The write lock is held for the whole frame
// so frames never interleave. If ctx ends while the write is blocked, the
// write is aborted and the connection fails, since a partly written frame
// cannot be taken back.
func (cn *conn) write(ctx context.Context, frame []byte) error {
	select {
	case cn.wlock <- struct{}{}:
	case <-ctx.Done():
		return unreachable(ctx.Err())
	case <-cn.done:
		return cn.failure()
	}
	defer func() { <-cn.wlock }()
	if err := ctx.Err(); err != nil {
		return unreachable(err)
	}

	var err error
	if ctx.Done() == nil {
		_, err = cn.nc.Write(frame)
	} else {
		aborted := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			cn.nc.SetWriteDeadline(time.Unix(1, 0))
			close(aborted)
		})
		_, err = cn.nc.Write(frame)
		if !stop() {
			<-aborted
			if err == nil { // finished just in time: undo the abort for the next writer
				err = cn.nc.SetWriteDeadline(time.Time{})
			}
		}
	}
	if err != nil {
		cn.fail(fmt.Errorf("%w: write: %w", ErrUnreachable, err))
		if ctx.Err() != nil {
			return unreachable(ctx.Err())
		}
		return cn.failure()
	}
	return nil
}

// readLoop reads responses until the connection fails.
func (cn *conn) readLoop() {
	defer cn.client.wg.Done()
	br := bufio.NewReader(cn.nc)
	for {
		h, body, err := ReadFrame(br, cn.client.cfg.MaxFrameSize)
		if err != nil {
			if errors.Is(err, errMalformed) || errors.Is(err, ErrFrameTooLarge) {
				cn.client.log.Warn("peer: bad frame from server", "addr", cn.addr, "err", err)
			}
			cn.fail(fmt.Errorf("%w: connection lost: %w", ErrUnreachable, err))
			return
		}
		if h.Kind != KindResponse {
			cn.client.log.Warn("peer: unexpected request from server", "addr", cn.addr, "method", h.Method)
			cn.fail(fmt.Errorf("%w: protocol error: server sent a request", ErrUnreachable))
			return
		}
		cn.deliver(h.ID, result{h: h, body: body})
	}
}

// fail marks the connection broken with err (which wraps ErrUnreachable),
// closes it, fails every pending call and removes it from the client. Only
// the first call has any effect.
func (cn *conn) fail(err error) {
	cn.mu.Lock()
	if cn.err != nil {
		cn.mu.Unlock()
		return
	}
	cn.err = err
	pending := cn.pending
	cn.pending = nil
	close(cn.done)
	cn.mu.Unlock()

	cn.nc.Close()
	cn.client.drop(cn)
	for _, ch := range pending {
		ch <- result{err: err}
	}
	cn.client.log.Debug("peer: disconnected", "addr", cn.addr, "err", err, "failed_calls", len(pending))
}
