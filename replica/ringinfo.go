package replica

import (
	"github.com/tandem-io/tandem/ring"
)

// MethodRing asks a node for the ring it serves by; smart clients use it
// to send each request straight to the session's primary. The request body
// is empty (any value); the reply is a RingInfo.
const MethodRing = "ring"

// MethodOp runs an Op on the node asked, which must be the session's
// primary in its ring (else the error code is "not_owner"); the reply is an
// OpReply. Smart clients use it.
const MethodOp = methodOp

// MethodRead reads the node's own copy of a session (primary or backup)
// without forwarding; the request is a ReadRequest and the reply a
// ReadReply whose Session is nil when the node holds no live copy. Only a
// current owner answers: another node's error code is "not_owner", and a
// buddy still being handed the partition fetches the session from the
// previous owners first ("unavailable" while it cannot), so a nil Session
// is an answer. Smart clients use it to read from the buddy when the
// primary is unreachable.
const MethodRead = methodRead

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

// OpReply answers MethodOp.
type OpReply = opReply

// ReadRequest asks MethodRead for one session's copy.
type ReadRequest = readRequest

// ReadReply answers MethodRead.
type ReadReply = readReply
