package ring

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/cespare/xxhash/v2"
)

// The buddy of a partition is its primary in the table built without that
// primary. Building that table once per member costs a ring of N members
// N+1 consistent-hash placements, each sorting N×VirtualNodes points: at
// a hundred members, a quarter of a second per membership change.
//
// circle computes the same placements without rebuilding anything: it
// lays the members' virtual nodes on one sorted circle, as
// buraksezer/consistent does, and replays consistent's bounded-load
// placement with one member left out, by skipping its points. Walking the
// circle from a partition's key and skipping the absent member's points
// meets the same points, in the same order, as walking the circle built
// without it; the load bound is the one consistent computes for the
// smaller member set. TestCircleMatchesConsistent checks the two agree on
// random member sets.

// circle is the members' virtual nodes, sorted by hash.
type circle struct {
	points  []point
	members int
	cfg     Config
	keys    []int // per partition: the index of the first point at or after its key
}

// point is one virtual node: its hash and its member's index.
type point struct {
	hash   uint64
	member int
}

// newCircle lays out the virtual nodes of members (sorted by name), as
// consistent.New does: key "i:name", hashed with xxhash; where two keys
// collide, the later member owns the point.
func newCircle(cfg Config, members []Member) *circle {
	owner := make(map[uint64]int, len(members)*cfg.VirtualNodes)
	hashes := make([]uint64, 0, len(members)*cfg.VirtualNodes)
	for mi, m := range members {
		for i := range cfg.VirtualNodes {
			h := xxhash.Sum64([]byte(fmt.Sprintf("%d:%s", i, m.Name)))
			owner[h] = mi
			hashes = append(hashes, h)
		}
	}
	slices.Sort(hashes)
	c := &circle{points: make([]point, len(hashes)), members: len(members), cfg: cfg, keys: make([]int, cfg.Partitions)}
	for i, h := range hashes {
		c.points[i] = point{hash: h, member: owner[h]}
	}
	var bs [8]byte
	for p := range c.keys {
		binary.LittleEndian.PutUint64(bs[:], uint64(p))
		key := xxhash.Sum64(bs[:])
		idx := sort.Search(len(c.points), func(i int) bool { return c.points[i].hash >= key })
		if idx >= len(c.points) {
			idx = 0
		}
		c.keys[p] = idx
	}
	return c
}

// place returns each partition's owner (a member index) under
// consistent's bounded-load placement, with member without (an index, or
// -1 for none) left out.
func (c *circle) place(without int) []int {
	n := c.members
	if without >= 0 {
		n--
	}
	bound := math.Ceil(float64(c.cfg.Partitions) / float64(n) * c.cfg.Load)
	loads := make([]float64, c.members)
	out := make([]int, c.cfg.Partitions)
	for p := range out {
		idx := c.keys[p]
		for range len(c.points) {
			m := c.points[idx].member
			if m != without && loads[m]+1 <= bound {
				out[p] = m
				loads[m]++
				break
			}
			idx++
			if idx == len(c.points) {
				idx = 0
			}
		}
	}
	return out
}
