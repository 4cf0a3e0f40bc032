package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/cluster"
)

// detectorFlags set the failure detector's timing: a profile, and each
// value on its own.
type detectorFlags struct {
	profile                     string
	probeInterval, probeTimeout time.Duration
	suspicionMult               int
}

// register adds the failure-detector flags to fs.
func (f *detectorFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.profile, "profile", "lan", "failure-detector timing: lan (safe on a real network; a crash is declared in about 5s, writes fail over on a refused connection at once) or local (one machine's loopback)")
	fs.DurationVar(&f.probeInterval, "probe-interval", 0, "how often a node probes another (default: the profile's, 1s for lan)")
	fs.DurationVar(&f.probeTimeout, "probe-timeout", 0, "how long a probe waits for its answer (default: the profile's, 500ms for lan)")
	fs.IntVar(&f.suspicionMult, "suspicion-mult", 0, "how many probe intervals a suspected node has to refute it, scaled by the cluster size's log (default: the profile's, 4 for lan)")
}

// apply sets cfg's failure-detector timing.
func (f *detectorFlags) apply(cfg *tandem.Config) error {
	p, err := cluster.ProfileNamed(f.profile)
	if err != nil {
		return usageError{fmt.Errorf("-profile: %w", err)}
	}
	p.Apply(&cfg.Cluster)
	if f.probeInterval < 0 || f.probeTimeout < 0 || f.suspicionMult < 0 {
		return usageError{fmt.Errorf("-probe-interval, -probe-timeout and -suspicion-mult must not be negative")}
	}
	if f.probeInterval > 0 {
		cfg.Cluster.ProbeInterval = f.probeInterval
	}
	if f.probeTimeout > 0 {
		cfg.Cluster.ProbeTimeout = f.probeTimeout
	}
	if f.suspicionMult > 0 {
		cfg.Cluster.SuspicionMult = f.suspicionMult
	}
	if cfg.Cluster.ProbeTimeout >= cfg.Cluster.ProbeInterval {
		return usageError{fmt.Errorf("-probe-timeout %v must be shorter than -probe-interval %v", cfg.Cluster.ProbeTimeout, cfg.Cluster.ProbeInterval)}
	}
	return nil
}
