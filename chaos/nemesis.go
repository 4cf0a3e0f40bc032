package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// Logger receives a line per fault (default: discard).
	Logger *slog.Logger
}

// Nemesis injects a schedule's faults into a cluster, one at a time.
type Nemesis struct {
	c     *Cluster
	sched *Schedule
	h     *History
	cfg   NemesisConfig

	mu       sync.Mutex
	events   []FaultEvent
	warnings []string
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
	return &Nemesis{c: c, sched: sched, h: h, cfg: cfg}
}

// Run injects faults until ctx ends or MaxFaults have been injected. Each
// fault waits for a healthy cluster, holds for its duration, and is healed
// before Run moves on or returns, even when ctx ends during it.
func (n *Nemesis) Run(ctx context.Context) {
	for count := 0; n.cfg.MaxFaults == 0 || count < n.cfg.MaxFaults; count++ {
		if !n.waitHealthy(ctx) || ctx.Err() != nil {
			return
		}
		f := n.sched.Next()
		ev := FaultEvent{Fault: f, Start: n.h.Since(time.Now())}
		n.cfg.Logger.Info("fault", "seq", f.Seq, "fault", f.String())
		// Injecting uses its own bounded context, so a fault begun just
		// before the end of the attack is carried out whole, then healed.
		ictx, icancel := context.WithTimeout(context.Background(), n.c.cfg.DrainTimeout+n.c.cfg.StartTimeout)
		heal, err := n.inject(ictx, f)
		icancel()
		if err == nil {
			select {
			case <-ctx.Done():
			case <-time.After(f.Duration):
			}
		}
		// Heal with a fresh context: a fault must never outlive the run. When
		// the run is being interrupted, healing is brief: the cluster is
		// about to be killed anyway.
		healFor := n.c.cfg.DrainTimeout + n.c.cfg.StartTimeout
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
		case <-time.After(f.Gap):
		}
	}
}

// waitHealthy waits, within RecoverTimeout, for the cluster to be healthy,
// restarting nodes that are down and noting when it does not recover.
func (n *Nemesis) waitHealthy(ctx context.Context) bool {
	wctx, cancel := context.WithTimeout(ctx, n.cfg.RecoverTimeout)
	defer cancel()
	for i := range n.c.Size() {
		if n.c.State(i) != Running {
			_ = n.c.Resume(i)
			if err := n.c.StartNode(wctx, i); err != nil {
				n.warn("restart %s before the next fault: %v", n.c.Node(i).Name, err)
			}
		}
	}
	if err := n.c.WaitHealthy(wctx); err != nil {
		if ctx.Err() == nil {
			n.warn("cluster did not recover within %v at %v", n.cfg.RecoverTimeout, n.h.Since(time.Now()).Round(time.Millisecond))
		}
		return false
	}
	return true
}

// warn records a liveness note for the report.
func (n *Nemesis) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	n.cfg.Logger.Warn(msg)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.warnings = append(n.warnings, msg)
}

// Events returns the faults injected so far.
func (n *Nemesis) Events() []FaultEvent {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]FaultEvent(nil), n.events...)
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
	switch f.Kind {
	case FaultKill:
		return func(ctx context.Context) error { return c.StartNode(ctx, f.Node) }, c.Kill(f.Node)
	case FaultRestart:
		return func(ctx context.Context) error { return c.StartNode(ctx, f.Node) }, c.Kill(f.Node)
	case FaultGraceful:
		sctx, cancel := context.WithTimeout(ctx, c.cfg.DrainTimeout+5*time.Second)
		defer cancel()
		return func(ctx context.Context) error { return c.StartNode(ctx, f.Node) }, c.Stop(sctx, f.Node)
	case FaultPause:
		return func(context.Context) error { return c.Resume(f.Node) }, c.Pause(f.Node)
	case FaultPartition:
		heal = healLinks(f.Node, f.Peer)
		return heal, errors.Join(c.Cut(ctx, f.Node, f.Peer), c.Cut(ctx, f.Peer, f.Node))
	case FaultOneWay:
		return healLinks(f.Node), c.Cut(ctx, f.Node, f.Peer)
	case FaultIsolate, FaultSplit:
		cut := c.Cut
		if f.Kind == FaultIsolate {
			cut = c.CutPeer
		}
		var errs []error
		for _, o := range others() {
			errs = append(errs, cut(ctx, f.Node, o), cut(ctx, o, f.Node))
		}
		return healLinks(append(others(), f.Node)...), errors.Join(errs...)
	case FaultDelay:
		var errs []error
		for _, o := range others() {
			errs = append(errs, c.SetDelay(ctx, f.Node, o, f.Delay))
		}
		return healLinks(f.Node), errors.Join(errs...)
	case FaultDrop:
		var errs []error
		for _, o := range others() {
			errs = append(errs, c.SetDropRate(ctx, f.Node, o, f.DropRate))
		}
		return healLinks(f.Node), errors.Join(errs...)
	case FaultClock:
		return func(ctx context.Context) error { return c.SetClock(ctx, f.Node, 0) }, c.SetClock(ctx, f.Node, f.Skew)
	}
	return nil, fmt.Errorf("chaos: unknown fault kind %q", f.Kind)
}
