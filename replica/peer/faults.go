package peer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// FaultyCaller wraps a Caller and injects network faults per destination
// address, for tests and chaos runs. Faults apply to calls made after they
// are set; calls already in progress are unaffected. A zero fault state
// passes calls straight through. It is safe for concurrent use.
//
// Injected failures look like real ones: they wrap ErrUnreachable (and
// ctx.Err() when the context ended) and carry the same "call METHOD on ADDR"
// prefix as Client errors.
type FaultyCaller struct {
	inner Caller

	mu     sync.Mutex
	rng    *rand.Rand // guarded by mu
	faults map[string]fault
}

// fault is the set of faults injected for one address.
type fault struct {
	cut       bool
	delay     time.Duration
	drop      float64
	replyLoss float64
}

var _ Caller = (*FaultyCaller)(nil)

// NewFaultyCaller returns a FaultyCaller passing calls to inner, with no
// faults set and its drop decisions seeded with 1, so runs are reproducible
// until Seed is called.
func NewFaultyCaller(inner Caller) *FaultyCaller {
	f := &FaultyCaller{inner: inner, faults: make(map[string]fault)}
	f.Seed(1)
	return f
}

// Seed reseeds the random source behind drop decisions. Equal seeds and an
// equal sequence of calls give equal drops.
func (f *FaultyCaller) Seed(seed uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// Cut makes calls to addr fail immediately with an error wrapping
// ErrUnreachable, as if the link were down, until Heal or HealAll.
func (f *FaultyCaller) Cut(addr string) {
	f.update(addr, func(ft *fault) { ft.cut = true })
}

// Heal removes every fault set for addr: cut, delay and drop rate.
func (f *FaultyCaller) Heal(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.faults, addr)
}

// HealAll removes every fault for every address.
func (f *FaultyCaller) HealAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.faults)
}

// SetDelay adds latency d before each call to addr is passed on. If ctx ends
// during the delay the call fails with ErrUnreachable and ctx.Err() without
// being sent. Zero removes the delay.
func (f *FaultyCaller) SetDelay(addr string, d time.Duration) {
	f.update(addr, func(ft *fault) { ft.delay = max(d, 0) })
}

// SetDropRate makes each call to addr be lost with probability p (clamped to
// [0, 1]), after any delay. A lost call is never passed on: it waits until
// its ctx ends and then fails with ErrUnreachable and ctx.Err(), like a
// request whose packet vanished. A lost call whose ctx never ends blocks
// forever. Zero removes the fault.
func (f *FaultyCaller) SetDropRate(addr string, p float64) {
	f.update(addr, func(ft *fault) { ft.drop = min(max(p, 0), 1) })
}

// SetReplyLossRate makes each call to addr lose its reply with
// probability p (clamped to [0, 1]): the call is passed on and carried
// out, then waits until its ctx ends and fails with ErrUnreachable and
// ctx.Err(), like a request whose answer vanished on the way back. Zero
// removes the fault.
func (f *FaultyCaller) SetReplyLossRate(addr string, p float64) {
	f.update(addr, func(ft *fault) { ft.replyLoss = min(max(p, 0), 1) })
}

// update edits addr's faults under the lock, forgetting addr once clear.
func (f *FaultyCaller) update(addr string, edit func(*fault)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ft := f.faults[addr]
	edit(&ft)
	if ft == (fault{}) {
		delete(f.faults, addr)
	} else {
		f.faults[addr] = ft
	}
}

// Call applies addr's faults and, unless they fail the call, passes it on
// to the wrapped Caller.
func (f *FaultyCaller) Call(ctx context.Context, addr, method string, args, reply any) error {
	f.mu.Lock()
	ft := f.faults[addr]
	dropped := ft.drop > 0 && f.rng.Float64() < ft.drop
	replyLost := ft.replyLoss > 0 && f.rng.Float64() < ft.replyLoss
	f.mu.Unlock()

	if ft.cut {
		return fmt.Errorf("call %s on %s: %w: link cut by fault injection", method, addr, ErrUnreachable)
	}
	if ft.delay > 0 {
		t := time.NewTimer(ft.delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("call %s on %s: %w", method, addr, unreachable(ctx.Err()))
		}
	}
	if dropped {
		<-ctx.Done()
		return fmt.Errorf("call %s on %s: %w", method, addr, unreachable(ctx.Err()))
	}
	if replyLost {
		if err := f.inner.Call(ctx, addr, method, args, nil); err != nil {
			return err
		}
		<-ctx.Done()
		return fmt.Errorf("call %s on %s: %w: reply lost by fault injection", method, addr, unreachable(ctx.Err()))
	}
	return f.inner.Call(ctx, addr, method, args, reply)
}
