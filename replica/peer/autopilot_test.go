package peer

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// A context from WithTimeout on a ManualClock ends when the clock passes
// its time, not before, with DeadlineExceeded, which contexts derived from
// it inherit; cancelling it says Canceled.
func TestWithTimeoutOnAManualClock(t *testing.T) {
	c := NewManualClock(t0)
	ctx, cancel := WithTimeout(context.Background(), c, time.Second)
	defer cancel()
	child, cancelChild := context.WithCancel(ctx)
	defer cancelChild()
	if err := c.BlockUntil(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	c.Advance(999 * time.Millisecond)
	if ctx.Err() != nil {
		t.Fatalf("ended %v before its time", ctx.Err())
	}
	c.Advance(time.Millisecond)
	<-child.Done()
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) || !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Fatalf("after the time: %v, derived %v; want DeadlineExceeded", ctx.Err(), child.Err())
	}

	ctx, cancel = WithTimeout(context.Background(), c, time.Second)
	cancel()
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("cancelled: %v, want Canceled", ctx.Err())
	}
	if c.Pending() != 0 {
		t.Fatalf("%d timers left pending by contexts that ended", c.Pending())
	}
}

// WithTimeout on the system clock is context.WithTimeout.
func TestWithTimeoutOnTheSystemClock(t *testing.T) {
	ctx, cancel := WithTimeout(context.Background(), SystemClock(), time.Hour)
	defer cancel()
	if d, ok := ctx.Deadline(); !ok || time.Until(d) < 59*time.Minute {
		t.Fatalf("deadline %v %v, want an hour from now", d, ok)
	}
}

// The autopilot lets an hour pass on the clock in far less real time while
// the network is idle, and holds the clock back while a call computes: it
// moves at most MaxStep per Busy of quiet while a call is under way.
func TestAutopilot(t *testing.T) {
	c := NewManualClock(t0)
	network := NewNetwork(NetworkConfig{Clock: c})
	pilot := StartAutopilot(c, network, AutopilotConfig{})
	defer pilot.Stop()

	start := time.Now()
	ctx, cancel := WithTimeout(context.Background(), c, time.Hour)
	<-ctx.Done()
	cancel()
	if c.Now().Sub(t0) < time.Hour {
		t.Fatalf("the clock reads %v after the hour's context ended", c.Now().Sub(t0))
	}
	t.Logf("an hour of virtual time took %v", time.Since(start))

	// A call computing for 20ms of real time, with a timer an hour away
	// pending: while the call is under way the autopilot moves at most
	// MaxStep per Busy of quiet, never to the far timer.
	var atEnd atomic.Int64 // the clock when the handler finishes
	if err := network.Listen("b", HandlerFunc(func(ctx context.Context, method string, body msgpack.RawMessage) (any, error) {
		time.Sleep(20 * time.Millisecond) // computing, as far as the network can tell
		atEnd.Store(c.Now().UnixNano())
		return "done", nil
	})); err != nil {
		t.Fatal(err)
	}
	callCtx, cancelCall := context.WithTimeout(context.Background(), 10*time.Second) // real time: see below
	defer cancelCall()
	done := make(chan error, 1)
	began := time.Now()
	go func() {
		var reply string
		err := network.Caller("a").Call(callCtx, "b", "work", struct{}{}, &reply)
		if err == nil && reply != "done" {
			err = fmt.Errorf("reply %q", reply)
		}
		done <- err
	}()
	for {
		if _, inFlight := network.Activity(); inFlight > 0 {
			break
		}
		runtime.Gosched()
	}
	far := c.NewTimer(time.Hour) // created once the call is under way, so no idle moment precedes it
	defer far.Stop()
	before := c.Now()
	if err := <-done; err != nil {
		t.Fatalf("call: %v", err)
	}
	took := time.Since(began)
	if moved, bound := time.Unix(0, atEnd.Load()).Sub(before), 10*(took+time.Millisecond); moved > bound {
		t.Fatalf("the clock moved %v during a call of %v, more than %v", moved, took, bound)
	}
}
