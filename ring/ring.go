// Package ring decides who owns what. It maps a session id to a partition
// and every partition to an ordered pair of owners, [primary, buddy], for a
// given set of members.
//
// The package is pure: no I/O, no clocks, no goroutines. Every node that
// builds a Table from the same member set and the same Config gets the same
// table, whatever order the members arrived in, because the table depends only
// on the member names.
//
// Primaries are placed as buraksezer/consistent places them (consistent
// hashing with bounded loads, xxhash). The buddy of a partition is the member
// that would be its primary if its primary were gone: the primary of the same
// partition in the table built without that member. So when a primary fails,
// the new table names its buddy as the new primary, and promotion needs no
// copying. circle.go replays consistent's placement, with each member left
// out in turn, on one sorted circle, so a ring of N members costs one sort
// rather than N+1 of consistent's builds; its tests hold it to consistent's
// results.
package ring

import (
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// Defaults for Config. 271 is prime, so session hashes spread evenly over
// partitions.
const (
	DefaultPartitions   = 271
	DefaultVirtualNodes = 128
	DefaultLoad         = 1.5
)

// ErrNoMembers is returned when a table is built over an empty member set.
var ErrNoMembers = errors.New("ring: no members")

// ErrInvalidConfig is wrapped by every error Config.Validate returns.
var ErrInvalidConfig = errors.New("ring: invalid config")

// Config holds the ring settings. Every node of a cluster must use the same
// settings, or they would compute different tables; the cluster package
// refuses members whose settings differ.
type Config struct {
	// Partitions is the number of partitions sessions are hashed into. It must
	// be prime, so that hashes spread evenly, and it bounds how finely load
	// can be spread: with N members each owns about Partitions/N.
	Partitions int

	// VirtualNodes is how many points each member has on the hash circle
	// (consistent's ReplicationFactor). More points spread partitions more
	// evenly, so the load bound binds less often and fewer partitions move
	// when membership changes.
	VirtualNodes int

	// Load is the bounded-load factor: no member owns more than
	// ceil(Partitions/N × Load) partitions as primary. It must be at least 1;
	// with Load ≥ 1 the members' total capacity, N × ceil(Partitions/N × Load),
	// is at least Partitions, so placement can never run out of room.
	Load float64
}

// DefaultConfig returns the settings Tandem uses unless told otherwise.
func DefaultConfig() Config {
	return Config{Partitions: DefaultPartitions, VirtualNodes: DefaultVirtualNodes, Load: DefaultLoad}
}

// Validate reports whether the settings can place partitions for any
// non-empty member set.
func (c Config) Validate() error {
	switch {
	case c.Partitions < 2 || !big.NewInt(int64(c.Partitions)).ProbablyPrime(0):
		return fmt.Errorf("%w: partitions must be a prime ≥ 2, got %d", ErrInvalidConfig, c.Partitions)
	case c.VirtualNodes < 1:
		return fmt.Errorf("%w: virtual nodes must be ≥ 1, got %d", ErrInvalidConfig, c.VirtualNodes)
	case !(c.Load >= 1):
		return fmt.Errorf("%w: load must be ≥ 1, got %v", ErrInvalidConfig, c.Load)
	}
	return nil
}

// String renders the settings compactly; nodes compare it to spot a peer
// configured differently.
func (c Config) String() string {
	return fmt.Sprintf("partitions=%d vnodes=%d load=%g", c.Partitions, c.VirtualNodes, c.Load)
}

// Member is one node as the ring sees it. Only Name decides placement; the
// addresses ride along so that callers can reach an owner, and the
// incarnation tells a restarted node from the process it replaced.
type Member struct {
	// Name identifies the node; it must be unique in the cluster and stable
	// across restarts, so a returning node gets its partitions back.
	Name string
	// Incarnation names one run of the node (its boot id): a node
	// restarted under its name is a new incarnation that remembers
	// nothing. It does not move placement, but it is part of the
	// fingerprint, so a ring whose member restarted is a different ring,
	// and the engine sees the restart as a departure and an appearance.
	Incarnation string
	// Peer is the address of the node's replication and forwarding listener.
	Peer string
	// HTTP is the address of the node's HTTP API, if it has one.
	HTTP string
	// Witness marks a member that holds no sessions: it owns no
	// partition, but counts toward the quorum and grants leases, so that
	// two nodes and a witness survive the loss of either node.
	Witness bool
}

// String returns the member's name; consistent places members by it.
func (m Member) String() string { return m.Name }

// Owners is the ordered pair of nodes responsible for a partition.
type Owners struct {
	// Primary serves the partition's reads and orders its writes.
	Primary string
	// Buddy holds a synchronous copy of every acknowledged write. It is
	// empty when the table has a single member.
	Buddy string
}

// Table is an immutable ownership table: partitions to owners, for one
// member set, named by an epoch.
type Table struct {
	epoch   uint64
	config  Config
	members []Member // sorted by name
	owners  []Owners // indexed by partition
	finger  uint64   // Fingerprint, computed once: nodes check it per request
}

// New builds the table for members under cfg, named by epoch. The order of
// members does not matter. Names must be unique and non-empty.
func New(cfg Config, epoch uint64, members []Member) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(members) == 0 {
		return nil, ErrNoMembers
	}
	sorted := slices.Clone(members)
	slices.SortFunc(sorted, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	for i, m := range sorted {
		if m.Name == "" {
			return nil, fmt.Errorf("ring: member with empty name")
		}
		if i > 0 && sorted[i-1].Name == m.Name {
			return nil, fmt.Errorf("ring: duplicate member %q", m.Name)
		}
	}

	// Primaries are consistent's bounded-load placement of the members
	// that hold sessions (witnesses do not); the buddy of a partition is
	// its primary in the placement without that primary. The circle
	// replays both without rebuilding consistent's circle per member
	// (circle.go; TestCircleMatchesConsistent holds it to consistent's
	// results).
	holders := slices.DeleteFunc(slices.Clone(sorted), func(m Member) bool { return m.Witness })
	if len(holders) == 0 {
		return nil, fmt.Errorf("%w: only witnesses, none to hold sessions", ErrNoMembers)
	}
	circ := newCircle(cfg, holders)
	owners := make([]Owners, cfg.Partitions)
	for p, mi := range circ.place(-1) {
		owners[p].Primary = holders[mi].Name
	}
	if len(holders) > 1 {
		for mi, m := range holders {
			without := circ.place(mi)
			for p := range owners {
				if owners[p].Primary == m.Name {
					owners[p].Buddy = holders[without[p]].Name
				}
			}
		}
	}
	return &Table{epoch: epoch, config: cfg, members: sorted, owners: owners, finger: fingerprint(cfg, sorted)}, nil
}

// PartitionOf maps a session id to its partition. It depends only on the
// partition count, so it never changes while a cluster runs.
func PartitionOf(cfg Config, id string) int {
	return int(xxhash.Sum64String(id) % uint64(cfg.Partitions))
}

// Epoch names this table. The membership layer increases it with every
// membership change it observes.
func (t *Table) Epoch() uint64 { return t.epoch }

// Config returns the settings the table was built with.
func (t *Table) Config() Config { return t.config }

// Partitions returns the number of partitions.
func (t *Table) Partitions() int { return t.config.Partitions }

// Partition maps a session id to its partition.
func (t *Table) Partition(id string) int { return PartitionOf(t.config, id) }

// Owners returns the owners of partition p.
func (t *Table) Owners(p int) Owners { return t.owners[p] }

// OwnersOf returns the owners of the partition holding session id.
func (t *Table) OwnersOf(id string) Owners { return t.owners[t.Partition(id)] }

// Members returns the members sorted by name. The slice must not be changed.
func (t *Table) Members() []Member { return t.members }

// Member returns the member called name.
func (t *Table) Member(name string) (Member, bool) {
	i, ok := slices.BinarySearchFunc(t.members, name, func(m Member, n string) int { return strings.Compare(m.Name, n) })
	if !ok {
		return Member{}, false
	}
	return t.members[i], true
}

// Has reports whether name is a member.
func (t *Table) Has(name string) bool {
	_, ok := t.Member(name)
	return ok
}

// Holds reports whether m is a member as the same incarnation: a member
// restarted under m's name is not m.
func (t *Table) Holds(m Member) bool {
	got, ok := t.Member(m.Name)
	return ok && got.Incarnation == m.Incarnation
}

// Load counts the partitions each member holds as primary and as buddy.
func (t *Table) Load() map[string]MemberLoad {
	out := make(map[string]MemberLoad, len(t.members))
	for _, o := range t.owners {
		l := out[o.Primary]
		l.Primary++
		out[o.Primary] = l
		if o.Buddy != "" {
			l := out[o.Buddy]
			l.Buddy++
			out[o.Buddy] = l
		}
	}
	return out
}

// MemberLoad is how many partitions one member holds in each role.
type MemberLoad struct {
	Primary int `json:"primary"`
	Buddy   int `json:"buddy"`
}

// Fingerprint identifies the member set, their incarnations and the
// settings: two tables with equal fingerprints assign every partition
// identically to the same runs of the same nodes.
func (t *Table) Fingerprint() uint64 { return t.finger }

// fingerprint hashes the settings and the sorted member names with their
// incarnations.
func fingerprint(cfg Config, members []Member) uint64 {
	d := xxhash.New()
	_, _ = d.WriteString(cfg.String())
	for _, m := range members {
		_, _ = d.WriteString("\x00" + m.Name)
		if m.Incarnation != "" {
			_, _ = d.WriteString("\x00@" + m.Incarnation)
		}
		if m.Witness {
			_, _ = d.WriteString("\x00witness")
		}
	}
	return d.Sum64()
}
