package peer

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
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

	// Dial, when non-nil, opens the TCP connections (TLS, if set, runs
	// over them): a harness reaching nodes in other network namespaces
	// dials from there. Nil means a plain net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// dialFunc is a dial function as a dialer.
type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// DialContext calls f.
func (f dialFunc) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return f(ctx, network, addr)
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
	unacked func(net.Conn) bool // unacknowledged; tests replace it
	ctx     context.Context     // cancelled by Close; parents every dial
	cancel  context.CancelFunc
	wg      sync.WaitGroup // dial, read and write goroutines

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
	c := &Client{cfg: cfg, log: cfg.Logger, counters: cfg.Counters, remotes: make(map[string]*remote), unacked: unacknowledged}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.counters == nil {
		c.counters = ProcessCounters()
	}
	var tcp interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	} = &net.Dialer{}
	if cfg.Dial != nil {
		tcp = dialFunc(cfg.Dial)
	}
	switch {
	case cfg.TLS != nil && cfg.Dial != nil:
		c.dialer = dialFunc(func(ctx context.Context, network, addr string) (net.Conn, error) {
			raw, err := tcp.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := cfg.TLS.Clone()
			if tc.ServerName == "" {
				if host, _, err := net.SplitHostPort(addr); err == nil {
					tc.ServerName = host
				}
			}
			conn := tls.Client(raw, tc)
			if err := conn.HandshakeContext(ctx); err != nil {
				raw.Close()
				return nil, err
			}
			return conn, nil
		})
	case cfg.TLS != nil:
		c.dialer = &tls.Dialer{Config: cfg.TLS}
	default:
		c.dialer = tcp
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
		if err := decodeReply(res.body, reply); err != nil {
			return err
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
	c.wg.Add(2)
	go r.conn.readLoop()
	go r.conn.writeLoop()
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

// writeBufSize is the size of a connection's write buffer: the frames a
// writer finds queued are copied into it and sent with one write per
// buffer-full. A frame larger than the buffer is written straight from the
// caller's encode buffer.
const writeBufSize = 32 << 10

// callState is how far a call's request has got towards the wire.
type callState uint8

const (
	callQueued    callState = iota // in conn.queue, not yet taken by the writer
	callWriting                    // in the batch the writer is writing
	callWritten                    // written; only the response is awaited
	callAbandoned                  // its caller gave up before the writer took it
)

// call is one request in flight on a conn. Its frame belongs to the writer
// from the moment it is queued.
type call struct {
	method string
	fb     *frameBuf // pooled buffer holding frame
	frame  []byte    // the encoded request
	res    chan result
	state  callState // guarded by conn.mu
	seq    uint64    // the request's place in the connection's writes, from 1; guarded by conn.mu
}

// conn is one client connection. Callers encode their request into a pooled
// buffer and queue it; a writer goroutine drains the queue into one buffered
// write per wake-up, so concurrent callers share syscalls and no caller
// holds a lock across one; a reader goroutine hands each response to the
// call waiting for its ID.
type conn struct {
	client *Client
	addr   string
	nc     net.Conn
	wake   chan struct{} // capacity 1: the queue went from empty to non-empty
	done   chan struct{} // closed when the connection fails
	nextID atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]*call // nil once failed
	queue   []*call          // requests waiting for the writer
	aborted bool             // a caller set a past write deadline to abort the write in progress
	err     error            // why the connection failed; wraps ErrUnreachable
	// written counts the requests handed to the writer, in order; read
	// is the largest seq of a request answered. The server reads requests
	// in order, so every request up to read has reached it.
	written, read uint64
}

// newConn wraps a freshly dialled connection.
func newConn(c *Client, addr string, nc net.Conn) *conn {
	return &conn{
		client:  c,
		addr:    addr,
		nc:      nc,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		pending: make(map[uint64]*call),
	}
}

// roundTrip sends one request and waits for its response, a connection
// failure or the end of ctx.
func (cn *conn) roundTrip(ctx context.Context, method string, args any) (result, error) {
	if err := ctx.Err(); err != nil {
		return result{}, unreachable(err)
	}
	id := cn.nextID.Add(1)
	fb := getFrameBuf()
	frame, err := fb.encode(Header{ID: id, Kind: KindRequest, Method: method}, args, cn.client.cfg.MaxFrameSize)
	if err != nil {
		putFrameBuf(fb)
		return result{}, err
	}
	cl := &call{method: method, fb: fb, frame: frame, res: make(chan result, 1)}
	if err := cn.send(id, cl); err != nil {
		putFrameBuf(fb)
		return result{}, err
	}

	select {
	case res := <-cl.res:
		return res, res.err
	case <-ctx.Done():
		cn.abandon(id, cl)
		return result{}, unreachable(ctx.Err())
	}
}

// send registers cl as waiting for response id and queues its request for
// the writer.
func (cn *conn) send(id uint64, cl *call) error {
	cn.mu.Lock()
	if cn.err != nil {
		err := cn.err
		cn.mu.Unlock()
		return err
	}
	cn.pending[id] = cl
	wasEmpty := len(cn.queue) == 0
	cn.queue = append(cn.queue, cl)
	cn.mu.Unlock()
	if wasEmpty {
		select {
		case cn.wake <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
	return nil
}

// abandon forgets a call whose caller gave up; a late response is then
// dropped. A request still queued is never sent. A request in the write in
// progress means that write has stalled for longer than the caller would
// wait: it is aborted, and the connection fails, since a partly written
// frame cannot be taken back. A request written but not known to have
// reached the server (no request written after it was answered, and the
// kernel still holds bytes the server's has not acknowledged) may sit in
// the send queue, to be retransmitted once a cut network heals and
// carried out long after the caller gave up: the connection is reset,
// which discards it. The caller has already been told the call's
// outcome is unknown; what it must never meet is a zombie request.
func (cn *conn) abandon(id uint64, cl *call) {
	cn.mu.Lock()
	delete(cn.pending, id)
	reset := false
	switch cl.state {
	case callQueued:
		cl.state = callAbandoned
	case callWriting:
		if !cn.aborted && cn.err == nil {
			cn.aborted = true
			cn.nc.SetWriteDeadline(time.Unix(1, 0))
		}
	case callWritten:
		reset = cl.seq > cn.read && cn.err == nil && cn.client.unacked(cn.nc)
	}
	cn.mu.Unlock()
	if reset {
		cn.fail(fmt.Errorf("%w: reset: a call was abandoned before its request was known to have arrived", ErrUnreachable))
	}
}

// deliver hands res to the call waiting for id, if it is still waiting.
func (cn *conn) deliver(id uint64, res result) {
	cn.mu.Lock()
	cl, ok := cn.pending[id]
	delete(cn.pending, id)
	if ok {
		cn.read = max(cn.read, cl.seq)
	}
	cn.mu.Unlock()
	if ok {
		cl.res <- res // buffered, never blocks
	}
}

// writeLoop writes queued requests until the connection fails. Each
// wake-up takes every request queued so far and writes them with as few
// writes as the buffer allows.
func (cn *conn) writeLoop() {
	defer cn.client.wg.Done()
	bw := bufio.NewWriterSize(cn.nc, writeBufSize)
	var batch []*call
	for {
		cn.mu.Lock()
		for len(cn.queue) == 0 && cn.err == nil {
			cn.mu.Unlock()
			select {
			case <-cn.wake:
			case <-cn.done:
			}
			cn.mu.Lock()
		}
		if cn.err != nil {
			for _, cl := range cn.queue {
				putFrameBuf(cl.fb)
			}
			cn.queue = nil
			cn.mu.Unlock()
			return
		}
		if len(cn.queue) < gatherBelow {
			// Let the goroutines that are about to queue a frame do so,
			// to send theirs in the same write.
			cn.mu.Unlock()
			runtime.Gosched()
			cn.mu.Lock()
		}
		batch, cn.queue = cn.queue, batch[:0]
		n := 0
		for _, cl := range batch {
			if cl.state == callAbandoned {
				putFrameBuf(cl.fb)
				continue
			}
			cl.state = callWriting
			cn.written++
			cl.seq = cn.written
			batch[n] = cl
			n++
		}
		clear(batch[n:])
		batch = batch[:n]
		cn.mu.Unlock()

		var err error
		for _, cl := range batch {
			// Counted before the write: once it starts, the frame is
			// on the wire as far as this side can tell.
			cn.client.counters.sent(cl.method)
			if err == nil {
				_, err = bw.Write(cl.frame)
			}
		}
		if err == nil {
			err = bw.Flush()
		}

		cn.mu.Lock()
		for _, cl := range batch {
			cl.state = callWritten
		}
		if cn.aborted && err == nil {
			// The write finished just before a caller aborted it: undo
			// the abort for the next write.
			cn.aborted = false
			err = cn.nc.SetWriteDeadline(time.Time{})
		}
		cn.mu.Unlock()
		for i, cl := range batch {
			putFrameBuf(cl.fb)
			batch[i] = nil
		}
		if err != nil {
			cn.fail(fmt.Errorf("%w: write: %w", ErrUnreachable, err))
			return
		}
	}
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

	// Reset rather than close: bytes still in the send queue are
	// discarded, not retransmitted and carried out after the callers
	// were told their calls failed.
	raw := cn.nc
	if tc, ok := raw.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	cn.nc.Close()
	cn.client.drop(cn)
	for _, cl := range pending {
		cl.res <- result{err: err}
	}
	cn.client.log.Debug("peer: disconnected", "addr", cn.addr, "err", err, "failed_calls", len(pending))
}

// gatherBelow is the batch size under which a writer yields once before
// taking the queue, so that callers already runnable can join the write.
const gatherBelow = 8
