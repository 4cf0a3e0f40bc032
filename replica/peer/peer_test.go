package peer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	accepts atomic.Int64
}

// Accept counts each accepted connection.
func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepts.Add(1)
	}
	return c, err
}

type testServer struct {
	*Server
	addr  string
	ln    *countingListener
	serve chan error
	once  sync.Once
}

// startServer serves h on addr ("127.0.0.1:0" for a fresh port) until the
// test ends.
func startServer(t *testing.T, h Handler, cfg ServerConfig, addr string) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: NewServer(h, cfg), addr: ln.Addr().String(), ln: &countingListener{Listener: ln}, serve: make(chan error, 1)}
	go func() { ts.serve <- ts.Serve(ts.ln) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stop closes the server and checks that Serve returned nil.
func (ts *testServer) stop(t *testing.T) {
	ts.once.Do(func() {
		ts.Close()
		if err := <-ts.serve; err != nil {
			t.Errorf("Serve returned %v after Close, want nil", err)
		}
	})
}

// newClient returns a client closed when the test ends.
func newClient(t *testing.T, cfg ClientConfig) *Client {
	c := NewClient(cfg)
	t.Cleanup(func() { c.Close() })
	return c
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// pendingCalls counts the calls waiting on the client's connection to addr.
func pendingCalls(c *Client, addr string) int {
	c.mu.Lock()
	var cn *conn
	if r := c.remotes[addr]; r != nil {
		cn = r.conn
	}
	c.mu.Unlock()
	if cn == nil {
		return 0
	}
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return len(cn.pending)
}

type addArgs struct{ A, B int }

// testHandler serves the methods the tests share.
var testHandler = HandlerFunc(func(ctx context.Context, method string, body msgpack.RawMessage) (any, error) {
	switch method {
	case "add":
		var a addArgs
		if err := msgpack.Unmarshal(body, &a); err != nil {
			return nil, &Error{Code: "bad_args", Message: err.Error()}
		}
		return a.A + a.B, nil
	case "echo":
		return body, nil
	case "not_found":
		return nil, fmt.Errorf("lookup: %w", &Error{Code: "not_found", Message: "no such session"})
	case "plain_error":
		return nil, errors.New("disk on fire")
	case "empty_code":
		return nil, &Error{Message: "forgot the code"}
	case "panic":
		panic("boom")
	case "unencodable":
		return make(chan int), nil
	case "big":
		return strings.Repeat("x", 4096), nil
	case "wait":
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, &Error{Code: "unknown_method", Message: method}
})

// callCtx returns a context bounded by a generous test deadline.
func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestCallRoundTrip(t *testing.T) {
	ts := startServer(t, testHandler, ServerConfig{}, "127.0.0.1:0")
	c := newClient(t, ClientConfig{})

	var sum int
	if err := c.Call(callCtx(t), ts.addr, "add", addArgs{A: 2, B: 40}, &sum); err != nil || sum != 42 {
		t.Fatalf("add: %d, %v", sum, err)
	}
	in := sessionWrite{Key: "s", Version: 3, Data: []byte("payload"), Tags: map[string]string{"k": "v"}}
	var out sessionWrite
	if err := c.Call(callCtx(t), ts.addr, "echo", in, &out); err != nil || out.Key != in.Key || string(out.Data) != "payload" {
		t.Fatalf("echo: %+v, %v", out, err)
	}
	if err := c.Call(callCtx(t), ts.addr, "echo", nil, nil); err != nil {
		t.Fatalf("nil args, nil reply: %v", err)
	}
	var s string
	err := c.Call(callCtx(t), ts.addr, "add", addArgs{A: 1}, &s)
	if err == nil || errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "decode reply") {
		t.Fatalf("decoding int reply into string: err = %v, want decode error", err)
	}
	if n := ts.ln.accepts.Load(); n != 1 {
		t.Errorf("server accepted %d connections, want 1", n)
	}
}

func TestConcurrentCallsShareOneConnection(t *testing.T) {
	ts := startServer(t, testHandler, ServerConfig{}, "127.0.0.1:0")
	c := newClient(t, ClientConfig{})

	const n = 1000
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var sum int
			if err := c.Call(callCtx(t), ts.addr, "add", addArgs{A: i, B: i}, &sum); err != nil {
				errs <- err
			} else if sum != 2*i {
				errs <- fmt.Errorf("add(%d, %d) = %d", i, i, sum)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := ts.ln.accepts.Load(); got != 1 {
		t.Errorf("server accepted %d connections, want 1", got)
	}
}

func TestSlowHandlerDoesNotBlockFastOne(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, method string, body msgpack.RawMessage) (any, error) {
		if method == "slow" {
			close(started)
			<-release
			return "slow", nil
		}
		return "fast", nil
	})
	ts := startServer(t, h, ServerConfig{}, "127.0.0.1:0")
	c := newClient(t, ClientConfig{})

	slowDone := make(chan error, 1)
	go func() {
		var s string
		err := c.Call(callCtx(t), ts.addr, "slow", nil, &s)
		if err == nil && s != "slow" {
			err = fmt.Errorf("slow reply %q", s)
		}
		slowDone <- err
	}()
	<-started

	var s string
	if err := c.Call(callCtx(t), ts.addr, "fast", nil, &s); err != nil || s != "fast" {
		t.Fatalf("fast call behind a slow one: %q, %v", s, err)
	}
	select {
	case err := <-slowDone:
		t.Fatalf("slow call finished before release: %v", err)
	default:
	}
	close(release)
	if err := <-slowDone; err != nil {
		t.Fatal(err)
	}
	if n := ts.ln.accepts.Load(); n != 1 {
		t.Errorf("server accepted %d connections, want 1", n)
	}
}

func TestHandlerErrors(t *testing.T) {
	ts := startServer(t, testHandler, ServerConfig{MaxFrameSize: 1024}, "127.0.0.1:0")
	c := newClient(t, ClientConfig{})
	tests := []struct {
		method, code, msg string
	}{
		{"not_found", "not_found", "no such session"},
		{"plain_error", "internal", "disk on fire"},
		{"empty_code", "internal", "forgot the code"},
		{"unencodable", "internal", "encode frame body"},
		{"big", "internal", "frame too large"},
		{"nope", "unknown_method", "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			err := c.Call(callCtx(t), ts.addr, tt.method, nil, nil)
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *Error", err)
			}
			if pe.Code != tt.code || !strings.Contains(pe.Message, tt.msg) {
				t.Errorf("got code %q message %q, want %q containing %q", pe.Code, pe.Message, tt.code, tt.msg)
			}
			if errors.Is(err, ErrUnreachable) {
				t.Errorf("handler error %v wraps ErrUnreachable", err)
			}
			if want := "call " + tt.method + " on " + ts.addr; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("err %q lacks prefix %q", err, want)
			}
		})
	}
}

