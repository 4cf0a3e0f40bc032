package chaos

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tandem-io/tandem/replica"
	"github.com/tandem-io/tandem/replica/peer"
	"github.com/tandem-io/tandem/ring"
)

// The roles of the owners whose copies ReadCopies reads (Op.Copy).
const (
	// CopyPrimary marks a read of the session's primary's own copy.
	CopyPrimary = "primary"
	// CopyBuddy marks a read of the session's buddy's own copy.
	CopyBuddy = "buddy"
)

// ReadCopies reads, after healing and settling, each long-lived session's
// copy on its primary and on its buddy as each of those nodes holds it,
// and records every answer as a final read with Op.Copy set to the role.
// It asks over the peer wire with replica.MethodRead, which a node answers
// from its own copy without forwarding (the read a smart client sends to
// the buddy when the primary is unreachable); the owners come from the
// ring the nodes serve by (replica.MethodRing). A read that fails is
// retried until it succeeds or ctx ends; one that never succeeds is
// recorded as indeterminate, which the checker reports. The returned
// warnings say what got in the way.
func (w *Workload) ReadCopies(ctx context.Context) []string {
	pcfg := peer.DefaultClientConfig()
	pcfg.Dial = w.cfg.Dial // nodes in network namespaces are reached from the hub
	pc := peer.NewClient(pcfg)
	defer pc.Close()
	tab, warnings := w.agreedRing(ctx, pc)
	if tab == nil {
		// No ring: record every copy read as indeterminate, so the checker
		// reports them rather than passing what it could not see.
		for _, id := range w.Sessions() {
			for _, role := range []string{CopyPrimary, CopyBuddy} {
				now := w.h.Since(time.Now())
				w.h.Add(Op{Client: w.cfg.Clients + 1, Kind: OpGet, Session: id, Final: true, Copy: role,
					Call: now, Return: now, Outcome: Indeterminate, Error: "no ring to find the owners by"})
			}
		}
		return warnings
	}
	var wg sync.WaitGroup
	work := make(chan string)
	for range w.cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				owners := tab.OwnersOf(id)
				for _, c := range []struct{ role, name string }{{CopyPrimary, owners.Primary}, {CopyBuddy, owners.Buddy}} {
					w.h.Add(w.readCopy(ctx, pc, tab, id, c.role, c.name))
				}
			}
		}()
	}
	// Every session is handed out, even once ctx has ended: a copy not
	// read is recorded as such (readCopy gives up at once then), so the
	// checker reports it instead of passing what nobody looked at.
	for _, id := range w.Sessions() {
		work <- id
	}
	close(work)
	wg.Wait()
	return warnings
}

// agreedRing asks every node for the ring it serves by until all answer
// with the same epoch and members, and returns that ring; or, when ctx
// ends first, the last ring any node gave (nil if none), with a warning.
func (w *Workload) agreedRing(ctx context.Context, pc *peer.Client) (*ring.Table, []string) {
	var last *ring.Table
	var why string
	for {
		tabs := make([]*ring.Table, 0, len(w.nodes))
		why = ""
		for _, n := range w.nodes {
			var ri replica.RingInfo
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := pc.Call(cctx, n.Peer, replica.MethodRing, nil, &ri)
			cancel()
			if err != nil {
				why = fmt.Sprintf("%s gave no ring: %v", n.Name, err)
				break
			}
			tab, err := ri.Table()
			if err != nil {
				why = fmt.Sprintf("%s gave a ring that does not build: %v", n.Name, err)
				break
			}
			tabs = append(tabs, tab)
			last = tab
		}
		if why == "" {
			if why = ringsDiffer(w.nodes, tabs); why == "" {
				return tabs[0], nil
			}
		}
		select {
		case <-ctx.Done():
			if last == nil {
				return nil, []string{fmt.Sprintf("copy reads: no node gave its ring: %s", why)}
			}
			return last, []string{fmt.Sprintf("copy reads: the nodes' rings never agreed (%s); owners taken from the last ring seen", why)}
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ringsDiffer says how the rings nodes gave (tabs[i] from nodes[i])
// differ, or "" when they agree on the members and on every partition's
// owners. Epochs are not compared: each node counts its own.
func ringsDiffer(nodes []NodeInfo, tabs []*ring.Table) string {
	names := func(t *ring.Table) []string {
		var out []string
		for _, m := range t.Members() {
			out = append(out, m.Name)
		}
		return out
	}
	for i, t := range tabs[1:] {
		a, b := nodes[0].Name, nodes[i+1].Name
		if !slices.Equal(names(t), names(tabs[0])) {
			return fmt.Sprintf("%s has members %v, %s %v", a, names(tabs[0]), b, names(t))
		}
		if t.Partitions() != tabs[0].Partitions() {
			return fmt.Sprintf("%s has %d partitions, %s %d", a, tabs[0].Partitions(), b, t.Partitions())
		}
		for p := range t.Partitions() {
			if t.Owners(p) != tabs[0].Owners(p) {
				return fmt.Sprintf("partition %d: %s has owners %+v, %s %+v", p, a, tabs[0].Owners(p), b, t.Owners(p))
			}
		}
	}
	return ""
}

// readCopy reads the copy of session id on the owner called name, in the
// given role, retrying until it gets an answer or ctx ends.
func (w *Workload) readCopy(ctx context.Context, pc *peer.Client, tab *ring.Table, id, role, name string) Op {
	op := Op{Client: w.cfg.Clients + 1, Node: name, Kind: OpGet, Session: id, Final: true, Copy: role, Outcome: Indeterminate}
	op.Call = w.h.Since(time.Now())
	m, ok := tab.Member(name)
	if name == "" || !ok {
		op.Return, op.Error = op.Call, fmt.Sprintf("the ring names no %s for the session", role)
		return op
	}
	for {
		var reply replica.ReadReply
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := replica.FromWire(pc.Call(cctx, m.Peer, replica.MethodRead, replica.ReadRequest{Partition: tab.Partition(id), ID: id}, &reply))
		cancel()
		op.Return = w.h.Since(time.Now())
		if err == nil {
			return copyAnswer(op, reply.Session)
		}
		op.Error = err.Error()
		select {
		case <-ctx.Done():
			return op
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// copyAnswer fills op in from the copy a node answered: not-found for no
// live copy, else its version and the workload's two attributes.
func copyAnswer(op Op, s *replica.Session) Op {
	op.Error = ""
	if s == nil {
		op.Outcome = NotFound
		return op
	}
	attrs, err := s.Attributes.Map()
	if err != nil {
		op.Outcome, op.Error = Invalid, fmt.Sprintf("the copy: %v", err)
		return op
	}
	put, patch, err := encodedDigest(attrs)
	if err != nil {
		op.Outcome, op.Error = Invalid, fmt.Sprintf("the copy: %v", err)
		return op
	}
	op.Outcome, op.Version, op.Put, op.Patch = OK, s.Version, put, patch
	return op
}
