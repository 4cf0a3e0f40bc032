package replica

import (
	"context"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/ring"
)

// MethodRing asks a node for the ring it serves by; smart clients use it
// to send each request straight to the session's primary. The request body
// is empty (any value); the reply is a RingInfo.
const MethodRing = "ring"

// RingInfo describes a ring: enough for a client to rebuild the same table.
type RingInfo struct {
	Epoch      uint64        `msgpack:"e"`
	Partitions int           `msgpack:"p"`
	VNodes     int           `msgpack:"vn"`
	Load       float64       `msgpack:"l"`
	Members    []ring.Member `msgpack:"m"`
}

// Table rebuilds the ring table described.
func (ri RingInfo) Table() (*ring.Table, error) {
	return ring.New(ring.Config{Partitions: ri.Partitions, VirtualNodes: ri.VNodes, Load: ri.Load}, ri.Epoch, ri.Members)
}

// ringInfo describes tab.
func ringInfo(tab *ring.Table) RingInfo {
	c := tab.Config()
	return RingInfo{Epoch: tab.Epoch(), Partitions: c.Partitions, VNodes: c.VirtualNodes, Load: c.Load, Members: tab.Members()}
}

// serveRing answers MethodRing with the ring this node serves by.
func (n *Node) serveRing(_ context.Context, tab *ring.Table, _ msgpack.RawMessage) (any, error) {
	return ringInfo(tab), nil
}