func TestHandlerPanic(t *testing.T) {
	ts := startServer(t, testHandler, ServerConfig{}, "127.0.0.1:0")
	c := newClient(t, ClientConfig{})

	err := c.Call(callCtx(t), ts.addr, "panic", nil, nil)
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != "internal" || !strings.Contains(pe.Message, "boom") {
		t.Fatalf("err = %v, want *Error with code internal", err)
	}
	var sum int
	if err := c.Call(callCtx(t), ts.addr, "add", addArgs{A: 1, B: 1}, &sum); err != nil || sum != 2 {
		t.Fatalf("call after panic: %d, %v", sum, err)
	}
	if n := ts.ln.accepts.Load(); n != 1 {
		t.Errorf("server accepted %d connections, want 1", n)
	}
}

func TestCallContextEnds(t *testing.T) {
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, method string, body msgpack.RawMessage) (any, error) {
		if method == "hang" {
			<-release
		}
		return testHandler(ctx, method, body)
	})
	ts := startServer(t, h, ServerConfig{}, "127.0.0.1:0")
	c := newClient(t, ClientConfig{})
	defer close(release)
	if err := c.Call(callCtx(t), ts.addr, "echo", nil, nil); err != nil { // connect first
		t.Fatal(err)
	}

	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"already expired", func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			err := c.Call(ctx, ts.addr, "hang", nil, nil)
			if !errors.Is(err, ErrUnreachable) || !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want ErrUnreachable and %v", err, tt.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("call returned %v after its context ended", d)
			}
			if n := pendingCalls(c, ts.addr); n != 0 {
				t.Errorf("%d calls still pending after the context ended", n)
			}
			var sum int
			if err := c.Call(callCtx(t), ts.addr, "add", addArgs{A: 3, B: 4}, &sum); err != nil || sum != 7 {
				t.Fatalf("connection unusable after context ended: %d, %v", sum, err)
			}
		})
	}
	if n := ts.ln.accepts.Load(); n != 1 {
		t.Errorf("server accepted %d connections, want 1", n)
	}
}

