package ring

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
)

// newConsistent places members, sorted and validated, on
// buraksezer/consistent's circle with bounded loads: the placement the
// circle replays, and the reference its tests compare it with.
func newConsistent(cfg Config, members []Member) *consistent.Consistent {
	cm := make([]consistent.Member, len(members))
	for i, m := range members {
		cm[i] = m
	}
	return consistent.New(cm, consistent.Config{
		Hasher:            hasher{},
		PartitionCount:    cfg.Partitions,
		ReplicationFactor: cfg.VirtualNodes,
		Load:              cfg.Load,
	})
}

// hasher adapts xxhash to consistent.Hasher.
type hasher struct{}

// Sum64 hashes b with xxhash.
func (hasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

// The circle's placements are consistent's: with every member, and with
// each member left out, for random member sets and settings. The second is
// what New used to compute by removing each member from consistent's
// circle and adding it back.
func TestCircleMatchesConsistent(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for trial := range 40 {
		cfg := DefaultConfig()
		if trial%4 == 1 {
			cfg = Config{Partitions: 7, VirtualNodes: 3, Load: 1.25}
		}
		members := randomMembers(rng, 2+rng.IntN(40))
		slices.SortFunc(members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
		circ := newCircle(cfg, members)
		c := newConsistent(cfg, members)
		all := circ.place(-1)
		for p := range cfg.Partitions {
			if got, want := members[all[p]].Name, c.GetPartitionOwner(p).String(); got != want {
				t.Fatalf("trial %d, %d members, partition %d: circle %s, consistent %s", trial, len(members), p, got, want)
			}
		}
		for mi, m := range members {
			without := circ.place(mi)
			c.Remove(m.Name)
			for p := range cfg.Partitions {
				if got, want := members[without[p]].Name, c.GetPartitionOwner(p).String(); got != want {
					t.Fatalf("trial %d, without %s, partition %d: circle %s, consistent %s", trial, m.Name, p, got, want)
				}
			}
			c.Add(m)
		}
	}
}

// BenchmarkCircle measures one placement with a member left out: what a
// ring computes once per member for its buddies.
func BenchmarkCircle(b *testing.B) {
	for _, n := range []int{3, 100} {
		members := randomMembers(rand.New(rand.NewPCG(3, uint64(n))), n)
		slices.SortFunc(members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
		circ := newCircle(DefaultConfig(), members)
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			for b.Loop() {
				_ = circ.place(0)
			}
		})
	}
}
