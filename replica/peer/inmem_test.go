package peer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// lostAfter bounds calls the tests expect to be lost: they must block until
// this deadline. It only makes those tests slower if raised.
const lostAfter = 20 * time.Millisecond

// newNetwork returns a network whose listeners in addrs serve h until the
// test ends.
func newNetwork(t *testing.T, cfg NetworkConfig, h Handler, addrs ...string) *Network {
	t.Helper()
	n := NewNetwork(cfg)
	for _, addr := range addrs {
		if err := n.Listen(addr, h); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close(addr) })
	}
	return n
}

// lostCtx returns a context ending after lostAfter.
func lostCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), lostAfter)
	t.Cleanup(cancel)
	return ctx
}

// add calls "add" from → to and reports the error, checking the sum.
func add(ctx context.Context, n *Network, from, to string, a, b int) error {
	var sum int
	if err := n.Caller(from).Call(ctx, to, "add", addArgs{A: a, B: b}, &sum); err != nil {
		return err
	}
	if sum != a+b {
		return fmt.Errorf("add(%d, %d) = %d", a, b, sum)
	}
	return nil
}

// wantLost checks that err is a lost call's: unreachable at the deadline.
func wantLost(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%s: err = %v, want ErrUnreachable and DeadlineExceeded", what, err)
	}
}

// wantRefused checks that err is a refused call's: unreachable at once.
func wantRefused(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%s: err = %v, want ErrUnreachable and ECONNREFUSED before the deadline", what, err)
	}
}

// taggedWrite is a replication message with msgpack tags, as the engine's are.
type taggedWrite struct {
	Session string            `msgpack:"sid"`
	Version uint64            `msgpack:"ver"`
	Data    []byte            `msgpack:"data,omitempty"`
	Attrs   map[string]string `msgpack:"attrs"`
	Local   string            `msgpack:"-"`
}

// inmemHandler adds to testHandler methods that look at what crossed the
// wire.
var inmemHandler = HandlerFunc(func(ctx context.Context, method string, body msgpack.RawMessage) (any, error) {
	switch method {
	case "bump": // decode, change, send back
		var w taggedWrite
		if err := msgpack.Unmarshal(body, &w); err != nil {
			return nil, err
		}
		w.Version++
		return w, nil
	case "keys": // the field names on the wire
		var m map[string]any
		if err := msgpack.Unmarshal(body, &m); err != nil {
			return nil, err
		}
		return slices.Sorted(maps.Keys(m)), nil
	case "deadline": // whether the caller's deadline reached the handler
		_, ok := ctx.Deadline()
		return ok, nil
	}
	return testHandler(ctx, method, body)
})

func TestInmemRoundTrip(t *testing.T) {
	n := newNetwork(t, NetworkConfig{}, inmemHandler, "b")
	in := taggedWrite{Session: "s-1", Version: 7, Data: []byte("payload"), Attrs: map[string]string{"k": "v"}, Local: "not sent"}
	tests := []struct {
		method string
		args   any
		reply  any // pointer to a zero value, or nil
		want   any // what reply points to afterwards
	}{
		{"add", addArgs{A: 2, B: 40}, new(int), 42},
		{"bump", in, new(taggedWrite), taggedWrite{Session: "s-1", Version: 8, Data: []byte("payload"), Attrs: map[string]string{"k": "v"}}},
		{"keys", in, new([]string), []string{"attrs", "data", "sid", "ver"}},
		{"keys", taggedWrite{Session: "s-2"}, new([]string), []string{"attrs", "sid", "ver"}},
		{"echo", sessionWrite{Key: "s", Version: 3}, new(sessionWrite), sessionWrite{Key: "s", Version: 3}},
		{"deadline", nil, new(bool), false},
		{"echo", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			err := n.Caller("a").Call(callCtx(t), "b", tt.method, tt.args, tt.reply)
			if err != nil {
				t.Fatal(err)
			}
			if tt.reply == nil {
				return
			}
			got := deref(tt.reply)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("reply = %+v, want %+v", got, tt.want)
			}
		})
	}

	var s string
	err := n.Caller("a").Call(callCtx(t), "b", "add", addArgs{A: 1}, &s)
	if err == nil || errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "decode reply") {
		t.Fatalf("decoding int reply into string: err = %v, want decode error", err)
	}
}

