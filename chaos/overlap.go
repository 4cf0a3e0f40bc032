package chaos

import (
	"context"
	"errors"
	"time"
)

// overlapping is one fault of overlap mode, from its injection to the
// cluster's recovery.
type overlapping struct {
	f     Fault
	start time.Time
	// injected, healed and done close when the fault has been injected,
	// healed, and the cluster has recovered (or the wait gave up).
	injected, healed, done chan struct{}
	// release closes once the nemesis has started the fault that overlaps
	// this one, named by next, or has decided that none does.
	release  chan struct{}
	next     *overlapping
	released bool // touched only by runOverlap's goroutine
}

// runOverlap is Run in overlap mode. A fault the schedule does not mark
// Fault.Overlap waits, as in Run, until every fault before it has been
// healed and the cluster is healthy. A fault marked Overlap does not: it
// starts Fault.Lag after the previous fault began, while that one holds
// or, once healed, while the cluster recovers from it (re-protection,
// hand-offs), and on another node than that one's, so that the two can
// take both owners of some partitions. At most two faults hold at once: a
// third waits for the first to be healed. A fault's recovery (its
// FaultEvent.Recovered) is counted from the end of the fault that
// overlapped it, so it is never recorded before that one started. Every
// fault is healed, even when ctx ends, before runOverlap returns.
func (n *Nemesis) runOverlap(ctx context.Context) {
	var all []*overlapping
	var cur, older *overlapping
	decide := func(a, next *overlapping) {
		if a != nil && !a.released {
			a.next, a.released = next, true
			close(a.release)
		}
	}
	defer func() {
		decide(older, nil)
		decide(cur, nil)
		for _, a := range all {
			<-a.done
		}
	}()
	for count := 0; n.cfg.MaxFaults == 0 || count < n.cfg.MaxFaults; count++ {
		if ctx.Err() != nil {
			return
		}
		f := n.sched.Next()
		overlap := f.Overlap && cur != nil
		if overlap {
			if older != nil && !waitFor(ctx, older.healed) {
				return
			}
			if !sleepCtx(ctx, time.Until(cur.start.Add(n.dilate(f.Lag)))) {
				return
			}
			f = retarget(f, cur.f, n.sched.cfg.Nodes)
		} else {
			f.Overlap, f.Lag = false, 0
			decide(cur, nil)
			for _, a := range []*overlapping{older, cur} {
				if a != nil && !waitFor(ctx, a.done) {
					return
				}
			}
			if !n.waitHealthy(ctx) || ctx.Err() != nil {
				return
			}
			if cur != nil && !sleepCtx(ctx, n.dilate(cur.f.Gap)) {
				return
			}
			older = nil
		}
		a := &overlapping{f: f, injected: make(chan struct{}), healed: make(chan struct{}), done: make(chan struct{}), release: make(chan struct{})}
		all = append(all, a)
		go n.runOverlapping(ctx, a)
		<-a.injected
		if overlap {
			decide(cur, a)
			older = cur
		}
		cur = a
	}
}

// runOverlapping injects a's fault, holds it, heals it, and waits for the
// cluster to recover from it and from the fault that overlaps it, if any,
// leaving alone the nodes another fault holds down.
func (n *Nemesis) runOverlapping(ctx context.Context, a *overlapping) {
	defer close(a.done)
	f := a.f
	n.hold(f, 1)
	a.start = time.Now()
	ev := FaultEvent{Fault: f, Start: n.h.Since(a.start)}
	n.cfg.Logger.Info("fault", "seq", f.Seq, "fault", f.String())
	ictx, icancel := context.WithTimeout(context.Background(), n.opTimeout)
	heal, err := n.injectFn(ictx, f)
	icancel()
	close(a.injected)
	if err == nil {
		sleepCtx(ctx, n.dilate(f.Duration))
	}
	healFor := n.opTimeout
	if ctx.Err() != nil {
		healFor = 2 * time.Second
	}
	// Healing is retried (every heal is idempotent) while it fails within
	// its bound: a control call to a node another fault holds frozen times
	// out until that fault thaws it.
	hctx, cancel := context.WithTimeout(context.Background(), healFor)
	if heal != nil {
		herr := heal(hctx)
		for herr != nil && sleepCtx(hctx, 500*time.Millisecond) {
			herr = heal(hctx)
		}
		err = errors.Join(err, herr)
	}
	cancel()
	ev.End = n.h.Since(time.Now())
	n.hold(f, -1)
	close(a.healed)
	if err != nil {
		ev.Error = err.Error()
		n.cfg.Logger.Warn("fault went wrong", "seq", f.Seq, "err", err)
	}
	<-a.release
	if a.next != nil {
		<-a.next.healed
	}
	if n.waitHealthySkipping(ctx, n.isHeld) {
		ev.Recovered = n.h.Since(time.Now())
	}
	n.mu.Lock()
	n.events = append(n.events, ev)
	n.mu.Unlock()
}

// hold counts f's node as held down (d = 1) or no longer (d = -1) when f
// stops or freezes it, so that recovering from another fault leaves it be.
func (n *Nemesis) hold(f Fault, d int) {
	if !f.Kind.crashes() {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.held[f.Node] += d
}

// isHeld reports whether a fault not yet healed holds node i down.
func (n *Nemesis) isHeld(i int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.held[i] > 0
}

// retarget moves an overlapping fault f off the node the fault it
// overlaps attacks (prev.Node), so that the two hit two nodes' worth of
// owners; a peer that would then be f's own node moves on too.
func retarget(f, prev Fault, nodes int) Fault {
	if nodes < 2 {
		return f
	}
	if f.Node == prev.Node {
		f.Node = (f.Node + 1) % nodes
	}
	if f.Peer == f.Node {
		f.Peer = (f.Node + 1) % nodes
	}
	return f
}

// waitFor waits until ch closes (true) or ctx ends (false).
func waitFor(ctx context.Context, ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// sleepCtx waits d (true) or until ctx ends (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
