package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// FaultKind names a kind of fault the nemesis injects.
type FaultKind string

// The faults the nemesis draws from. Cuts act on peer traffic
// (replication and forwarding) through the node's fault-injecting caller
// and, except for isolate, on gossip through its fault-injecting gossip
// transport; delays and drops act on peer traffic only (see docs/CHAOS.md).
const (
	// FaultKill: kill -9 a node, keep it down for the fault's duration,
	// then start it again, empty, under the same name.
	FaultKill FaultKind = "kill"
	// FaultRestart: kill -9 a node and start it again at once, empty,
	// under the same name, before the failure detector notices.
	FaultRestart FaultKind = "restart"
	// FaultGraceful: SIGTERM a node, wait for it to leave and exit, then
	// start it again.
	FaultGraceful FaultKind = "graceful"
	// FaultPause: SIGSTOP a node for longer than the failure detector
	// takes to declare it dead, then SIGCONT.
	FaultPause FaultKind = "pause"
	// FaultPartition: cut peer traffic and gossip both ways between two
	// nodes.
	FaultPartition FaultKind = "partition"
	// FaultOneWay: one node's calls and gossip to another are lost; the
	// other way works.
	FaultOneWay FaultKind = "oneway"
	// FaultIsolate: cut peer traffic both ways between one node and all
	// the others, while gossip flows: the node stays a member.
	FaultIsolate FaultKind = "isolate"
	// FaultDelay: one node's calls to every other node wait first.
	FaultDelay FaultKind = "delay"
	// FaultDrop: one node's calls to every other node are lost with some
	// probability (the call times out).
	FaultDrop FaultKind = "drop"
	// FaultClock: one node's clock is shifted, for expiry.
	FaultClock FaultKind = "clock"
	// FaultSplit: cut peer traffic and gossip both ways between one node
	// and all the others, for longer than the failure detector takes: each
	// side declares the other dead and carries on without it (split brain).
	FaultSplit FaultKind = "split"
	// FaultLongOneWay: a one-way cut (as FaultOneWay) held longer than the
	// nodes' HandoffTimeout (10s by default). Drawn only in overlap mode.
	FaultLongOneWay FaultKind = "oneway-long"
	// FaultLongPause: SIGSTOP a node for longer than the failure detector
	// of tandem serve's default (LAN) profile takes, about 5s, then
	// SIGCONT. Drawn only in overlap mode.
	FaultLongPause FaultKind = "pause-long"
)

// AllFaults lists every fault kind, in a fixed order.
var AllFaults = []FaultKind{FaultKill, FaultRestart, FaultGraceful, FaultPause, FaultPartition, FaultOneWay, FaultIsolate, FaultDelay, FaultDrop, FaultClock, FaultSplit}

// OverlapFaults lists the kinds added to AllFaults in overlap mode
// (ScheduleConfig.Overlap > 0): faults long enough for another to start
// while they hold.
var OverlapFaults = []FaultKind{FaultLongOneWay, FaultLongPause}

// crashes reports whether the kind stops a node's process.
func (k FaultKind) crashes() bool {
	return k == FaultKill || k == FaultRestart || k == FaultGraceful || k == FaultPause || k == FaultLongPause
}

