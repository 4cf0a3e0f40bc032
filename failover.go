package tandem

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"syscall"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/cluster"
	"github.com/tandem-io/tandem/replica/peer"
	"github.com/tandem-io/tandem/ring"
)

// Early failover on evidence from the peer wire.
//
// The failure detector is timed for a real network (cluster.LANProfile): it
// takes seconds to declare a crashed node dead, so that a pause or a slow
// answer does not. A crashed process leaves better evidence than silence:
// its host refuses connections to its peer port at once. A node that sees
// a member's peer port refuse a connection dials it again itself; if that
// is refused too, it takes the member (that incarnation: its boot id) out
// of the ring it serves by at once, as if membership had declared it dead,
// and tells the other members, which check for themselves and do the same.
// Every member thus moves to the ring without the dead node within
// milliseconds, and the leases make it safe: the owners taking over fence
// the dead member's partitions until their grants to it have lapsed,
// exactly as after any departure (docs/ARCHITECTURE.md, "Fencing").
//
// Silence is not evidence: a paused process, a hung host or a network cut
// leaves connections accepted or unanswered, never refused, and is left to
// the failure detector. A refusal means no process listens on the peer
// port: the node has crashed, or closed its listener on its way out. The
// member comes back into the ring when membership shows a new incarnation
// (another boot id), or when its peer port accepts a connection again (a
// re-check every second), or drops out for good when membership declares
// it dead.

// methodDown tells a member that the sender found another member's peer
// port refusing connections. It is the root package's own peer method,
// answered before the replication engine's.
const methodDown = "down"

// downRequest names the member found down, by incarnation.
type downRequest struct {
	Name   string `msgpack:"n"`
	BootID string `msgpack:"b"`
}

// refusal reports whether err says the remote host refused the connection.
func refusal(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// evidenceCaller watches the engine's calls for refused connections.
type evidenceCaller struct {
	inner   peer.Caller
	refused func(addr string)
}

// Call forwards the call and reports a refused connection.
func (c evidenceCaller) Call(ctx context.Context, addr, method string, args, reply any) error {
	err := c.inner.Call(ctx, addr, method, args, reply)
	if err != nil && refusal(err) {
		c.refused(addr)
	}
	return err
}

// servePeer answers the root's own peer method and hands every other to
// the replication engine.
func (n *Node) servePeer(ctx context.Context, method string, body msgpack.RawMessage) (any, error) {
	if method != methodDown {
		return n.replica.ServePeer(ctx, method, body)
	}
	var req downRequest
	if err := msgpack.Unmarshal(body, &req); err != nil {
		return nil, &peer.Error{Code: "invalid", Message: fmt.Sprintf("decode down: %v", err)}
	}
	if m, ok := n.memberByName(req.Name); ok && m.Meta.BootID == req.BootID {
		n.checkDown(m, false)
	}
	return struct{}{}, nil
}

// refused is called when a call to addr was refused: it checks the member
// at addr, in the background.
func (n *Node) refused(addr string) {
	m, ok := n.memberByPeer(addr)
	if !ok || m.Name == n.cfg.Name {
		return
	}
	go n.checkDown(m, true)
}

// checkDown dials member m's peer port; if the connection is refused, it
// takes m's incarnation out of the ring and, if tell, tells the others.
// One check per member runs at a time.
func (n *Node) checkDown(m cluster.Member, tell bool) {
	n.mu.Lock()
	if n.down[m.Name] == m.Meta.BootID || n.checking[m.Name] || n.closed {
		n.mu.Unlock()
		return
	}
	n.checking[m.Name] = true
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.checking, m.Name)
		n.mu.Unlock()
	}()
	if !portRefuses(m.Meta.Peer) {
		return
	}
	n.mu.Lock()
	n.down[m.Name] = m.Meta.BootID
	n.mu.Unlock()
	n.log.Warn("member's peer port refuses connections: taking it out of the ring before membership declares it dead", "member", m.Name)
	n.downs.Add(1)
	n.installRing()
	if tell {
		n.tellDown(m)
	}
}

