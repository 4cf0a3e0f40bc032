package replica

import (
	"context"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/ring"
)

// peerMethod answers one kind of peer request, by the ring the node
// serves by when it arrives. Each lives in the file of its path, beside
// its request and reply types.
type peerMethod func(n *Node, ctx context.Context, tab *ring.Table, body msgpack.RawMessage) (any, error)

// peerMethods are the requests nodes send each other.
var peerMethods = map[string]peerMethod{
	methodOp:        (*Node).serveOp,        // route.go
	methodRead:      (*Node).serveRead,      // read.go
	methodReplicate: (*Node).serveReplicate, // write.go
	methodTouch:     (*Node).serveTouch,     // expiry.go
	methodExpire:    (*Node).serveExpire,    // expiry.go
	methodReconcile: (*Node).serveReconcile, // pause.go
	methodPush:      (*Node).servePush,      // drain.go
	methodLease:     (*Node).serveLease,     // lease.go
	MethodRing:      (*Node).serveRing,      // ringinfo.go
	methodPrincipal: (*Node).servePrincipal, // principal.go
	methodPull:      (*Node).servePull,      // handoff.go
}

// ServePeer answers requests from other nodes; it implements peer.Handler.
func (n *Node) ServePeer(ctx context.Context, method string, body msgpack.RawMessage) (any, error) {
	serve, ok := peerMethods[method]
	if !ok {
		return nil, toWire(fmt.Errorf("%w: unknown method %q", ErrInvalid, method))
	}
	n.checkPause()
	tab := n.own.table()
	if tab == nil {
		return nil, toWire(fmt.Errorf("%w: %s has no ring yet", ErrNotOwner, n.cfg.Name))
	}
	reply, err := serve(n, ctx, tab, body)
	if err != nil {
		return nil, toWire(err)
	}
	return reply, nil
}

// decodePartitioned decodes a request naming a partition and checks the
// partition exists.
func decodePartitioned(body msgpack.RawMessage, v any, partition *int, tab *ring.Table) error {
	if err := msgpack.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: decode request: %v", ErrInvalid, err)
	}
	if *partition < 0 || *partition >= tab.Partitions() {
		return fmt.Errorf("%w: partition %d out of range", ErrInvalid, *partition)
	}
	return nil
}

// empty answers requests that return nothing.
type empty struct{}
