package cluster

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// FaultyTransport wraps memberlist's transport so that gossip from this
// node to chosen others is lost, as across a network cut. Cut(addr) drops
// every UDP packet this node sends to the gossip address addr and fails
// its TCP dials there at once; what addr sends to this node still arrives,
// so a cut is one-way, and a two-way cut is a Cut on both nodes. (Replies
// on a TCP connection the other node opened still flow: the other node
// opened it.) The chaos harness installs one in every node through
// Config.WrapTransport; production nodes never do.
type FaultyTransport struct {
	memberlist.NodeAwareTransport
	mu  sync.RWMutex
	cut map[string]bool
}

// NewFaultyTransport wraps inner with no cut.
func NewFaultyTransport(inner memberlist.NodeAwareTransport) *FaultyTransport {
	return &FaultyTransport{NodeAwareTransport: inner, cut: map[string]bool{}}
}

// Cut makes gossip from this node to the gossip address addr ("ip:port")
// lost until Heal.
func (t *FaultyTransport) Cut(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cut[addr] = true
}

// Heal lets gossip to addr through again.
func (t *FaultyTransport) Heal(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.cut, addr)
}

// HealAll removes every cut.
func (t *FaultyTransport) HealAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.cut)
}

// isCut reports whether gossip to addr is cut.
func (t *FaultyTransport) isCut(addr string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.cut[addr]
}

// WriteTo sends a packet, or loses it silently when addr is cut.
func (t *FaultyTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.isCut(addr) {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteTo(b, addr)
}

// WriteToAddress sends a packet, or loses it silently when addr is cut.
func (t *FaultyTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	if t.isCut(addr.Addr) {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, addr)
}

// DialTimeout opens a stream, or fails when addr is cut.
func (t *FaultyTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.isCut(addr) {
		return nil, fmt.Errorf("dial %s: gossip cut by fault injection", addr)
	}
	return t.NodeAwareTransport.DialTimeout(addr, timeout)
}

// DialAddressTimeout opens a stream, or fails when addr is cut.
func (t *FaultyTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.isCut(addr.Addr) {
		return nil, fmt.Errorf("dial %s: gossip cut by fault injection", addr.Addr)
	}
	return t.NodeAwareTransport.DialAddressTimeout(addr, timeout)
}
