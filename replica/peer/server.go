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
	"runtime/debug"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/net/netutil"
)

// ServerConfig configures a Server. Zero fields take the value from
// DefaultServerConfig, so a partially filled config is fine.
type ServerConfig struct {
	// MaxFrameSize is the largest frame payload (header plus body, without
	// the 4-byte length prefix) the server accepts or sends. A larger
	// request is a protocol error that closes the connection; a reply that
	// encodes larger is answered with an "internal" error instead. Default
	// 16 MiB.
	MaxFrameSize int

	// MaxInFlight caps how many requests of one connection may be
	// unanswered at once: handlers running plus answers not yet written.
	// When the cap is reached the server stops reading that connection
	// until an answer is written, pushing back on the client through TCP
	// flow control rather than queueing without bound. It also caps the
	// connection's handler goroutines. Default 256.
	MaxInFlight int

	// MaxConns caps how many connections each listener given to Serve
	// holds open at once. At the cap, Serve stops accepting until one
	// closes; the kernel's backlog holds the callers meanwhile. A cluster
	// needs about one connection per other node plus one per smart client,
	// so the cap only bounds what a flood of connections can cost.
	// Default 1024.
	MaxConns int

	// TLS, when non-nil, makes Serve wrap its listener with this
	// configuration, which must then hold a certificate. Nil means plain
	// TCP. When it verifies client certificates (MutualTLS builds one
	// that requires them), handlers learn each caller's name from
	// CallerName.
	TLS *tls.Config

	// Logger receives connection events: Debug for routine connects and
	// disconnects, Warn for malformed frames, failed TLS handshakes and
	// accept errors, Error for handler panics. Nil discards logs.
	Logger *slog.Logger

	// Counters count every request the server reads (Counters.Received),
	// before its handler runs. Nil means ProcessCounters().
	Counters *Counters
}

// DefaultServerConfig returns the default server settings: 16 MiB frames,
// 256 concurrent handlers per connection, 1024 connections per listener,
// plain TCP, no logging.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{MaxFrameSize: 16 << 20, MaxInFlight: 256, MaxConns: 1024}
}

// handshakeTimeout bounds the TLS handshake of an accepted connection.
const handshakeTimeout = 10 * time.Second

// Server answers requests from other nodes' Clients by calling its Handler.
type Server struct {
	h        Handler
	cfg      ServerConfig
	log      *slog.Logger
	counters *Counters
	idle     time.Duration   // how long a worker waits for a request before it exits
	ctx      context.Context // cancelled by Close; parents every handler ctx
	cancel   context.CancelFunc
	wg       sync.WaitGroup // connection goroutines

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	closed    bool
}