func TestReconnectAfterServerRestart(t *testing.T) {
	ts := startServer(t, testHandler, ServerConfig{}, "127.0.0.1:0")
	c := newClient(t, ClientConfig{MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	add := func(ctx context.Context) error {
		var sum int
		err := c.Call(ctx, ts.addr, "add", addArgs{A: 1, B: 2}, &sum)
		if err == nil && sum != 3 {
			err = fmt.Errorf("sum = %d", sum)
		}
		return err
	}
	if err := add(callCtx(t)); err != nil {
		t.Fatal(err)
	}

	ts.stop(t)
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := add(ctx)
		cancel()
		if !errors.Is(err, ErrUnreachable) {
			t.Fatalf("call %d while server down: err = %v, want ErrUnreachable", i, err)
		}
	}

	ts2 := startServer(t, testHandler, ServerConfig{}, ts.addr)
	var last error
	eventually(t, 5*time.Second, "call to succeed after restart", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		last = add(ctx)
		if last != nil && !errors.Is(last, ErrUnreachable) {
			t.Fatalf("call after restart: %v, want success or ErrUnreachable", last)
		}
		return last == nil
	})
	if n := ts2.ln.accepts.Load(); n != 1 {
		t.Errorf("restarted server accepted %d connections, want 1", n)
	}
}

func TestDialFailureBacksOff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens on addr now

	c := newClient(t, ClientConfig{MinBackoff: time.Hour, MaxBackoff: time.Hour})
	err = c.Call(callCtx(t), addr, "add", nil, nil)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("call to dead address: err = %v, want ErrUnreachable", err)
	}
	// Within backoff: fail fast, even though a listener is back.
	ts := startServer(t, testHandler, ServerConfig{}, addr)
	err = c.Call(callCtx(t), addr, "add", nil, nil)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "backoff") {
		t.Fatalf("call in backoff: err = %v, want ErrUnreachable mentioning backoff", err)
	}
	if n := ts.ln.accepts.Load(); n != 0 {
		t.Errorf("client dialled %d times during backoff", n)
	}
}

