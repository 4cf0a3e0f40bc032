package cluster

import (
	"errors"
	"testing"
)

// Profiles by name, and what Apply sets.
func TestProfiles(t *testing.T) {
	for _, name := range []string{"lan", "local"} {
		p, err := ProfileNamed(name)
		if err != nil || p.Name != name {
			t.Fatalf("%s: %+v %v", name, p, err)
		}
		var c Config
		p.Apply(&c)
		if c.ProbeInterval != p.ProbeInterval || c.ProbeTimeout != p.ProbeTimeout || c.SuspicionMult != p.SuspicionMult || c.GossipInterval != p.GossipInterval {
			t.Fatalf("%s: Apply set %+v", name, c)
		}
		if p.ProbeTimeout >= p.ProbeInterval {
			t.Fatalf("%s: probe timeout %v not under the interval %v", name, p.ProbeTimeout, p.ProbeInterval)
		}
	}
	if lan := LANProfile(); lan.ProbeTimeout < LocalProfile().ProbeTimeout*5 || DefaultConfig("x").ProbeTimeout != lan.ProbeTimeout {
		t.Fatal("the default is not the LAN profile")
	}
	if _, err := ProfileNamed("wan"); !errors.Is(err, errConfig) {
		t.Fatalf("unknown profile: %v", err)
	}
}