// portRefuses reports whether a fresh TCP connection to addr is refused.
func portRefuses(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return refusal(err)
	}
	_ = c.Close()
	return false
}

// tellDown tells every other member of the ring that m refuses
// connections.
func (n *Node) tellDown(m cluster.Member) {
	tab := n.replica.Table()
	if tab == nil {
		return
	}
	req := downRequest{Name: m.Name, BootID: m.Meta.BootID}
	for _, o := range tab.Members() {
		if o.Name == n.cfg.Name || o.Name == m.Name {
			continue
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if err := n.client.Call(ctx, o.Peer, methodDown, req, nil); err != nil {
				n.log.Debug("cannot tell a member of a down member", "member", o.Name, "down", m.Name, "err", err)
			}
		}()
	}
}

// recheckDown runs every second: a member taken out on evidence comes back
// into the ring when its peer port accepts connections again.
func (n *Node) recheckDown() {
	n.mu.Lock()
	var names []string
	for name := range n.down {
		names = append(names, name)
	}
	n.mu.Unlock()
	for _, name := range names {
		m, ok := n.memberByName(name)
		if !ok || portRefuses(m.Meta.Peer) {
			continue
		}
		n.mu.Lock()
		delete(n.down, name)
		n.mu.Unlock()
		n.log.Info("member's peer port accepts connections again: back in the ring", "member", name)
		n.installRing()
	}
}

// memberByPeer returns the alive member whose peer address is addr.
func (n *Node) memberByPeer(addr string) (cluster.Member, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.view.Members {
		if m.Meta.Peer == addr && m.Health == "alive" {
			return m, true
		}
	}
	return cluster.Member{}, false
}

// memberByName returns the alive member called name.
func (n *Node) memberByName(name string) (cluster.Member, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.view.Members {
		if m.Name == name && m.Health == "alive" {
			return m, true
		}
	}
	return cluster.Member{}, false
}

// ringMembers returns the members of view v the node serves by: its ring,
// without the incarnations found down on the peer wire. It forgets the
// ones membership no longer lists as alive under that incarnation. The
// caller holds n.mu.
func (n *Node) ringMembers(v cluster.View) []ring.Member {
	alive := map[string]string{}
	for _, m := range v.Members {
		if m.Health == "alive" {
			alive[m.Name] = m.Meta.BootID
		}
	}
	for name, boot := range n.down {
		if alive[name] != boot {
			delete(n.down, name)
		}
	}
	return slices.DeleteFunc(v.Ring(), func(m ring.Member) bool {
		_, down := n.down[m.Name]
		return down
	})
}

// installRing builds the ring from the latest view without the members
// found down, and gives it to the replication engine under a new epoch,
// unless it is the ring the engine already serves by.
func (n *Node) installRing() {
	n.mu.Lock()
	if !n.joined {
		n.mu.Unlock()
		return
	}
	members := n.ringMembers(n.view)
	why := outOfRing(n.view, members, n.down)
	n.epoch++
	epoch := n.epoch
	n.mu.Unlock()
	if len(members) == 0 {
		return
	}
	tab, err := ring.New(n.cfg.Ring, epoch, members)
	if err != nil {
		n.log.Error("cannot build ring from membership", "epoch", epoch, "err", err)
		return
	}
	if cur := n.replica.Table(); cur != nil && cur.Fingerprint() == tab.Fingerprint() {
		return // the same ring: nothing moves
	}
	if err := n.replica.SetTable(tab); err != nil {
		n.log.Error("cannot serve by new ring", "epoch", epoch, "err", err)
		return
	}
	n.events.record(tab, why, time.Now())
}

// every runs f every d until the node stops.
func (n *Node) every(d time.Duration, f func()) {
	defer n.watcher.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			f()
		}
	}
}
