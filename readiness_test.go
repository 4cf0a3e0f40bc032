package tandem

import (
	"context"
	"testing"
	"time"

	"github.com/tandem-io/tandem/replica"
	"github.com/tandem-io/tandem/replica/peer"
)

// The first reason that holds is the one given, in the order a node meets
// them: closing, no ring, too small a ring, disagreement, hand-offs.
func TestReadinessGivesTheFirstReasonThatHolds(t *testing.T) {
	ready := replica.Readiness{HasRing: true, Members: 3, MinMembers: 2}
	for _, tc := range []struct {
		name                    string
		closed, agreed, witness bool
		engine                  replica.Readiness
		want                    string
	}{
		{"ready", false, true, false, ready, ""},
		{"closing", true, true, false, ready, NotReadyDraining},
		{"closing before a ring", true, false, false, replica.Readiness{MinMembers: 1}, NotReadyDraining},
		{"no ring", false, false, false, replica.Readiness{MinMembers: 1}, NotReadyJoining},
		{"ring too small", false, true, false, replica.Readiness{HasRing: true, Members: 1, MinMembers: 2}, NotReadyTooFewMembers},
		{"ring too small, not agreed", false, false, false, replica.Readiness{HasRing: true, Members: 1, MinMembers: 2, Handoffs: 3}, NotReadyTooFewMembers},
		{"not agreed", false, false, false, ready, NotReadyJoining},
		{"not agreed, hand-offs", false, false, false, replica.Readiness{HasRing: true, Members: 3, MinMembers: 1, Handoffs: 4}, NotReadyJoining},
		{"hand-offs", false, true, false, replica.Readiness{HasRing: true, Members: 3, MinMembers: 1, Handoffs: 4}, NotReadyCatchingUp},
		{"a witness", false, true, true, ready, NotReadyWitness},
		{"a witness, closing", true, true, true, ready, NotReadyDraining},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := readinessOf(tc.closed, tc.agreed, tc.witness, tc.engine)
			if got.Reason != tc.want || got.Ready != (tc.want == "") || got.Ready != (tc.engine.Ready() && !tc.closed && tc.agreed && !tc.witness) {
				t.Fatalf("readiness %+v, want reason %q", got, tc.want)
			}
			if got.Members != tc.engine.Members || got.MinMembers != tc.engine.MinMembers || got.Handoffs != tc.engine.Handoffs {
				t.Fatalf("readiness %+v does not carry the engine's figures %+v", got, tc.engine)
			}
			if (got.Detail == "") != got.Ready {
				t.Fatalf("readiness %+v: a detail exactly when not ready", got)
			}
		})
	}
}

// blockPulls holds every hand-off pull until release is closed.
type blockPulls struct {
	inner   peer.Caller
	release chan struct{}
}

func (b blockPulls) Call(ctx context.Context, addr, method string, args, reply any) error {
	if method == "pull" {
		select {
		case <-b.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return b.inner.Call(ctx, addr, method, args, reply)
}

// A real node goes through the reasons: alone below MinMembers, catching
// up while its hand-off is held, ready, then draining once closed.
func TestReadinessOfARealNode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := func(name string, join []string, tune func(*Config)) *Node {
		cfg := LocalConfig(name)
		cfg.GossipAddr, cfg.PeerAddr, cfg.Join = "127.0.0.1:0", "127.0.0.1:0", join
		cfg.Replica.MinMembers = 2
		if tune != nil {
			tune(&cfg)
		}
		n, err := Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Kill)
		return n
	}
	waitFor := func(n *Node, reason string) Readiness {
		t.Helper()
		for {
			r := n.Readiness()
			if r.Reason == reason && r.Ready == (reason == "") {
				return r
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: readiness %+v, want reason %q", n.Name(), r, reason)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}

	a := start("ready-a", nil, nil)
	if r := waitFor(a, NotReadyTooFewMembers); r.Members != 1 || r.MinMembers != 2 {
		t.Fatalf("alone: %+v", r)
	}
	release := make(chan struct{})
	b := start("ready-b", []string{a.GossipAddr()}, func(cfg *Config) {
		cfg.Caller = func(c peer.Caller) peer.Caller { return blockPulls{inner: c, release: release} }
	})
	if r := waitFor(b, NotReadyCatchingUp); r.Handoffs == 0 || r.Members != 2 {
		t.Fatalf("held hand-off: %+v", r)
	}
	if b.Ready() {
		t.Fatal("Ready while catching up")
	}
	close(release)
	waitFor(b, "")
	waitFor(a, "")
	closed := make(chan error, 1)
	go func() { closed <- b.Close(ctx) }()
	waitFor(b, NotReadyDraining)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if r := b.Readiness(); r.Reason != NotReadyDraining {
		t.Fatalf("closed: %+v", r)
	}
}