// ParseFaultKinds parses a comma-separated list of fault kinds (those of
// AllFaults and OverlapFaults); "all" or "" means AllFaults.
func ParseFaultKinds(s string) ([]FaultKind, error) {
	if s == "" || s == "all" {
		return slices.Clone(AllFaults), nil
	}
	var out []FaultKind
	for _, name := range strings.Split(s, ",") {
		k := FaultKind(strings.TrimSpace(name))
		if !slices.Contains(AllFaults, k) && !slices.Contains(OverlapFaults, k) {
			return nil, fmt.Errorf("unknown fault kind %q (want some of %v %v)", k, AllFaults, OverlapFaults)
		}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out, nil
}

// Fault is one fault of a schedule. Nodes are numbered from 0.
type Fault struct {
	// Seq numbers the fault in its schedule, from 0.
	Seq int `json:"seq"`
	// Kind says what the fault does.
	Kind FaultKind `json:"kind"`
	// Node is the node attacked.
	Node int `json:"node"`
	// Peer is the other end of a partition or one-way cut, else -1.
	Peer int `json:"peer"`
	// Duration is how long the fault holds before it is healed.
	Duration time.Duration `json:"duration"`
	// Delay is a delay fault's added latency.
	Delay time.Duration `json:"delay,omitempty"`
	// DropRate is a drop fault's probability of losing a call.
	DropRate float64 `json:"drop_rate,omitempty"`
	// Skew is a clock fault's offset.
	Skew time.Duration `json:"skew,omitempty"`
	// Gap is the quiet time after the fault is healed and the cluster has
	// recovered, before the next fault.
	Gap time.Duration `json:"gap"`
	// Overlap, drawn only in overlap mode, says the fault does not wait
	// for the cluster to be healthy: it starts Lag after the previous
	// fault began, while that one holds or recovers (its Gap then does not
	// apply).
	Overlap bool          `json:"overlap,omitempty"`
	Lag     time.Duration `json:"lag,omitempty"`
}

// String describes the fault in a few words.
func (f Fault) String() string {
	s := f.describe()
	if f.Overlap {
		s += fmt.Sprintf(" (overlapping, %v after the previous began)", f.Lag.Round(10*time.Millisecond))
	}
	return s
}

// describe is String without the overlap.
func (f Fault) describe() string {
	d := f.Duration.Round(10 * time.Millisecond)
	switch f.Kind {
	case FaultPartition:
		return fmt.Sprintf("partition n%d<->n%d for %v", f.Node+1, f.Peer+1, d)
	case FaultOneWay, FaultLongOneWay:
		return fmt.Sprintf("%s n%d-/->n%d for %v", f.Kind, f.Node+1, f.Peer+1, d)
	case FaultDelay:
		return fmt.Sprintf("delay n%d->* +%v for %v", f.Node+1, f.Delay, d)
	case FaultDrop:
		return fmt.Sprintf("drop n%d->* p=%.2f for %v", f.Node+1, f.DropRate, d)
	case FaultClock:
		return fmt.Sprintf("clock n%d %+v for %v", f.Node+1, f.Skew, d)
	case FaultRestart, FaultGraceful:
		return fmt.Sprintf("%s n%d", f.Kind, f.Node+1)
	}
	return fmt.Sprintf("%s n%d for %v", f.Kind, f.Node+1, d)
}

// ScheduleConfig bounds the faults a schedule draws.
type ScheduleConfig struct {
	// Nodes is the cluster size; faults name nodes 0..Nodes-1.
	Nodes int
	// Kinds are the fault kinds to draw from, equally likely (default
	// AllFaults).
	Kinds []FaultKind
	// MaxSkew bounds clock faults' offsets (default 2s).
	MaxSkew time.Duration
	// Overlap is the probability (0..1) that a fault overlaps the one
	// before it (Fault.Overlap). Zero draws exactly the schedule of
	// earlier versions: same seed, same faults.
	Overlap float64
}

// Schedule is an endless, reproducible sequence of faults: the same seed
// and config always give the same faults in the same order.
type Schedule struct {
	cfg  ScheduleConfig
	rng  *rand.Rand
	next int
	prev time.Duration // the previous fault's duration
}

// NewSchedule returns the schedule of seed.
func NewSchedule(seed int64, cfg ScheduleConfig) *Schedule {
	cfg.Overlap = min(max(cfg.Overlap, 0), 1)
	if len(cfg.Kinds) == 0 {
		cfg.Kinds = AllFaults
		if cfg.Overlap > 0 {
			cfg.Kinds = append(slices.Clone(AllFaults), OverlapFaults...)
		}
	}
	if cfg.MaxSkew == 0 {
		cfg.MaxSkew = 2 * time.Second
	}
	cfg.Nodes = max(cfg.Nodes, 1)
	return &Schedule{cfg: cfg, rng: rand.New(rand.NewPCG(uint64(seed), 0x6e656d65736973))}
}

// MaxSkew returns the largest clock offset the schedule can draw.
func (s *Schedule) MaxSkew() time.Duration { return s.cfg.MaxSkew }

// Next returns the schedule's next fault.
func (s *Schedule) Next() Fault {
	r := s.rng
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(r.Int64N(int64(hi-lo)+1)) }
	f := Fault{Seq: s.next, Kind: s.cfg.Kinds[r.IntN(len(s.cfg.Kinds))], Node: r.IntN(s.cfg.Nodes), Peer: -1}
	s.next++
	if s.cfg.Nodes > 1 {
		f.Peer = (f.Node + 1 + r.IntN(s.cfg.Nodes-1)) % s.cfg.Nodes
	}
	switch f.Kind {
	case FaultKill:
		f.Duration = between(time.Second, 3*time.Second)
	case FaultLongOneWay:
		// Longer than the nodes' HandoffTimeout (10s by default).
		f.Duration = between(10500*time.Millisecond, 14*time.Second)
	case FaultLongPause:
		// Longer than the failure detector of the default LAN profile
		// (about 5s), so the others declare the node dead and re-protect
		// its partitions while it is frozen.
		f.Duration = between(6500*time.Millisecond, 9*time.Second)
	case FaultPause, FaultSplit:
		// The failure detector declares a silent node dead within about
		// 2.4s at most (memberlist's suspicion bound with Tandem's 200ms
		// probes), so every pause and split outlasts it.
		f.Duration = between(2500*time.Millisecond, 3500*time.Millisecond)
	case FaultRestart, FaultGraceful:
		f.Duration = 0
	case FaultDelay:
		f.Duration = between(500*time.Millisecond, 2*time.Second)
		f.Delay = between(20*time.Millisecond, 400*time.Millisecond).Round(time.Millisecond)
	case FaultDrop:
		f.Duration = between(500*time.Millisecond, 2*time.Second)
		f.DropRate = float64(5+r.IntN(46)) / 100
	case FaultClock:
		f.Duration = between(time.Second, 3*time.Second)
		f.Skew = between(s.cfg.MaxSkew/4, s.cfg.MaxSkew).Round(time.Millisecond)
		if r.IntN(2) == 0 {
			f.Skew = -f.Skew
		}
	default: // cuts
		f.Duration = between(500*time.Millisecond, 2500*time.Millisecond)
	}
	if f.Kind != FaultPartition && f.Kind != FaultOneWay && f.Kind != FaultLongOneWay {
		f.Peer = -1
	}
	f.Gap = between(100*time.Millisecond, 500*time.Millisecond)
	// Drawn only in overlap mode, after everything else, so that a zero
	// Overlap draws the schedules of before.
	if s.cfg.Overlap > 0 && f.Seq > 0 && r.Float64() < s.cfg.Overlap {
		// While the previous fault holds, or up to 3s after it is healed:
		// during its recovery (re-protection, hand-offs).
		f.Overlap = true
		f.Lag = between(0, s.prev+3*time.Second)
	}
	s.prev = f.Duration
	return f
}

// Take returns the schedule's next n faults.
func (s *Schedule) Take(n int) []Fault {
	out := make([]Fault, n)
	for i := range out {
		out[i] = s.Next()
	}
	return out
}