// deref returns the value p points to.
func deref(p any) any {
	switch p := p.(type) {
	case *int:
		return *p
	case *bool:
		return *p
	case *[]string:
		return *p
	case *taggedWrite:
		return *p
	case *sessionWrite:
		return *p
	}
	panic(fmt.Sprintf("deref %T", p))
}

func TestInmemHandlerErrors(t *testing.T) {
	n := newNetwork(t, NetworkConfig{MaxFrameSize: 1024}, testHandler, "b")
	tests := []struct {
		method, code, msg string
	}{
		{"not_found", "not_found", "no such session"},
		{"plain_error", "internal", "disk on fire"},
		{"empty_code", "internal", "forgot the code"},
		{"unencodable", "internal", "encode frame body"},
		{"big", "internal", "frame too large"},
		{"panic", "internal", "handler panic: boom"},
		{"nope", "unknown_method", "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			err := n.Caller("a").Call(callCtx(t), "b", tt.method, nil, nil)
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
			if want := "call " + tt.method + " on b: "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("err %q lacks prefix %q", err, want)
			}
		})
	}
	if err := add(callCtx(t), n, "a", "b", 1, 1); err != nil {
		t.Fatalf("call after a panic: %v", err)
	}
}

func TestInmemFrameSizeLimit(t *testing.T) {
	n := newNetwork(t, NetworkConfig{MaxFrameSize: 1024}, testHandler, "b")
	err := n.Caller("a").Call(callCtx(t), "b", "echo", sessionWrite{Data: make([]byte, 2048)}, nil)
	if !errors.Is(err, ErrFrameTooLarge) || errors.Is(err, ErrUnreachable) {
		t.Fatalf("oversized args: err = %v, want ErrFrameTooLarge only", err)
	}
	if got := n.Stats()[CallKey{"a", "b", "echo"}]; got != (CallStats{Calls: 1, Failed: 1}) {
		t.Errorf("stats of the oversized call = %+v, want one failed call never delivered", got)
	}
}

func TestInmemRefused(t *testing.T) {
	tests := []struct {
		name  string
		setup func(n *Network) // makes "b" refuse
		undo  func(n *Network) // makes "b" answer again
	}{
		{"never listened", func(*Network) {},
			func(n *Network) { n.Listen("b", testHandler) }},
		{"closed", func(n *Network) { n.Listen("b", testHandler); n.Close("b") },
			func(n *Network) { n.Listen("b", testHandler) }},
		{"Refuse", func(n *Network) { n.Listen("b", testHandler); n.Refuse("b", true) },
			func(n *Network) { n.Refuse("b", false) }},
		{"Refuse healed", func(n *Network) { n.Listen("b", testHandler); n.Refuse("b", true) },
			func(n *Network) { n.HealAll() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := NewNetwork(NetworkConfig{})
			t.Cleanup(func() { n.Close("b") })
			tt.setup(n)
			// A ten-second deadline: a refusal must not wait for it.
			wantRefused(t, "call to b", add(callCtx(t), n, "a", "b", 1, 2))
			if got := n.Total(); got != (CallStats{Calls: 1, Failed: 1, Unreachable: 1}) {
				t.Errorf("stats = %+v, want one unreachable call never delivered", got)
			}
			tt.undo(n)
			if err := add(callCtx(t), n, "a", "b", 1, 2); err != nil {
				t.Errorf("call after undoing: %v", err)
			}
		})
	}
}

func TestInmemListenTwice(t *testing.T) {
	n := newNetwork(t, NetworkConfig{}, testHandler, "b")
	if err := n.Listen("b", testHandler); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("second Listen on b: err = %v, want EADDRINUSE", err)
	}
	n.Close("b")
	n.Close("b") // closing twice is harmless
	if err := n.Listen("b", testHandler); err != nil {
		t.Errorf("Listen after Close: %v", err)
	}
}

