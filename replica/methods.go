package replica

import (
	"context"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/replica/peer"
	"github.com/tandem-io/tandem/ring"
)

// peerMethod is one kind of peer request: the handler that answers it, by
// the ring the node serves by when it arrives (each lives in the file of
// its path, beside its request and reply types), and who may send it.
type peerMethod struct {
	serve  func(n *Node, ctx context.Context, tab *ring.Table, body msgpack.RawMessage) (any, error)
	access access
}

// access says who may send a peer request when the wire names the caller
// (mutual TLS, peer.CallerName); checkCaller applies it.
type access int

const (
	// forNodes: any node of the cluster, not a smart client. The zero
	// value, so a method is closed to clients unless it says otherwise.
	forNodes access = iota
	// forClients: smart clients (peer.IsClientName) as well as nodes.
	forClients
	// forSender: only the node the request names as its sender, in its
	// From (msgpack field "f").
	forSender
)

// peerMethods are the requests nodes (and smart clients) send each other.
var peerMethods = map[string]peerMethod{
	methodOp:          {(*Node).serveOp, forClients},         // route.go
	methodRead:        {(*Node).serveRead, forClients},       // read.go
	MethodRing:        {(*Node).serveRing, forClients},       // ringinfo.go
	methodReplicate:   {(*Node).serveReplicate, forSender},   // write.go
	methodReconcile:   {(*Node).serveReconcile, forSender},   // pause.go
	methodPush:        {(*Node).servePush, forSender},        // drain.go
	methodLost:        {(*Node).serveLost, forSender},        // lossnotice.go
	methodLease:       {(*Node).serveLease, forSender},       // lease.go
	methodConfirm:     {(*Node).serveConfirm, forSender},     // confirm.go
	methodUnconfirmed: {(*Node).serveUnconfirmed, forSender}, // unconfirmed.go
	methodTouch:       {(*Node).serveTouch, forNodes},        // expiry.go
	methodExpire:      {(*Node).serveExpire, forNodes},       // expiry.go
	methodPrincipal:   {(*Node).servePrincipal, forNodes},    // principal.go
	methodPull:        {(*Node).servePull, forNodes},         // handoff.go
	methodList:        {(*Node).serveList, forNodes},         // list.go
	methodSeat:        {(*Node).serveSeat, forNodes},         // seatrun.go
}

// ServePeer answers requests from other nodes; it implements peer.Handler.
func (n *Node) ServePeer(ctx context.Context, method string, body msgpack.RawMessage) (any, error) {
	m, ok := peerMethods[method]
	if !ok {
		return nil, toWire(fmt.Errorf("%w: unknown method %q", ErrInvalid, method))
	}
	if err := n.checkCaller(ctx, method, m.access, body); err != nil {
		return nil, toWire(err)
	}
	n.checkPause()
	tab := n.own.table()
	if tab == nil {
		return nil, toWire(fmt.Errorf("%w: %s has no ring yet", ErrNotOwner, n.cfg.Name))
	}
	reply, err := m.serve(n, ctx, tab, body)
	if err != nil {
		return nil, toWire(err)
	}
	return reply, nil
}

// checkCaller is the one place that decides who may send a peer request,
// by the name in the caller's certificate (peer.CallerName): a smart
// client only the methods open to clients, and a node only requests that
// name it as their sender, never another node; so no handler trusts a
// From its caller's certificate does not back. Refusals wrap ErrForbidden,
// are counted (IdentityRefusals) and logged. Over plain TCP (insecure
// mode) the wire names no caller and every request goes on to its
// handler, as without TLS.
func (n *Node) checkCaller(ctx context.Context, method string, a access, body msgpack.RawMessage) error {
	caller, ok := peer.CallerName(ctx)
	if !ok {
		return nil
	}
	var refused error
	switch {
	case a != forClients && peer.IsClientName(caller):
		refused = fmt.Errorf("%w: %s is a client; %s is open only to nodes", ErrForbidden, caller, method)
	case a == forSender:
		var req struct {
			From string `msgpack:"f"`
		}
		if err := decodeBounded(body, &req); err != nil {
			return fmt.Errorf("decode the sender of %s: %w", method, err)
		}
		if req.From != caller {
			refused = fmt.Errorf("%w: %s sent %s naming %q as its sender", ErrForbidden, caller, method, req.From)
		}
	}
	if refused != nil {
		n.stats.IdentityRefusals.Add(1)
		n.log.Warn("refused a peer request its caller's certificate does not allow", "caller", caller, "method", method, "err", refused)
	}
	return refused
}

// decodePartitioned decodes a request naming a partition, bounded
// (decodeBounded), and checks the partition exists.
func decodePartitioned(body msgpack.RawMessage, v any, partition *int, tab *ring.Table) error {
	if err := decodeBounded(body, v); err != nil {
		return fmt.Errorf("decode request: %w", err)
	}
	if *partition < 0 || *partition >= tab.Partitions() {
		return fmt.Errorf("%w: partition %d out of range", ErrInvalid, *partition)
	}
	return nil
}

// empty answers requests that return nothing.
type empty struct{}
