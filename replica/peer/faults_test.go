package peer

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stubCaller counts the calls that reach it and always succeeds.
type stubCaller struct{ calls atomic.Int64 }

// Call counts the call and succeeds.
func (s *stubCaller) Call(context.Context, string, string, any, any) error {
	s.calls.Add(1)
	return nil
}

func TestFaultyCallerCutAndHeal(t *testing.T) {
	stub := &stubCaller{}
	f := NewFaultyCaller(stub)
	ctx := context.Background()

	f.Cut("a")
	if err := f.Call(ctx, "a", "m", nil, nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("call to cut addr: err = %v, want ErrUnreachable", err)
	}
	if err := f.Call(ctx, "b", "m", nil, nil); err != nil {
		t.Fatalf("call to other addr: %v", err)
	}
	if n := stub.calls.Load(); n != 1 {
		t.Fatalf("inner saw %d calls, want 1 (cut call must not pass)", n)
	}
	f.Heal("a")
	if err := f.Call(ctx, "a", "m", nil, nil); err != nil {
		t.Fatalf("call after Heal: %v", err)
	}

	f.Cut("a")
	f.Cut("b")
	f.SetDelay("c", time.Hour)
	f.HealAll()
	for _, addr := range []string{"a", "b", "c"} {
		if err := f.Call(ctx, addr, "m", nil, nil); err != nil {
			t.Errorf("call to %s after HealAll: %v", addr, err)
		}
	}
}

func TestFaultyCallerDelay(t *testing.T) {
	stub := &stubCaller{}
	f := NewFaultyCaller(stub)
	const d = 30 * time.Millisecond
	f.SetDelay("a", d)

	start := time.Now()
	if err := f.Call(context.Background(), "a", "m", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := time.Since(start); got < d {
		t.Errorf("delayed call took %v, want at least %v", got, d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	err := f.Call(ctx, "a", "m", nil, nil)
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline shorter than delay: err = %v, want ErrUnreachable and DeadlineExceeded", err)
	}
	if n := stub.calls.Load(); n != 1 {
		t.Errorf("inner saw %d calls, want 1 (expired call must not pass)", n)
	}

	f.SetDelay("a", 0)
	ctx, cancel = context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if err := f.Call(ctx, "a", "m", nil, nil); err != nil {
		t.Fatalf("call after removing delay: %v", err)
	}
}

func TestFaultyCallerDrop(t *testing.T) {
	t.Run("always", func(t *testing.T) {
		stub := &stubCaller{}
		f := NewFaultyCaller(stub)
		f.SetDropRate("a", 1)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		err := f.Call(ctx, "a", "m", nil, nil)
		if !errors.Is(err, ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("dropped call: err = %v, want ErrUnreachable and DeadlineExceeded", err)
		}
		if ctx.Err() == nil {
			t.Error("dropped call returned before its context ended")
		}
		if n := stub.calls.Load(); n != 0 {
			t.Errorf("dropped call reached inner caller")
		}
	})

	// dropPattern makes n calls with an already-cancelled context, so that
	// dropped calls return at once, and records which were dropped.
	dropPattern := func(seed uint64, p float64, n int) []bool {
		f := NewFaultyCaller(&stubCaller{})
		f.Seed(seed)
		f.SetDropRate("a", p)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		dropped := make([]bool, n)
		for i := range dropped {
			dropped[i] = f.Call(ctx, "a", "m", nil, nil) != nil
		}
		return dropped
	}
	tests := []struct {
		p        float64
		min, max int
	}{{0, 0, 0}, {0.1, 50, 150}, {0.5, 400, 600}, {1, 1000, 1000}, {7, 1000, 1000}}
	for _, tt := range tests {
		got := 0
		for _, d := range dropPattern(42, tt.p, 1000) {
			if d {
				got++
			}
		}
		if got < tt.min || got > tt.max {
			t.Errorf("p=%v dropped %d of 1000 calls, want %d..%d", tt.p, got, tt.min, tt.max)
		}
	}

	a, b, c := dropPattern(7, 0.5, 200), dropPattern(7, 0.5, 200), dropPattern(8, 0.5, 200)
	same := func(x, y []bool) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Error("same seed gave different drops")
	}
	if same(a, c) {
		t.Error("different seeds gave identical drops")
	}
}

func TestFaultyCallerConcurrent(t *testing.T) {
	f := NewFaultyCaller(&stubCaller{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				switch j % 5 {
				case 0:
					f.Cut("a")
				case 1:
					f.SetDropRate("a", 0.5)
				case 2:
					f.SetDelay("b", time.Duration(i))
				case 3:
					f.Heal("a")
				case 4:
					f.Seed(uint64(j))
				}
				f.Call(ctx, "a", "m", nil, nil)
				f.Call(ctx, "b", "m", nil, nil)
			}
		})
	}
	wg.Wait()
	f.HealAll()
	if err := f.Call(context.Background(), "a", "m", nil, nil); err != nil {
		t.Fatalf("call after HealAll: %v", err)
	}
}

func TestFaultyCallerOverClient(t *testing.T) {
	ts := startServer(t, testHandler, ServerConfig{}, "127.0.0.1:0")
	f := NewFaultyCaller(newClient(t, ClientConfig{}))

	var sum int
	if err := f.Call(callCtx(t), ts.addr, "add", addArgs{A: 1, B: 1}, &sum); err != nil || sum != 2 {
		t.Fatalf("pass-through call: %d, %v", sum, err)
	}
	f.Cut(ts.addr)
	if err := f.Call(callCtx(t), ts.addr, "add", addArgs{}, nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("call over cut link: err = %v, want ErrUnreachable", err)
	}
	f.Heal(ts.addr)
	if err := f.Call(callCtx(t), ts.addr, "not_found", nil, nil); !errors.As(err, new(*Error)) {
		t.Fatalf("handler error through FaultyCaller: err = %v, want *Error", err)
	}
}

// A lost reply: the call is carried out, then fails as unreachable once
// its context ends, as a call whose answer vanished does.
func TestFaultyCallerReplyLoss(t *testing.T) {
	inner := &stubCaller{}
	f := NewFaultyCaller(inner)
	f.SetReplyLossRate("a", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := f.Call(ctx, "a", "m", nil, nil)
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call whose reply was lost: %v", err)
	}
	if inner.calls.Load() != 1 {
		t.Fatalf("the call was carried out %d times, want once", inner.calls.Load())
	}
	f.SetReplyLossRate("a", 0)
	if err := f.Call(context.Background(), "a", "m", nil, nil); err != nil || inner.calls.Load() != 2 {
		t.Fatalf("after the fault is removed: %v, %d calls", err, inner.calls.Load())
	}
}