func TestInmemCloseFailsInFlightCalls(t *testing.T) {
	n := newNetwork(t, NetworkConfig{}, testHandler, "b")
	done := make(chan error, 1)
	go func() { done <- n.Caller("a").Call(callCtx(t), "b", "wait", nil, nil) }()
	eventually(t, 5*time.Second, "the call to reach its handler", func() bool { return n.Total().Delivered == 1 })

	n.Close("b") // cancels the handler, which then answers with an error
	err := <-done
	var pe *Error
	if !errors.Is(err, ErrUnreachable) || errors.As(err, &pe) {
		t.Fatalf("call in flight during Close: err = %v, want ErrUnreachable and no handler answer", err)
	}
	wantRefused(t, "call after Close", add(callCtx(t), n, "a", "b", 1, 1))
}

func TestInmemCutIsOneWay(t *testing.T) {
	n := newNetwork(t, NetworkConfig{}, testHandler, "a", "b")
	n.Cut("a", "b")

	wantLost(t, "a → b over the cut", add(lostCtx(t), n, "a", "b", 1, 1))
	if err := add(callCtx(t), n, "b", "a", 1, 1); err != nil {
		t.Errorf("b → a (not cut): %v", err)
	}
	if err := add(callCtx(t), n, "c", "b", 1, 1); err != nil {
		t.Errorf("c → b (not cut): %v", err)
	}
	if got := n.Stats()[CallKey{"a", "b", "add"}]; got != (CallStats{Calls: 1, Failed: 1, Unreachable: 1}) {
		t.Errorf("stats a → b = %+v, want one lost call never delivered", got)
	}

	n.Heal("a", "b")
	if err := add(callCtx(t), n, "a", "b", 1, 1); err != nil {
		t.Errorf("a → b after Heal: %v", err)
	}
}

func TestInmemLostCallWaitsForCancel(t *testing.T) {
	n := newNetwork(t, NetworkConfig{}, testHandler, "b")
	n.Cut("a", "b")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- add(ctx, n, "a", "b", 1, 1) }()
	eventually(t, 5*time.Second, "the call to start", func() bool { return n.Total().Calls == 1 })
	n.Heal("a", "b") // too late: the request is already lost
	select {
	case err := <-done:
		t.Fatalf("lost call returned before its ctx ended: %v", err)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, ErrUnreachable) || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled lost call: err = %v, want ErrUnreachable and Canceled", err)
	}
}

func TestInmemPartition(t *testing.T) {
	n := newNetwork(t, NetworkConfig{}, testHandler, "a", "b", "c", "d")
	n.Partition([]string{"a", "b"}, []string{"c"})
	tests := []struct {
		from, to string
		lost     bool
	}{
		{"a", "b", false}, {"b", "a", false}, // within a group
		{"a", "c", true}, {"c", "a", true}, {"b", "c", true}, {"c", "b", true}, // across
		{"d", "a", false}, {"c", "d", false}, // d is in no group
	}
	for _, tt := range tests {
		t.Run(tt.from+"→"+tt.to, func(t *testing.T) {
			if tt.lost {
				wantLost(t, "call across the partition", add(lostCtx(t), n, tt.from, tt.to, 1, 1))
			} else if err := add(callCtx(t), n, tt.from, tt.to, 1, 1); err != nil {
				t.Errorf("call on the same side: %v", err)
			}
		})
	}
	n.HealAll()
	for _, tt := range tests {
		if err := add(callCtx(t), n, tt.from, tt.to, 1, 1); err != nil {
			t.Errorf("%s → %s after HealAll: %v", tt.from, tt.to, err)
		}
	}
}

