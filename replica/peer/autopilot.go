package peer

import (
	"runtime"
	"sync"
	"time"
)

// Autopilot moves a ManualClock on by itself, in the manner of a
// discrete-event simulation: whenever the nodes on a Network have stopped
// talking (no call started or ended for a moment of real time), it
// advances the clock to the next pending timer (MaxStep when none is).
// Tests of code that waits out leases, fences and time-outs on the clock
// then run as fast as the nodes compute, instead of in real time, and a
// test never advances the clock by hand past a step the nodes must see.
//
// A call that is computing, not waiting, holds the clock longer (until the
// network has been quiet for Busy) and moves it at most MaxStep at a time,
// so that time-outs on the clock measure waiting, not the speed of the
// machine the test runs on.
type Autopilot struct {
	cfg     AutopilotConfig
	clock   *ManualClock
	network *Network
	stop    chan struct{}
	done    sync.WaitGroup
}

// AutopilotConfig tunes an Autopilot. The zero value is ready to use.
type AutopilotConfig struct {
	// MaxStep bounds one advance while calls are under way, and is the
	// advance when no timer is pending; zero means 10ms.
	MaxStep time.Duration
	// Idle is how long the network must be quiet, with no call under way,
	// before the clock moves; zero means 100µs.
	Idle time.Duration
	// Busy is how long it must be quiet while calls are under way (waiting
	// on the clock, or computing); zero means 1ms.
	Busy time.Duration
}

// StartAutopilot starts moving clock on whenever network is quiet, until
// Stop.
func StartAutopilot(clock *ManualClock, network *Network, cfg AutopilotConfig) *Autopilot {
	if cfg.MaxStep <= 0 {
		cfg.MaxStep = 10 * time.Millisecond
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 100 * time.Microsecond
	}
	if cfg.Busy <= 0 {
		cfg.Busy = time.Millisecond
	}
	p := &Autopilot{cfg: cfg, clock: clock, network: network, stop: make(chan struct{})}
	p.done.Add(1)
	go p.run()
	return p
}

// Stop stops the autopilot and waits until it has. The clock stays where
// it is.
func (p *Autopilot) Stop() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.done.Wait()
}

// run advances the clock each time the network is quiet.
func (p *Autopilot) run() {
	defer p.done.Done()
	for {
		seen, busy, ok := p.quiet()
		if !ok {
			return
		}
		p.network.whileQuiet(seen, func() {
			next, pending := p.clock.Next()
			switch step := max(next.Sub(p.clock.Now()), 0); {
			case !pending || (busy && step > p.cfg.MaxStep):
				p.clock.Advance(p.cfg.MaxStep)
			default:
				p.clock.Advance(step)
			}
		})
	}
}

// quiet waits until no call has started or ended on the network for Idle
// (Busy while calls are under way), and returns the activity counter it
// saw and whether calls are under way. It returns ok false once Stop is
// called.
func (p *Autopilot) quiet() (seen uint64, busy, ok bool) {
	for {
		seen, inFlight := p.network.Activity()
		wait := p.cfg.Idle
		if inFlight > 0 {
			wait = p.cfg.Busy
		}
		runtime.Gosched()
		t := time.NewTimer(wait)
		select {
		case <-p.stop:
			t.Stop()
			return 0, false, false
		case <-t.C:
		}
		if now, _ := p.network.Activity(); now == seen {
			return seen, inFlight > 0, true
		}
	}
}
