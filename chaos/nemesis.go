package chaos

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// FaultEvent is a fault as it happened.
type FaultEvent struct {
	// Fault is what the schedule asked for.
	Fault Fault `json:"fault"`
	// Start and End are when it was injected and healed, since the
	// history began.
	Start time.Duration `json:"start"`
	End   time.Duration `json:"end"`
	// Recovered is when the cluster was healthy again afterwards (zero if
	// it was not within the recovery bound).
	Recovered time.Duration `json:"recovered,omitempty"`
	// Error says what went wrong injecting or healing it, if anything.
	Error string `json:"error,omitempty"`
}

// NemesisConfig configures a Nemesis.
type NemesisConfig struct {
	// RecoverTimeout bounds the wait for the cluster to be healthy again
	// before each fault (default 30s). Faults start only on a healthy
	// cluster, so they are single failures separated by the time it takes
	// to restore two copies, as the design's first guarantee requires.
	RecoverTimeout time.Duration
	// MaxFaults stops the nemesis after that many faults (0: no limit
	// but time).
	MaxFaults int
	// Overlap turns on overlap mode: a fault the schedule marks
	// Fault.Overlap starts while the one before it holds or recovers,
	// without waiting for a healthy cluster (see Nemesis.Run). The
	// schedule's ScheduleConfig.Overlap says how often; without it every
	// fault waits for a healthy cluster, as before.
	Overlap bool
	// Logger receives a line per fault (default: discard).
	Logger *slog.Logger
}

// Nemesis injects a schedule's faults into a cluster: one at a time, or,
// in overlap mode, sometimes two at once.
type Nemesis struct {
	c     *Cluster
	sched *Schedule
	h     *History
	cfg   NemesisConfig

	// injectFn starts a fault and returns how to heal it; recoverFn
	// restarts the nodes that are down, but those skip names, and waits
	// for a healthy cluster. They act on c; tests replace them.
	injectFn  func(ctx context.Context, f Fault) (func(context.Context) error, error)
	recoverFn func(ctx context.Context, skip func(int) bool) error
	// opTimeout bounds injecting and healing one fault.
	opTimeout time.Duration
	// dilate scales the schedule's waits (holds, lags, gaps): the
	// identity but in tests.
	dilate func(time.Duration) time.Duration

	mu       sync.Mutex
	events   []FaultEvent
	warnings []string
	held     map[int]int // nodes stopped or frozen by a fault not yet healed
}

// NewNemesis returns a nemesis attacking c with sched, timing events on
// h's clock.
func NewNemesis(c *Cluster, sched *Schedule, h *History, cfg NemesisConfig) *Nemesis {
	if cfg.RecoverTimeout == 0 {
		cfg.RecoverTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Nemesis{c: c, sched: sched, h: h, cfg: cfg, held: map[int]int{}}
	n.injectFn, n.recoverFn = n.inject, n.recoverCluster
	n.dilate = func(d time.Duration) time.Duration { return d }
	if c != nil {
		n.opTimeout = c.cfg.DrainTimeout + c.cfg.StartTimeout
	}
	return n
}

// Run injects faults until ctx ends or MaxFaults have been injected. Each
// fault waits for a healthy cluster, holds for its duration, and is healed
// before Run moves on or returns, even when ctx ends during it. In overlap
// mode a fault the schedule marks Fault.Overlap does not wait: see
// runOverlap.
func (n *Nemesis) Run(ctx context.Context) {
	if n.cfg.Overlap {
		n.runOverlap(ctx)
		return
	}
	for count := 0; n.cfg.MaxFaults == 0 || count < n.cfg.MaxFaults; count++ {
		if !n.waitHealthy(ctx) || ctx.Err() != nil {
			return
		}
		f := n.sched.Next()
		ev := FaultEvent{Fault: f, Start: n.h.Since(time.Now())}
		n.cfg.Logger.Info("fault", "seq", f.Seq, "fault", f.String())
		// Injecting uses its own bounded context, so a fault begun just
		// before the end of the attack is carried out whole, then healed.
		ictx, icancel := context.WithTimeout(context.Background(), n.opTimeout)
		heal, err := n.injectFn(ictx, f)
		icancel()
		if err == nil {
			select {
			case <-ctx.Done():
			case <-time.After(n.dilate(f.Duration)):
			}
		}
		// Heal with a fresh context: a fault must never outlive the run. When
		// the run is being interrupted, healing is brief: the cluster is
		// about to be killed anyway.
		healFor := n.opTimeout
		if ctx.Err() != nil {
			healFor = 2 * time.Second
		}
		hctx, cancel := context.WithTimeout(context.Background(), healFor)
		if heal != nil {
			err = errors.Join(err, heal(hctx))
		}
		cancel()
		ev.End = n.h.Since(time.Now())
		if err != nil {
			ev.Error = err.Error()
			n.cfg.Logger.Warn("fault went wrong", "seq", f.Seq, "err", err)
		}
		if n.waitHealthy(ctx) {
			ev.Recovered = n.h.Since(time.Now())
		}
		n.mu.Lock()
		n.events = append(n.events, ev)
		n.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(n.dilate(f.Gap)):
		}
	}
}

// waitHealthy waits, within RecoverTimeout, for the cluster to be healthy,
// restarting nodes that are down and noting when it does not recover.
func (n *Nemesis) waitHealthy(ctx context.Context) bool {
	return n.waitHealthySkipping(ctx, func(int) bool { return false })
}