func TestClientCloseFailsInFlightCalls(t *testing.T) {
	const n = 5
	var started sync.WaitGroup
	started.Add(n)
	h := HandlerFunc(func(ctx context.Context, method string, body msgpack.RawMessage) (any, error) {
		started.Done()
		<-ctx.Done()
		return nil, ctx.Err()
	})
	ts := startServer(t, h, ServerConfig{}, "127.0.0.1:0")
	c := NewClient(ClientConfig{})

	errs := make(chan error, n)
	for range n {
		go func() { errs <- c.Call(context.Background(), ts.addr, "wait", nil, nil) }()
	}
	started.Wait()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(5 * time.Second)
	for range n {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrUnreachable) {
				t.Errorf("in-flight call: err = %v, want ErrUnreachable", err)
			}
		case <-timeout:
			t.Fatal("in-flight calls did not fail after Close")
		}
	}
	if err := c.Call(callCtx(t), ts.addr, "add", nil, nil); !errors.Is(err, ErrUnreachable) {
		t.Errorf("call after Close: err = %v, want ErrUnreachable", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestServerCloseCancelsHandlers(t *testing.T) {
	started := make(chan struct{})
	handlerErr := make(chan error, 1)
	h := HandlerFunc(func(ctx context.Context, method string, body msgpack.RawMessage) (any, error) {
		close(started)
		<-ctx.Done()
		handlerErr <- ctx.Err()
		return nil, ctx.Err()
	})
	ts := startServer(t, h, ServerConfig{}, "127.0.0.1:0")
	c := newClient(t, ClientConfig{})

	callErr := make(chan error, 1)
	go func() { callErr <- c.Call(callCtx(t), ts.addr, "wait", nil, nil) }()
	<-started
	ts.stop(t) // returns only once the handler has returned
	select {
	case err := <-handlerErr:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("handler ctx err = %v, want context.Canceled", err)
		}
	default:
		t.Fatal("Close returned before the handler did")
	}
	if err := <-callErr; !errors.Is(err, ErrUnreachable) {
		t.Errorf("call during server Close: err = %v, want ErrUnreachable", err)
	}
}

func TestFrameSizeLimits(t *testing.T) {
	ts := startServer(t, testHandler, ServerConfig{MaxFrameSize: 1024}, "127.0.0.1:0")
	big := sessionWrite{Data: make([]byte, 2048)}

	small := newClient(t, ClientConfig{MaxFrameSize: 1024})
	err := small.Call(callCtx(t), ts.addr, "echo", big, nil)
	if !errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrUnreachable) {
		t.Fatalf("oversized args: err = %v, want ErrFrameTooLarge only", err)
	}
	if err := small.Call(callCtx(t), ts.addr, "add", addArgs{}, nil); err != nil {
		t.Fatalf("connection unusable after refused frame: %v", err)
	}

	// A frame over the server's limit is a protocol error: the server
	// drops the connection and the call fails as unreachable.
	large := newClient(t, ClientConfig{})
	if err := large.Call(callCtx(t), ts.addr, "echo", big, nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("args over server limit: err = %v, want ErrUnreachable", err)
	}
	if err := large.Call(callCtx(t), ts.addr, "add", addArgs{}, nil); err != nil {
		t.Fatalf("client did not reconnect after dropped connection: %v", err)
	}
}

func TestServerBackPressure(t *testing.T) {
	release := make(chan struct{})
	var fastRuns atomic.Int64
	started := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, method string, body msgpack.RawMessage) (any, error) {
		if method == "slow" {
			close(started)
			<-release
			return nil, nil
		}
		fastRuns.Add(1)
		return nil, nil
	})
	ts := startServer(t, h, ServerConfig{MaxInFlight: 1}, "127.0.0.1:0")
	c := newClient(t, ClientConfig{})

	slowDone := make(chan error, 1)
	go func() { slowDone <- c.Call(callCtx(t), ts.addr, "slow", nil, nil) }()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := c.Call(ctx, ts.addr, "fast", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call beyond MaxInFlight: err = %v, want deadline exceeded", err)
	}
	if n := fastRuns.Load(); n != 0 {
		t.Fatalf("handler ran %d times beyond MaxInFlight", n)
	}
	close(release)
	if err := <-slowDone; err != nil {
		t.Fatal(err)
	}
	if err := c.Call(callCtx(t), ts.addr, "fast", nil, nil); err != nil {
		t.Fatalf("call after slot freed: %v", err)
	}
}