// NewServer returns a Server that answers requests with h. Call Serve to
// start accepting connections.
func NewServer(h Handler, cfg ServerConfig) *Server {
	def := DefaultServerConfig()
	if cfg.MaxFrameSize <= 0 {
		cfg.MaxFrameSize = def.MaxFrameSize
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = def.MaxInFlight
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = def.MaxConns
	}
	s := &Server{
		h:         h,
		cfg:       cfg,
		log:       cfg.Logger,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
		counters:  cfg.Counters,
		idle:      workerIdle,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.counters == nil {
		s.counters = ProcessCounters()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Serve accepts connections on ln and serves each in its own goroutine. It
// blocks until Close is called, then returns nil; it also returns nil at
// once if the server is already closed. Transient accept errors are logged
// and retried with backoff; if ln is closed by someone else, Serve returns
// that error. Serve may be called on several listeners at once.
func (s *Server) Serve(ln net.Listener) error {
	ln = netutil.LimitListener(ln, s.cfg.MaxConns) // a closed connection frees its slot
	if s.cfg.TLS != nil {
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("peer: accept failed", "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
				return nil
			}
			continue
		}
		delay = 0
		if !s.track(nc) {
			nc.Close()
			return nil
		}
		go s.serveConn(nc)
	}
}

// Close stops accepting, closes all connections, cancels handler contexts
// and waits for running handlers to return. Serve then returns nil. Close is
// idempotent and always returns nil.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		for ln := range s.listeners {
			ln.Close()
		}
		// Close connections before cancelling handlers, so that a handler
		// woken by the cancellation cannot answer: callers see the
		// shutdown as ErrUnreachable, not as a handler error.
		for nc := range s.conns {
			nc.Close()
		}
		s.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// isClosed reports whether Close has been called.
func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track registers an accepted connection; it reports false once closed.
func (s *Server) track(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[nc] = struct{}{}
	s.wg.Add(1)
	return true
}

// untrack forgets a finished connection.
func (s *Server) untrack(nc net.Conn) {
	s.mu.Lock()
	delete(s.conns, nc)
	s.mu.Unlock()
}

// serverConn is the write side of one accepted connection. Handlers queue
// their encoded responses; a writer goroutine drains the queue into one
// buffered write per wake-up, so responses that finish together share
// syscalls. A request's in-flight slot is freed only once its response is
// written, so a client that does not read its responses stops the server
// reading its requests, as MaxInFlight promises.
type serverConn struct {
	nc     net.Conn
	log    *slog.Logger
	cancel context.CancelFunc // ends the connection's handlers and its read loop
	sem    chan struct{}      // in-flight slots, one per request read and not yet answered
	wake   chan struct{}      // capacity 1: the queue went from empty to non-empty
	stop   chan struct{}      // closed once no handler is left to queue a response

	mu     sync.Mutex
	queue  []*frameBuf // encoded responses waiting for the writer
	failed bool        // a write failed; responses are dropped
}

// send queues an encoded response for the writer, which returns fb to the
// pool and frees the request's slot once it is written.
func (sc *serverConn) send(fb *frameBuf) {
	sc.mu.Lock()
	if sc.failed {
		sc.mu.Unlock()
		putFrameBuf(fb)
		<-sc.sem
		return
	}
	wasEmpty := len(sc.queue) == 0
	sc.queue = append(sc.queue, fb)
	sc.mu.Unlock()
	if wasEmpty {
		select {
		case sc.wake <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// writeLoop writes queued responses until stop is closed and the queue is
// empty, or a write fails. On failure it closes the connection, whose
// stream may now hold a partial frame.
func (sc *serverConn) writeLoop() {
	bw := bufio.NewWriterSize(sc.nc, writeBufSize)
	var batch []*frameBuf
	for {
		sc.mu.Lock()
		for len(sc.queue) == 0 {
			sc.mu.Unlock()
			select {
			case <-sc.wake:
			case <-sc.stop:
				sc.mu.Lock()
				if len(sc.queue) == 0 {
					sc.mu.Unlock()
					return
				}
				sc.mu.Unlock()
			}
			sc.mu.Lock()
		}
		if len(sc.queue) < gatherBelow {
			// Let the goroutines that are about to queue a frame do so,
			// to send theirs in the same write.
			sc.mu.Unlock()
			runtime.Gosched()
			sc.mu.Lock()
		}
		batch, sc.queue = sc.queue, batch[:0]
		sc.mu.Unlock()

		var err error
		for _, fb := range batch {
			if err == nil {
				_, err = bw.Write(fb.buf)
			}
		}
		if err == nil {
			err = bw.Flush()
		}
		for i, fb := range batch {
			putFrameBuf(fb)
			batch[i] = nil
			<-sc.sem
		}
		if err != nil {
			sc.log.Debug("peer: cannot write replies", "err", err)
			sc.mu.Lock()
			sc.failed = true
			for _, fb := range sc.queue {
				putFrameBuf(fb)
				<-sc.sem
			}
			sc.queue = nil
			sc.mu.Unlock()
			sc.nc.Close()
			sc.cancel()
			return
		}
	}
}

// serveConn reads requests from nc and hands each to a worker, until the
// connection fails or the server closes.
func (s *Server) serveConn(nc net.Conn) {
	defer s.wg.Done()
	defer s.untrack(nc)
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	log := s.log.With("remote", nc.RemoteAddr().String())

	if tc, ok := nc.(*tls.Conn); ok {
		hctx, hcancel := context.WithTimeout(ctx, handshakeTimeout)
		err := tc.HandshakeContext(hctx)
		hcancel()
		if err != nil {
			log.Warn("peer: TLS handshake failed", "err", err)
			nc.Close()
			return
		}
		if name, err := verifiedCaller(tc.ConnectionState()); err == nil {
			ctx = withCaller(ctx, name)
			log = log.With("caller", name)
		}
	}
	log.Debug("peer: connection accepted")

	sc := &serverConn{
		nc:     nc,
		log:    log,
		cancel: cancel,
		sem:    make(chan struct{}, s.cfg.MaxInFlight),
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		sc.writeLoop()
	}()
	pool := workerPool{work: make(chan request), exited: make(chan struct{}, s.cfg.MaxInFlight)}
	br := bufio.NewReader(nc)
	var err error
	for {
		var h Header
		var body msgpack.RawMessage
		if h, body, err = ReadFrame(br, s.cfg.MaxFrameSize); err != nil {
			break
		}
		if h.Kind != KindRequest {
			err = fmt.Errorf("%w: client sent a response (id %d)", errMalformed, h.ID)
			break
		}
		s.counters.received(h.Method)
		select {
		case sc.sem <- struct{}{}: // blocks, and so stops reading, while MaxInFlight requests are unanswered
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		if !s.dispatch(ctx, sc, &pool, request{h: h, body: body}) {
			<-sc.sem
			break
		}
	}

	switch {
	case errors.Is(err, errMalformed), errors.Is(err, ErrFrameTooLarge):
		log.Warn("peer: closing connection after bad frame", "err", err)
	default:
		log.Debug("peer: connection closed", "err", err)
	}
	cancel()
	nc.Close()
	pool.wg.Wait()
	close(sc.stop)
	<-writerDone
}

// request is a request read from a connection, for a worker to serve.
type request struct {
	h    Header
	body msgpack.RawMessage
}

// workerIdle is how long a connection's worker waits for another request
// before it exits (Server.idle; tests shorten it).
const workerIdle = 5 * time.Second

// workerPool is the handler goroutines of one connection. A worker serves
// one request at a time; the read loop starts another when none is idle, up
// to MaxInFlight, so a handler that blocks holds up no other request.
// Reusing workers spares a goroutine start, and the growth of its stack,
// per request. Only the read loop touches running.
type workerPool struct {
	work    chan request   // unbuffered: to a worker waiting for a request
	exited  chan struct{}  // a worker exited after idling; buffered MaxInFlight
	running int            // workers started and not known to have exited
	wg      sync.WaitGroup // running workers
}

// dispatch hands req to an idle worker, or to a new one while fewer than
// MaxInFlight run, or else waits for a worker to come free. It reports
// false if ctx ended first.
func (s *Server) dispatch(ctx context.Context, sc *serverConn, p *workerPool, req request) bool {
	for {
		select {
		case p.work <- req:
			return true
		default:
		}
	reap:
		for {
			select {
			case <-p.exited:
				p.running--
			default:
				break reap
			}
		}
		if p.running < s.cfg.MaxInFlight {
			p.running++
			p.wg.Add(1)
			go s.work(ctx, sc, p, req)
			return true
		}
		select {
		case p.work <- req:
			return true
		case <-p.exited:
			p.running--
		case <-ctx.Done():
			return false
		}
	}
}

// work serves req and then every request the read loop hands it, until it
// has waited s.idle for one or ctx ends.
func (s *Server) work(ctx context.Context, sc *serverConn, p *workerPool, req request) {
	defer p.wg.Done()
	idle := time.NewTimer(s.idle)
	defer idle.Stop()
	for {
		s.handle(ctx, sc, req.h, req.body)
		idle.Reset(s.idle)
		select {
		case req = <-p.work:
		case <-idle.C:
			p.exited <- struct{}{}
			return
		case <-ctx.Done():
			return
		}
	}
}

// handle runs the handler for one request and queues its response.
func (s *Server) handle(ctx context.Context, sc *serverConn, req Header, body msgpack.RawMessage) {
	resp := Header{ID: req.ID, Kind: KindResponse}
	reply, err := s.invoke(ctx, req.Method, body)
	if err != nil {
		resp.Code, resp.Msg = errorFields(err)
		reply = nil
	}
	fb := getFrameBuf()
	if _, err := fb.encode(resp, reply, s.cfg.MaxFrameSize); err != nil {
		s.log.Warn("peer: cannot encode reply", "method", req.Method, "err", err)
		resp.Code, resp.Msg = codeInternal, err.Error()
		if _, err = fb.encode(resp, nil, s.cfg.MaxFrameSize); err != nil {
			// Not even the error fits: closing is the only way to
			// stop the caller from waiting for an answer.
			s.log.Warn("peer: cannot encode error reply", "method", req.Method, "err", err)
			putFrameBuf(fb)
			sc.nc.Close()
			<-sc.sem
			return
		}
	}
	sc.send(fb)
}

// invoke calls the handler, turning a panic into an internal error.
func (s *Server) invoke(ctx context.Context, method string, body msgpack.RawMessage) (reply any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("peer: handler panic", "method", method, "panic", p, "stack", string(debug.Stack()))
			reply, err = nil, &Error{Code: codeInternal, Message: fmt.Sprintf("handler panic: %v", p)}
		}
	}()
	return s.h.ServePeer(ctx, method, body)
}
