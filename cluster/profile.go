package cluster

import (
	"fmt"
	"time"
)

// Profile is the failure detector's timing for one kind of network: how
// often a node probes another, how long it waits for the answer, how long
// a suspected node has to refute the suspicion, and how often gossip goes
// out. Fast timing notices a crash sooner and, on a real network, declares
// live nodes dead when a GC pause, a throttled container or a busy switch
// delays an answer; Tandem's failover does not rest on it (a refused
// connection on the peer wire moves a dead node's sessions at once; see
// docs/ARCHITECTURE.md, "Failure detection").
type Profile struct {
	// Name is "lan" or "local".
	Name string
	// ProbeInterval, ProbeTimeout, SuspicionMult and GossipInterval are
	// the Config fields of the same names.
	ProbeInterval, ProbeTimeout time.Duration
	SuspicionMult               int
	GossipInterval              time.Duration
}

// LANProfile is memberlist's LAN timing: a probe every second, half a
// second for its answer, suspicion multiplier 4. A crashed node is
// declared dead in about five seconds; a node that stalls for a few
// hundred milliseconds is not. It is the default.
func LANProfile() Profile {
	return Profile{Name: "lan", ProbeInterval: time.Second, ProbeTimeout: 500 * time.Millisecond, SuspicionMult: 4, GossipInterval: 200 * time.Millisecond}
}

// LocalProfile is timing for one machine's loopback (tests, `tandem dev`):
// a probe every 200ms, 100ms for its answer, suspicion multiplier 2; a
// crashed node is declared dead in under a second.
func LocalProfile() Profile {
	return Profile{Name: "local", ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond, SuspicionMult: 2, GossipInterval: 50 * time.Millisecond}
}

// ProfileNamed returns the profile called name: "lan" or "local".
func ProfileNamed(name string) (Profile, error) {
	switch name {
	case "lan":
		return LANProfile(), nil
	case "local":
		return LocalProfile(), nil
	}
	return Profile{}, fmt.Errorf("%w: unknown failure-detector profile %q (want lan or local)", errConfig, name)
}

// Apply sets c's failure-detector timing to p's.
func (p Profile) Apply(c *Config) {
	c.ProbeInterval, c.ProbeTimeout, c.SuspicionMult, c.GossipInterval = p.ProbeInterval, p.ProbeTimeout, p.SuspicionMult, p.GossipInterval
}