// testTLSConfigs returns server and client configs sharing a self-signed
// certificate for 127.0.0.1.
func testTLSConfigs(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "tandem test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS13}
	client = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}
	return server, client
}

func TestTLS(t *testing.T) {
	serverTLS, clientTLS := testTLSConfigs(t)
	ts := startServer(t, testHandler, ServerConfig{TLS: serverTLS}, "127.0.0.1:0")

	c := newClient(t, ClientConfig{TLS: clientTLS})
	var sum int
	if err := c.Call(callCtx(t), ts.addr, "add", addArgs{A: 20, B: 22}, &sum); err != nil || sum != 42 {
		t.Fatalf("TLS call: %d, %v", sum, err)
	}

	plain := newClient(t, ClientConfig{})
	if err := plain.Call(callCtx(t), ts.addr, "add", addArgs{}, nil); !errors.Is(err, ErrUnreachable) {
		t.Errorf("plain client to TLS server: err = %v, want ErrUnreachable", err)
	}
	untrusting := newClient(t, ClientConfig{TLS: &tls.Config{MinVersion: tls.VersionTLS13}})
	if err := untrusting.Call(callCtx(t), ts.addr, "add", addArgs{}, nil); !errors.Is(err, ErrUnreachable) {
		t.Errorf("client not trusting the cert: err = %v, want ErrUnreachable", err)
	}
}

func BenchmarkCallParallel(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := NewServer(testHandler, ServerConfig{})
	go srv.Serve(ln)
	defer srv.Close()
	c := NewClient(ClientConfig{})
	defer c.Close()
	addr := ln.Addr().String()
	ctx := context.Background()

	b.ReportAllocs()
	b.SetParallelism(16) // 16 callers per CPU, so calls overlap on the connection
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var sum int
		for pb.Next() {
			if err := c.Call(ctx, addr, "add", addArgs{A: 1, B: 2}, &sum); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "calls/s")
}

// A call abandoned while its request may still sit unacknowledged in the
// kernel's send queue resets the connection, so that the request is never
// retransmitted and carried out after the caller gave up; one the server's
// kernel has acknowledged leaves the connection be.
func TestAbandonedCallResetsAConnectionThatMayStillDeliverIt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		unacked bool
		accepts int64
	}{{"acknowledged", false, 1}, {"unacknowledged", true, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			h := HandlerFunc(func(ctx context.Context, method string, body msgpack.RawMessage) (any, error) {
				if method == "hang" {
					<-release
				}
				return nil, nil
			})
			ts := startServer(t, h, ServerConfig{}, "127.0.0.1:0")
			t.Cleanup(func() { close(release) }) // before the server's own cleanup, which waits for handlers
			c := newClient(t, ClientConfig{})
			c.unacked = func(net.Conn) bool { return tc.unacked }
			if err := c.Call(callCtx(t), ts.addr, "echo", nil, nil); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if err := c.Call(ctx, ts.addr, "hang", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("hang: %v", err)
			}
			if err := c.Call(callCtx(t), ts.addr, "echo", nil, nil); err != nil {
				t.Fatal(err)
			}
			if n := ts.ln.accepts.Load(); n != tc.accepts {
				t.Fatalf("server accepted %d connections, want %d", n, tc.accepts)
			}
		})
	}
}

// unacknowledged sees bytes a server's kernel has not taken: a server
// that reads nothing stops acknowledging once its buffer is full.
func TestUnacknowledgedSeesAFullSendQueue(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SIOCOUTQ is Linux's")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	server := <-accepted
	defer server.Close()
	if unacknowledged(nc) {
		t.Fatal("an idle connection reports unacknowledged bytes")
	}
	chunk := make([]byte, 64<<10)
	for end := time.Now().Add(10 * time.Second); !unacknowledged(nc); {
		if time.Now().After(end) {
			t.Fatal("the send queue never filled")
		}
		nc.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		nc.Write(chunk) // times out once both buffers are full
	}
}
