package tandem

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tandem-io/tandem/cluster"
	"github.com/tandem-io/tandem/ring"
)

// maxEvents bounds the ring changes a node remembers (Node.Events).
const maxEvents = 20

// Event is one change of the ring a node serves by: members entering or
// leaving it, as the node installed it. The status page lists the latest.
type Event struct {
	// Time is when the node installed the ring.
	Time time.Time `json:"time"`
	// Epoch is the new ring's epoch.
	Epoch uint64 `json:"epoch"`
	// Members names the new ring's members.
	Members []string `json:"members"`
	// Added names the members that entered the ring; the first ring a
	// node installs adds every member.
	Added []string `json:"added,omitempty"`
	// Removed names the members that dropped out of it.
	Removed []string `json:"removed,omitempty"`
	// Detail says why, as far as the node could tell: "node-2 declared
	// dead", "node-3 left", "node-2's peer port refused connections",
	// "node-4 joined", "node-2 restarted" (a new peer address).
	Detail string `json:"detail"`
}

// eventLog keeps the latest maxEvents ring changes, oldest first; its zero
// value is ready.
type eventLog struct {
	mu     sync.Mutex
	events []Event
	last   *ring.Table // the ring of the latest event
}

// record notes that the node now serves by tab; why gives, by name, the
// reason a member of the view is out of the ring. A ring not newer than the
// latest recorded one (a concurrent install that lost) is ignored.
func (l *eventLog) record(tab *ring.Table, why map[string]string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last != nil && tab.Epoch() <= l.last.Epoch() {
		return
	}
	ev := Event{Time: now, Epoch: tab.Epoch()}
	var details []string
	for _, m := range tab.Members() {
		ev.Members = append(ev.Members, m.Name)
		old, ok := Member{}, false
		if l.last != nil {
			var om ring.Member
			om, ok = l.last.Member(m.Name)
			old = memberOf(om)
		}
		switch {
		case l.last == nil:
			ev.Added = append(ev.Added, m.Name)
		case !ok:
			ev.Added = append(ev.Added, m.Name)
			details = append(details, m.Name+" joined")
		case old.Peer != m.Peer:
			details = append(details, m.Name+" restarted")
		case old.HTTP != m.HTTP:
			details = append(details, fmt.Sprintf("%s's HTTP address is now %q", m.Name, m.HTTP))
		}
	}
	if l.last == nil {
		details = append(details, "first ring: "+strings.Join(ev.Members, ", "))
	} else {
		for _, m := range l.last.Members() {
			if tab.Has(m.Name) {
				continue
			}
			ev.Removed = append(ev.Removed, m.Name)
			reason := why[m.Name]
			if reason == "" {
				reason = "is no longer a member"
			}
			details = append(details, m.Name+" "+reason)
		}
	}
	if len(details) == 0 {
		details = append(details, "the ring changed, its members did not")
	}
	ev.Detail = strings.Join(details, "; ")
	l.last = tab
	if len(l.events) == maxEvents {
		l.events = slices.Delete(l.events, 0, 1)
	}
	l.events = append(l.events, ev)
}

// list returns a copy of the events, newest first.
func (l *eventLog) list() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Event, len(l.events))
	for i, e := range l.events {
		e.Members, e.Added, e.Removed = slices.Clone(e.Members), slices.Clone(e.Added), slices.Clone(e.Removed)
		out[len(out)-1-i] = e
	}
	return out
}

// outOfRing says, by name, why each member of view v is not among members
// (the ring about to be built): declared dead, left, leaving, or found down
// on the peer wire (down, by name). The caller holds n.mu.
func outOfRing(v cluster.View, members []ring.Member, down map[string]string) map[string]string {
	in := make(map[string]bool, len(members))
	for _, m := range members {
		in[m.Name] = true
	}
	why := map[string]string{}
	for _, m := range v.Members {
		if in[m.Name] {
			continue
		}
		_, refused := down[m.Name]
		switch {
		case refused && m.Health == "alive":
			why[m.Name] = "refused connections on its peer port"
		case m.Health == "dead":
			why[m.Name] = "declared dead"
		case m.Health == "left":
			why[m.Name] = "left"
		case m.Meta.State == cluster.StateLeaving:
			why[m.Name] = "is leaving"
		default:
			why[m.Name] = fmt.Sprintf("is out of the ring (%s)", m.Health)
		}
	}
	return why
}

// Events returns the latest ring changes this node installed (at most 20),
// newest first.
func (n *Node) Events() []Event { return n.events.list() }

// PartitionOwners names one partition's owners in the node's ring.
type PartitionOwners struct {
	// Partition is the partition's number, from 0.
	Partition int `json:"partition"`
	// Primary names the member that serves the partition.
	Primary string `json:"primary"`
	// Buddy names the member that holds the second copy; "" when the ring
	// has a single member.
	Buddy string `json:"buddy"`
}

// Partitions returns every partition's owners in the ring the node serves
// by, with the ring's epoch; nil and 0 before the node has a ring.
func (n *Node) Partitions() ([]PartitionOwners, uint64) {
	tab := n.replica.Table()
	if tab == nil {
		return nil, 0
	}
	out := make([]PartitionOwners, tab.Partitions())
	for p := range out {
		o := tab.Owners(p)
		out[p] = PartitionOwners{Partition: p, Primary: o.Primary, Buddy: o.Buddy}
	}
	return out, tab.Epoch()
}