// waitHealthySkipping is waitHealthy leaving alone the nodes skip names:
// those another fault holds down on purpose.
func (n *Nemesis) waitHealthySkipping(ctx context.Context, skip func(int) bool) bool {
	wctx, cancel := context.WithTimeout(ctx, n.cfg.RecoverTimeout)
	defer cancel()
	if err := n.recoverFn(wctx, skip); err != nil {
		if ctx.Err() == nil {
			n.warn("cluster did not recover within %v at %v", n.cfg.RecoverTimeout, n.h.Since(time.Now()).Round(time.Millisecond))
		}
		return false
	}
	return true
}

// recoverCluster restarts or thaws every node that is down, but those
// skip names, and waits until the cluster is healthy or ctx ends.
func (n *Nemesis) recoverCluster(ctx context.Context, skip func(int) bool) error {
	for i := range n.c.Size() {
		if n.c.State(i) != Running && !skip(i) {
			_ = n.c.Resume(i)
			if err := n.c.StartNode(ctx, i); err != nil {
				n.warn("restart %s before the next fault: %v", n.c.Node(i).Name, err)
			}
		}
	}
	if err := n.c.WaitHealthy(ctx); err != nil {
		return fmt.Errorf("chaos: recover: %w", err)
	}
	return nil
}

// warn records a liveness note for the report.
func (n *Nemesis) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	n.cfg.Logger.Warn(msg)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.warnings = append(n.warnings, msg)
}

// Events returns the faults injected so far, in the schedule's order.
func (n *Nemesis) Events() []FaultEvent {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := append([]FaultEvent(nil), n.events...)
	slices.SortStableFunc(out, func(a, b FaultEvent) int { return cmp.Compare(a.Fault.Seq, b.Fault.Seq) })
	return out
}

// Warnings returns the liveness notes: recoveries that took too long.
func (n *Nemesis) Warnings() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.warnings...)
}

// inject starts fault f and returns how to heal it.
func (n *Nemesis) inject(ctx context.Context, f Fault) (heal func(context.Context) error, err error) {
	c := n.c
	others := func() []int {
		var out []int
		for i := range c.Size() {
			if i != f.Node {
				out = append(out, i)
			}
		}
		return out
	}
	healLinks := func(nodes ...int) func(context.Context) error {
		return func(ctx context.Context) error {
			var errs []error
			for _, i := range nodes {
				errs = append(errs, c.Heal(ctx, i))
			}
			return errors.Join(errs...)
		}
	}
	// A node another fault holds frozen or down cannot take a control
	// call (overlap mode only: one fault at a time holds nothing else).
	// One that reached a frozen node late would be carried out when it
	// thaws, perhaps after its heal, so such nodes are left out: the
	// fault acts on the others.
	free := func(i int, call func() error) error {
		if n.isHeld(i) {
			return nil
		}
		return call()
	}
	cutBoth := func(cut func(context.Context, int, int) error, a, b int) error {
		return errors.Join(free(a, func() error { return cut(ctx, a, b) }), free(b, func() error { return cut(ctx, b, a) }))
	}
	switch f.Kind {
	case FaultKill:
		return func(ctx context.Context) error { return c.StartNode(ctx, f.Node) }, c.Kill(f.Node)
	case FaultRestart:
		return func(ctx context.Context) error { return c.StartNode(ctx, f.Node) }, c.Kill(f.Node)
	case FaultGraceful:
		sctx, cancel := context.WithTimeout(ctx, c.cfg.DrainTimeout+5*time.Second)
		defer cancel()
		return func(ctx context.Context) error { return c.StartNode(ctx, f.Node) }, c.Stop(sctx, f.Node)
	case FaultPause, FaultLongPause:
		return func(context.Context) error { return c.Resume(f.Node) }, c.Pause(f.Node)
	case FaultPartition:
		return healLinks(f.Node, f.Peer), cutBoth(c.Cut, f.Node, f.Peer)
	case FaultOneWay, FaultLongOneWay:
		return healLinks(f.Node), free(f.Node, func() error { return c.Cut(ctx, f.Node, f.Peer) })
	case FaultIsolate, FaultSplit:
		cut := c.Cut
		if f.Kind == FaultIsolate {
			cut = c.CutPeer
		}
		var errs []error
		for _, o := range others() {
			errs = append(errs, cutBoth(cut, f.Node, o))
		}
		return healLinks(append(others(), f.Node)...), errors.Join(errs...)
	case FaultDelay:
		var errs []error
		for _, o := range others() {
			errs = append(errs, free(f.Node, func() error { return c.SetDelay(ctx, f.Node, o, f.Delay) }))
		}
		return healLinks(f.Node), errors.Join(errs...)
	case FaultDrop:
		var errs []error
		for _, o := range others() {
			errs = append(errs, free(f.Node, func() error { return c.SetDropRate(ctx, f.Node, o, f.DropRate) }))
		}
		return healLinks(f.Node), errors.Join(errs...)
	case FaultClock:
		return func(ctx context.Context) error { return c.SetClock(ctx, f.Node, 0) }, free(f.Node, func() error { return c.SetClock(ctx, f.Node, f.Skew) })
	}
	return nil, fmt.Errorf("chaos: unknown fault kind %q", f.Kind)
}