func TestInmemDelayWithManualClock(t *testing.T) {
	clock := NewManualClock(t0)
	n := newNetwork(t, NetworkConfig{Clock: clock}, testHandler, "a", "b")
	n.SetDelay("a", "b", time.Second)

	done := make(chan error, 1)
	go func() { done <- add(callCtx(t), n, "a", "b", 1, 1) }()
	if err := clock.BlockUntil(callCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	if err := add(callCtx(t), n, "b", "a", 1, 1); err != nil {
		t.Fatalf("b → a (no delay) while a → b is delayed: %v", err)
	}
	clock.Advance(999 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("delayed call returned before its delay passed: %v", err)
	default:
	}
	if d := n.Stats()[CallKey{"a", "b", "add"}].Delivered; d != 0 {
		t.Fatalf("delayed call delivered %d times before its delay passed", d)
	}
	clock.Advance(time.Millisecond)
	if err := <-done; err != nil {
		t.Fatalf("delayed call after the delay: %v", err)
	}

	// A call whose ctx ends during the delay is never delivered and leaves
	// no timer behind.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- add(ctx, n, "a", "b", 1, 1) }()
	if err := clock.BlockUntil(callCtx(t), 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, ErrUnreachable) || !errors.Is(err, context.Canceled) {
		t.Errorf("call cancelled during its delay: err = %v, want ErrUnreachable and Canceled", err)
	}
	if p := clock.Pending(); p != 0 {
		t.Errorf("%d timers pending after the delayed call gave up, want 0", p)
	}
	if got := n.Stats()[CallKey{"a", "b", "add"}]; got != (CallStats{Calls: 2, Delivered: 1, Failed: 1, Unreachable: 1}) {
		t.Errorf("stats a → b = %+v", got)
	}

	n.SetDelay("a", "b", 0)
	if err := add(callCtx(t), n, "a", "b", 1, 1); err != nil {
		t.Errorf("call after removing the delay: %v", err)
	}
}

// dropPattern makes calls a → b and reports which ones were delivered. The
// calls' ctx is already cancelled, so lost ones return at once; delivery is
// read from Stats, which the race between the answer and the ctx does not
// affect.
func dropPattern(t *testing.T, n *Network, calls int) []bool {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out []bool
	for range calls {
		before := n.Total().Delivered
		add(ctx, n, "a", "b", 1, 1)
		out = append(out, n.Total().Delivered > before)
	}
	return out
}

func TestInmemDropRateIsSeeded(t *testing.T) {
	const calls = 64
	tests := []struct {
		rate     float64
		min, max int // delivered calls
	}{
		{0, calls, calls},
		{-1, calls, calls}, // clamped to 0
		{1, 0, 0},
		{7, 0, 0}, // clamped to 1
		{0.5, 1, calls - 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.rate), func(t *testing.T) {
			n := newNetwork(t, NetworkConfig{}, testHandler, "b")
			n.SetDropRate("a", "b", tt.rate)
			n.Seed(42)
			first := dropPattern(t, n, calls)
			n.Seed(42)
			if again := dropPattern(t, n, calls); !slices.Equal(first, again) {
				t.Errorf("same seed, different drops:\n%v\n%v", first, again)
			}
			delivered := 0
			for _, ok := range first {
				if ok {
					delivered++
				}
			}
			if delivered < tt.min || delivered > tt.max {
				t.Errorf("%d of %d calls delivered, want %d..%d", delivered, calls, tt.min, tt.max)
			}
		})
	}
}

func TestInmemHang(t *testing.T) {
	n := newNetwork(t, NetworkConfig{}, testHandler, "a", "b")
	n.Hang("b", true)
	wantLost(t, "call to a hung node", add(lostCtx(t), n, "a", "b", 1, 1))
	if d := n.Total().Delivered; d != 0 {
		t.Fatalf("hung node served %d calls", d)
	}
	if err := add(callCtx(t), n, "b", "a", 1, 1); err != nil {
		t.Fatalf("call made by the hung node: %v", err)
	}

	// A call waiting on the hung node is served when it resumes.
	done := make(chan error, 1)
	go func() { done <- add(callCtx(t), n, "a", "b", 2, 2) }()
	eventually(t, 5*time.Second, "the call to start", func() bool { return n.Stats()[CallKey{"a", "b", "add"}].Calls == 2 })
	n.Hang("b", false)
	if err := <-done; err != nil {
		t.Fatalf("call waiting through a resume: %v", err)
	}
}

func TestInmemHangHoldsReplies(t *testing.T) {
	release, returned := make(chan struct{}), make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, method string, body msgpack.RawMessage) (any, error) {
		defer close(returned)
		<-release
		return "late", nil
	})
	n := newNetwork(t, NetworkConfig{}, h, "b")
	done := make(chan error, 1)
	var reply string
	go func() { done <- n.Caller("a").Call(callCtx(t), "b", "slow", nil, &reply) }()
	eventually(t, 5*time.Second, "the call to reach its handler", func() bool { return n.Total().Delivered == 1 })

	n.Hang("b", true)
	close(release)
	<-returned
	select {
	case err := <-done:
		t.Fatalf("reply left a hung node: %v", err)
	default:
	}
	n.HealAll() // resumes b
	if err := <-done; err != nil || reply != "late" {
		t.Fatalf("held reply after resume: %q, %v", reply, err)
	}
}

