package cluster

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/tandem-io/tandem/ring"
)

// Health values of Member.Health.
//
// memberlist's public API does not tell a suspect node from an alive one,
// so a suspect node is reported "alive" until it is declared dead; that
// matches the ring, which keeps suspect nodes anyway.
const (
	healthAlive = "alive"
	healthDead  = "dead"
	healthLeft  = "left"
)

// Member is one node as the cluster sees it.
type Member struct {
	// Name is the node's unique name.
	Name string `json:"name"`
	// Addr is the node's gossip address, host:port.
	Addr string `json:"gossip"`
	// Meta is what the node last gossiped about itself.
	Meta Meta `json:"meta"`
	// Health is the failure detector's view of the node: "alive" (which
	// includes suspect nodes, see View), "dead" (declared failed) or "left"
	// (announced its departure with Leave).
	Health string `json:"health"`
}

// View is a snapshot of membership as one node sees it. It is immutable:
// every change produces a new View.
type View struct {
	// Epoch numbers the ring member sets this node has seen: it is 1 for the
	// first view and increases by one every time Ring() changes (a member
	// enters or drops out, or changes its addresses or BootID). Views with
	// the same Epoch, seen by the same node, have the same Ring().
	Epoch uint64
	// Members lists every known node, sorted by name: alive (including
	// suspect) ones, and dead or departed ones until the cluster forgets
	// them (Config.GossipToTheDeadTime).
	Members []Member
}

// Ring returns the members that own partitions, sorted by name, ready for
// ring.New: those alive (or merely suspect: a suspect node may well be alive,
// and failing over suspects is decided elsewhere) and not leaving. Joining
// nodes are included.
func (v View) Ring() []ring.Member {
	var out []ring.Member
	for _, m := range v.Members {
		if inRing(m) {
			out = append(out, ring.Member{Name: m.Name, Incarnation: m.Meta.BootID, Peer: m.Meta.Peer, HTTP: m.Meta.HTTP, Witness: m.Meta.Witness})
		}
	}
	return out
}

// inRing reports whether m owns partitions.
func inRing(m Member) bool { return m.Health == healthAlive && m.Meta.State != StateLeaving }

// tracked is one known node with the time of its last health change.
type tracked struct {
	member Member
	since  time.Time
}

// tracker keeps this node's view of membership, fed by memberlist's events.
// Its methods are called with memberlist's node lock held, so they must not
// call back into memberlist, and nothing may hold tracker.mu while calling
// memberlist.
type tracker struct {
	log *slog.Logger

	mu       sync.Mutex
	nodes    map[string]*tracked
	goodbyes map[string]string // node name → BootID that announced its departure
	ringKey  []ringEntry       // ring members of the current epoch
	epoch    uint64
	version  uint64 // increases with every change of view
	view     View

	changed chan struct{} // holds a token when a view is waiting to be delivered
}

// ringEntry is what of a ring member makes a new epoch when it changes.
type ringEntry struct {
	name, peer, http, bootID string
}

// newTracker returns an empty tracker.
func newTracker(log *slog.Logger) *tracker {
	return &tracker{
		log:      log,
		nodes:    make(map[string]*tracked),
		goodbyes: make(map[string]string),
		changed:  make(chan struct{}, 1),
	}
}

// alive records that n is alive with its current metadata (memberlist's
// NotifyJoin and NotifyUpdate).
func (t *tracker) alive(n *memberlist.Node) {
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		// NotifyAlive refuses such nodes, so this is not expected.
		t.log.Warn("ignoring node with undecodable metadata", "peer", n.Name, "error", err)
		return
	}
	m := Member{Name: n.Name, Addr: n.Address(), Meta: meta, Health: healthAlive}

	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.nodes[n.Name]
	if ok && old.member == m {
		return
	}
	if bye, ok := t.goodbyes[n.Name]; ok && bye != meta.BootID {
		delete(t.goodbyes, n.Name) // a new incarnation; the goodbye was its predecessor's
	}
	since := time.Now()
	if ok && old.member.Health == healthAlive {
		since = old.since
	}
	t.nodes[n.Name] = &tracked{member: m, since: since}
	t.changedLocked()
}

// gone records that n was declared dead or left (memberlist's NotifyLeave).
// memberlist does not say which; a node that sent a goodbye (see Leave)
// before going is "left", any other "dead".
func (t *tracker) gone(n *memberlist.Node) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tr, ok := t.nodes[n.Name]
	if !ok {
		return
	}
	health := healthDead
	if t.goodbyes[n.Name] == tr.member.Meta.BootID {
		health = healthLeft
	}
	if tr.member.Health == health {
		return
	}
	tr.member.Health = health
	tr.since = time.Now()
	t.changedLocked()
}

// goodbye records that the incarnation bootID of node name announced its
// departure. The goodbye may arrive before or after memberlist reports the
// node gone.
func (t *tracker) goodbye(name, bootID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.goodbyes[name] = bootID
	if tr, ok := t.nodes[name]; ok && tr.member.Meta.BootID == bootID && tr.member.Health == healthDead {
		tr.member.Health = healthLeft
		t.changedLocked()
	}
}

// expire forgets dead and departed nodes other than self that have been gone
// for longer than retention, as memberlist does.
func (t *tracker) expire(self string, now time.Time, retention time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	changed := false
	for name, tr := range t.nodes {
		if name != self && tr.member.Health != healthAlive && now.Sub(tr.since) > retention {
			delete(t.nodes, name)
			delete(t.goodbyes, name)
			changed = true
		}
	}
	if changed {
		t.changedLocked()
	}
}

// changedLocked rebuilds the view after a change, moves to a new epoch if the
// ring changed, and flags the view for delivery. t.mu must be held.
func (t *tracker) changedLocked() {
	members := make([]Member, 0, len(t.nodes))
	for _, tr := range t.nodes {
		members = append(members, tr.member)
	}
	slices.SortFunc(members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })

	var key []ringEntry
	for _, m := range members {
		if inRing(m) {
			key = append(key, ringEntry{m.Name, m.Meta.Peer, m.Meta.HTTP, m.Meta.BootID})
		}
	}
	if t.epoch == 0 || !slices.Equal(key, t.ringKey) {
		t.epoch++
		t.ringKey = key
	}
	t.version++
	t.view = View{Epoch: t.epoch, Members: members}
	select {
	case t.changed <- struct{}{}:
	default: // a delivery is already pending; it will pick up this view
	}
}

// snapshot returns the current view and its version. The view's Members
// slice is a copy the caller may keep.
func (t *tracker) snapshot() (View, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return View{Epoch: t.view.Epoch, Members: slices.Clone(t.view.Members)}, t.version
}

// isAliveAddr reports whether some alive member has gossip address addr.
func (t *tracker) isAliveAddr(addr string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tr := range t.nodes {
		if tr.member.Health == healthAlive && tr.member.Addr == addr {
			return true
		}
	}
	return false
}

// deliver calls onChange with every new view, coalescing views formed while
// a call runs, until stop is closed. It also expires gone nodes.
func (t *tracker) deliver(stop <-chan struct{}, self string, retention time.Duration, onChange func(View)) {
	tick := min(max(retention/4, 50*time.Millisecond), time.Second)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	var delivered uint64
	for {
		select {
		case <-stop:
			return
		case now := <-ticker.C:
			t.expire(self, now, retention)
		case <-t.changed:
			v, version := t.snapshot()
			if onChange == nil || version <= delivered {
				continue
			}
			select {
			case <-stop:
				return
			default:
			}
			delivered = version
			onChange(v)
		}
	}
}
