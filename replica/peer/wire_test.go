package peer

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// A call whose request cannot be written before its context ends (the
// remote node stopped reading, the socket buffers are full) returns at once
// with the context's error, and the stalled connection is torn down: the
// next call dials again.
func TestStalledWriteTearsDownTheConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepts atomic.Int64
	var mu sync.Mutex
	var held []net.Conn // open, never read
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			mu.Lock()
			held = append(held, nc)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, nc := range held {
			nc.Close()
		}
	})
	addr := ln.Addr().String()
	c := newClient(t, ClientConfig{MaxFrameSize: 64 << 20})

	// Far more than the loopback socket buffers hold, so the write
	// stalls part way. The caller gives up only once the writer is seen
	// in that write: a request abandoned while still queued is not sent
	// and leaves its connection up, which a fixed deadline cannot rule
	// out on a loaded machine.
	big := make([]byte, 48<<20)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	called := make(chan error, 1)
	go func() { called <- c.Call(ctx, addr, "echo", big, nil) }()
	eventually(t, 30*time.Second, "the request's write to stall", func() bool {
		return writing(c, addr)
	})
	start := time.Now()
	cancel()
	err = <-called
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("stalled call: err = %v, want ErrUnreachable and Canceled", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stalled call returned %v after it was given up", d)
	}
	eventually(t, 5*time.Second, "the stalled connection to be dropped", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		r := c.remotes[addr]
		return r != nil && r.conn == nil
	})
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	if err := c.Call(ctx2, addr, "echo", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call on a fresh connection to a silent server: err = %v, want DeadlineExceeded", err)
	}
	if n := accepts.Load(); n != 2 {
		t.Errorf("server accepted %d connections, want 2 (the stalled one was not replaced)", n)
	}
}

// writing reports whether the client's connection to addr has a call whose
// request is being written.
func writing(c *Client, addr string) bool {
	c.mu.Lock()
	r := c.remotes[addr]
	var cn *conn
	if r != nil {
		cn = r.conn
	}
	c.mu.Unlock()
	if cn == nil {
		return false
	}
	cn.mu.Lock()
	defer cn.mu.Unlock()
	for _, cl := range cn.pending {
		if cl.state == callWriting {
			return true
		}
	}
	return false
}

// Many concurrent calls on one connection share its writes, and every one
// still gets its own answer, also when some give up along the way.
func TestConcurrentCallsWithCancellations(t *testing.T) {
	ts := startServer(t, testHandler, ServerConfig{}, "127.0.0.1:0")
	var cc Counters
	c := newClient(t, ClientConfig{Counters: &cc})

	var wg sync.WaitGroup
	var gaveUp atomic.Int64
	for i := range 64 {
		wg.Go(func() {
			for j := range 50 {
				ctx, cancel := context.WithCancel(callCtx(t))
				if (i+j)%7 == 0 {
					cancel() // some calls give up before or while they are sent
				}
				var sum int
				err := c.Call(ctx, ts.addr, "add", addArgs{A: i, B: j}, &sum)
				cancel()
				switch {
				case errors.Is(err, context.Canceled):
					gaveUp.Add(1)
				case err != nil:
					t.Error(err)
				case sum != i+j:
					t.Errorf("add(%d, %d) = %d", i, j, sum)
				}
			}
		})
	}
	wg.Wait()
	if gaveUp.Load() == 0 {
		t.Error("no call gave up")
	}
	if n := pendingCalls(c, ts.addr); n != 0 {
		t.Errorf("%d calls still pending", n)
	}
	if n := ts.ln.accepts.Load(); n != 1 {
		t.Errorf("server accepted %d connections, want 1", n)
	}
	// A call that gave up before its request was written is not counted.
	if sent := counts(&cc)["add"][0]; sent < 64*50-uint64(gaveUp.Load()) || sent > 64*50 {
		t.Errorf("%d add requests counted as sent, want between %d and %d", sent, 64*50-gaveUp.Load(), 64*50)
	}
}

// A server's workers exit after idling, and the connection keeps serving
// concurrent, blocking requests afterwards.
func TestServerWorkersExitWhenIdle(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var block sync.WaitGroup
	var release atomic.Pointer[chan struct{}]
	h := HandlerFunc(func(ctx context.Context, method string, body msgpack.RawMessage) (any, error) {
		if method == "block" {
			block.Done()
			<-*release.Load()
		}
		return nil, nil
	})
	const n = 4
	srv := NewServer(h, ServerConfig{MaxInFlight: n})
	srv.idle = 20 * time.Millisecond
	go srv.Serve(ln)
	defer srv.Close()
	c := newClient(t, ClientConfig{})
	addr := ln.Addr().String()
	if err := c.Call(callCtx(t), addr, "ping", nil, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the worker that served ping exits
	base := runtime.NumGoroutine()

	for round := range 3 {
		block.Add(n)
		rel := make(chan struct{})
		release.Store(&rel)
		errs := make(chan error, n)
		for range n {
			go func() { errs <- c.Call(callCtx(t), addr, "block", nil, nil) }()
		}
		block.Wait() // n handlers run at once: n workers
		close(rel)
		for range n {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		eventually(t, 5*time.Second, "idle workers to exit", func() bool {
			return runtime.NumGoroutine() <= base
		})
	}
}

// BenchmarkCallSerial is one caller's round trip: the latency a lone call
// pays, where BenchmarkCallParallel measures throughput.
func BenchmarkCallSerial(b *testing.B) {
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
	var sum int
	for b.Loop() {
		if err := c.Call(ctx, addr, "add", addArgs{A: 1, B: 2}, &sum); err != nil {
			b.Fatal(err)
		}
	}
}