func TestInmemConcurrentCallsAndFaults(t *testing.T) {
	nodes := []string{"a", "b", "c"}
	n := newNetwork(t, NetworkConfig{}, testHandler, nodes...)
	const perNode = 200

	stop := make(chan struct{})
	var chaos sync.WaitGroup
	chaos.Go(func() { // flips faults while calls run
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-stop:
				return
			default:
			}
			from, to := nodes[rng.IntN(3)], nodes[rng.IntN(3)]
			switch rng.IntN(6) {
			case 0:
				n.Cut(from, to)
			case 1:
				n.SetDropRate(from, to, 0.3)
			case 2:
				n.Hang(to, rng.IntN(2) == 0)
			case 3:
				n.Refuse(to, rng.IntN(2) == 0)
			case 4:
				n.Heal(from, to)
			case 5:
				n.HealAll()
			}
		}
	})

	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed int
	for _, from := range nodes {
		for i := range perNode {
			wg.Go(func() {
				to := nodes[i%3]
				err := add(lostCtx(t), n, from, to, i, i)
				if err == nil {
					return
				}
				mu.Lock()
				failed++
				mu.Unlock()
				if !errors.Is(err, ErrUnreachable) {
					t.Errorf("%s → %s: %v, want success or ErrUnreachable", from, to, err)
				}
			})
		}
	}
	wg.Wait()
	close(stop)
	chaos.Wait()

	total := n.Total()
	t.Logf("%+v", total)
	if total.Calls != len(nodes)*perNode || total.Failed != failed || total.Unreachable != failed {
		t.Errorf("stats %+v, want %d calls of which %d failed, all unreachable", total, len(nodes)*perNode, failed)
	}
	n.HealAll()
	for _, from := range nodes {
		for _, to := range nodes {
			if err := add(callCtx(t), n, from, to, 1, 1); err != nil {
				t.Errorf("%s → %s after HealAll: %v", from, to, err)
			}
		}
	}
}

func TestInmemStats(t *testing.T) {
	n := newNetwork(t, NetworkConfig{}, testHandler, "b")
	c := n.Caller("a")
	c.Call(callCtx(t), "b", "add", addArgs{}, nil)
	c.Call(callCtx(t), "b", "add", addArgs{}, nil)
	c.Call(callCtx(t), "b", "not_found", nil, nil)
	c.Call(callCtx(t), "x", "add", addArgs{}, nil)
	n.Caller("b").Call(callCtx(t), "b", "add", addArgs{}, nil)

	want := map[CallKey]CallStats{
		{"a", "b", "add"}:       {Calls: 2, Delivered: 2},
		{"a", "b", "not_found"}: {Calls: 1, Delivered: 1, Failed: 1},
		{"a", "x", "add"}:       {Calls: 1, Failed: 1, Unreachable: 1},
		{"b", "b", "add"}:       {Calls: 1, Delivered: 1},
	}
	if got := n.Stats(); !maps.Equal(got, want) {
		t.Errorf("Stats() = %v, want %v", got, want)
	}
	if got, want := n.Total(), (CallStats{Calls: 5, Delivered: 4, Failed: 2, Unreachable: 1}); got != want {
		t.Errorf("Total() = %+v, want %+v", got, want)
	}
}

// TestInmemBehindFaultyCaller shows the two fault layers compose: a
// FaultyCaller wraps an InmemCaller as it wraps a Client.
func TestInmemBehindFaultyCaller(t *testing.T) {
	n := newNetwork(t, NetworkConfig{}, testHandler, "b")
	f := NewFaultyCaller(n.Caller("a"))
	var sum int
	if err := f.Call(callCtx(t), "b", "add", addArgs{A: 1, B: 2}, &sum); err != nil || sum != 3 {
		t.Fatalf("through FaultyCaller: %d, %v", sum, err)
	}
	f.Cut("b")
	if err := f.Call(callCtx(t), "b", "add", addArgs{}, nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("FaultyCaller cut: err = %v", err)
	}
	if got := n.Total().Calls; got != 1 {
		t.Errorf("network saw %d calls, want 1 (the cut one stops in FaultyCaller)", got)
	}
}
