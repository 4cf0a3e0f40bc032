package cluster

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"
)

// delegate implements memberlist's Delegate, EventDelegate, AliveDelegate
// and MergeDelegate for one Cluster. memberlist calls the event and alive
// methods with its node lock held: none of them calls back into memberlist.
type delegate struct {
	name    string
	ring    string // our ring.Config.String()
	tracker *tracker
	meta    atomic.Pointer[[]byte] // our encoded Meta, as NodeMeta returns it

	// While a join of ours runs, joining is set and NotifyMerge records a
	// ring mismatch in mismatch, so that the join's caller can report it as
	// such: memberlist flattens the merge delegate's error into text.
	joinMu   sync.Mutex
	joining  bool
	mismatch error

	// conflicts holds, by address and boot id, the other nodes memberlist
	// reported under our own name at another address (NotifyConflict),
	// until checkName takes them; at most maxConflicts.
	conflictMu sync.Mutex
	conflicts  map[conflict]struct{}
}

var (
	_ memberlist.Delegate      = (*delegate)(nil)
	_ memberlist.EventDelegate = (*delegate)(nil)
	_ memberlist.AliveDelegate = (*delegate)(nil)
	_ memberlist.MergeDelegate = (*delegate)(nil)
)

var _ memberlist.ConflictDelegate = (*delegate)(nil)

// NodeMeta returns our encoded Meta; Start made sure it fits.
func (d *delegate) NodeMeta(limit int) []byte {
	b := *d.meta.Load()
	if len(b) > limit {
		return nil // not reached: encodeMeta enforces memberlist.MetaMaxSize
	}
	return b
}

// NotifyMsg handles a user message from a peer: only goodbyes exist.
func (d *delegate) NotifyMsg(b []byte) {
	var g goodbyeMsg
	if len(b) == 0 || b[0] != msgGoodbye {
		return
	}
	if err := msgpack.Unmarshal(b[1:], &g); err != nil || g.Name == "" {
		d.tracker.log.Debug("ignoring malformed goodbye", "error", err)
		return
	}
	d.tracker.goodbye(g.Name, g.BootID)
}

// GetBroadcasts has nothing to broadcast: state travels in the metadata.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState has no state beyond the metadata.
func (d *delegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState has no state beyond the metadata.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

// NotifyJoin records a node that joined or came back.
func (d *delegate) NotifyJoin(n *memberlist.Node) { d.tracker.alive(n) }

// NotifyUpdate records a node's new metadata.
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.tracker.alive(n) }

// NotifyLeave records a node that was declared dead or left.
func (d *delegate) NotifyLeave(n *memberlist.Node) { d.tracker.gone(n) }

// NotifyAlive refuses a peer whose metadata does not decode or whose ring
// settings differ from ours; memberlist then ignores it.
func (d *delegate) NotifyAlive(n *memberlist.Node) error {
	return d.check(n)
}

// NotifyMerge refuses to merge with a cluster that has a node NotifyAlive
// would refuse, so a join between clusters with different ring settings
// fails on both sides.
func (d *delegate) NotifyMerge(peers []*memberlist.Node) error {
	for _, n := range peers {
		if err := d.check(n); err != nil {
			d.joinMu.Lock()
			if d.joining && d.mismatch == nil {
				d.mismatch = err
			}
			d.joinMu.Unlock()
			return err
		}
	}
	return nil
}

// NotifyConflict records a node that gossips our name from another address
// (a live member that already has the name, or an earlier incarnation of
// ours not yet declared dead); checkName tells the two apart. Conflicts
// between other nodes are memberlist's to log.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	if existing.Name != d.name || other.Name != d.name {
		return
	}
	cf := conflict{addr: other.Address()}
	if meta, err := decodeMeta(other.Meta); err == nil {
		cf.bootID = meta.BootID
	}
	d.conflictMu.Lock()
	defer d.conflictMu.Unlock()
	if d.conflicts == nil {
		d.conflicts = map[conflict]struct{}{}
	}
	if len(d.conflicts) < maxConflicts {
		d.conflicts[cf] = struct{}{}
	}
}

// takeConflicts returns the conflicts recorded since the last call.
func (d *delegate) takeConflicts() []conflict {
	d.conflictMu.Lock()
	defer d.conflictMu.Unlock()
	out := make([]conflict, 0, len(d.conflicts))
	for cf := range d.conflicts {
		out = append(out, cf)
	}
	d.conflicts = nil
	return out
}

// check returns an error if n's metadata does not decode or names other
// ring settings than ours.
func (d *delegate) check(n *memberlist.Node) error {
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		return fmt.Errorf("node %q: %w", n.Name, err)
	}
	if meta.Ring != d.ring {
		return fmt.Errorf("%w: node %q has %q, node %q has %q", ErrRingMismatch, n.Name, meta.Ring, d.name, d.ring)
	}
	return nil
}

// beginJoin starts recording ring mismatches for a join of ours.
func (d *delegate) beginJoin() {
	d.joinMu.Lock()
	d.joining, d.mismatch = true, nil
	d.joinMu.Unlock()
}

// endJoin stops recording and returns the first ring mismatch NotifyMerge
// saw since beginJoin.
func (d *delegate) endJoin() error {
	d.joinMu.Lock()
	defer d.joinMu.Unlock()
	err := d.mismatch
	d.joining, d.mismatch = false, nil
	return err
}

// msgGoodbye is the first byte of a goodbye user message.
const msgGoodbye byte = 1

// goodbyeMsg tells peers that a node is leaving on purpose, so that they can
// report it "left" rather than "dead": memberlist's NotifyLeave does not say
// which.
type goodbyeMsg struct {
	Name   string `msgpack:"n"`
	BootID string `msgpack:"b"`
}

// encodeGoodbye encodes the goodbye of incarnation bootID of node name.
func encodeGoodbye(name, bootID string) ([]byte, error) {
	b, err := msgpack.Marshal(goodbyeMsg{Name: name, BootID: bootID})
	if err != nil {
		return nil, fmt.Errorf("cluster: encode goodbye: %w", err)
	}
	return append([]byte{msgGoodbye}, b...), nil
}
