// Package peer is Tandem's node-to-node wire: the transport the replication
// engine uses to send session writes to a buddy node and to forward requests
// to a session's primary.
//
// # What it owns
//
// A [Client] keeps one long-lived TCP (optionally TLS) connection per remote
// address, dialled on first use and shared by every caller. Requests are
// pipelined: many calls can be in flight on one connection at once, each
// tagged with a request ID, and a single reader goroutine per connection
// hands each response to the call waiting for that ID. A [Server] accepts
// connections, runs every request's [Handler] on a worker goroutine of its
// connection (a worker serves one request at a time and another starts when
// none is free, so a handler that blocks holds up no other request; at most
// [ServerConfig.MaxInFlight] requests per connection are unanswered) and
// writes the answers back in whatever order they finish.
//
// Both sides write the same way: a caller (or a handler) encodes its frame
// into a pooled buffer and queues it, and one writer goroutine per
// connection drains the queue into a single buffered write per wake-up, so
// frames that are ready together share a syscall and nobody holds a lock
// across one.
//
// # What it promises
//
//   - Every failure to get an answer wraps [ErrUnreachable]: dial failure,
//     redial backoff, broken connection, deadline or cancellation, closed
//     client. A handler's own error arrives as an [*Error] instead, so callers
//     can tell "the node said no" from "the node did not answer".
//   - Call returns promptly when its context ends; the error then also wraps
//     ctx.Err() (for example [context.DeadlineExceeded]). A response that
//     arrives later is dropped.
//   - When a connection breaks, every call pending on it fails at once and the
//     next call redials. Failed dials back off exponentially between
//     [ClientConfig.MinBackoff] and [ClientConfig.MaxBackoff]; a call made
//     during backoff fails fast instead of dialling.
//   - Malformed or oversized input is an error, never a panic, and a handler
//     panic is answered with code "internal" rather than crashing the node.
//
// Delivery is at most once: this package never retries a call, because it
// cannot know whether the remote handler ran. Retrying is the caller's
// decision.
//
// Every request a Client writes and a Server reads is counted by method in
// a [Counters], the process's ([ProcessCounters]) unless the config names
// others, so what the nodes say to each other can be measured.
//
// # Mutual TLS
//
// [MutualTLS] builds both sides of a cluster node's TLS, [ClientTLS] a smart
// client's. Every node and every smart client holds a certificate signed by
// the cluster's CA, and a certificate names its holder in its Subject
// CommonName: a node's names the node (CN=<node name>; `tandem certs`
// issues it with DNS and IP SANs for the hosts, for use as server and
// client), a smart client's names a client, CN=[ClientNamePrefix]<name>.
// The prefix, rather than an extended key usage or an OU, tells the two
// apart: it travels with the name into every log line and refusal, and a
// name with the prefix can never be taken for a node's.
//
// A node's server requires a client certificate that chains to the CA
// (tls.RequireAndVerifyClientCert, extended key usage ClientAuth) and
// names someone; a caller without one fails the handshake and reaches no
// handler. The server puts the name into every request's context
// ([CallerName]) and the handler decides what that caller may do: the
// replication engine lets clients call only the methods open to them and
// refuses a request that names a sender other than its caller.
//
// A node or client dialling a node verifies the server's chain against
// the CA (extended key usage ServerAuth) and requires a node's
// certificate, not a client's, but does not match the certificate to the
// address dialled. Nodes dial each other at advertised addresses, which
// change with the hosts they run on (containers, DHCP, a node moved), and
// clients dial seeds by whatever name reaches them; the cluster's identity
// is the node name, not the address, and every node certificate the CA
// signed is a node of the cluster. This is Consul's verify_server_hostname
// rather than a browser's check: a client's certificate, or one from
// another CA, cannot answer as a node, and a node's certificate keeps
// working when its node moves. What it does not check is which node
// answers at an address: a node holding a valid certificate is trusted to
// answer for the address it was dialled at.
//
// # Frame layout
//
// Both directions carry the same frame:
//
//	+-----------------+------------------------------+-----------------------+
//	| length (4 B)    | header (msgpack array)       | body (one msgpack     |
//	| big-endian u32  | [ID, Kind, Method, Code, Msg]| value)                |
//	+-----------------+------------------------------+-----------------------+
//	                  |<------------------ length bytes ------------------->|
//
// The length counts the payload (header plus body) and may not exceed the
// receiver's MaxFrameSize. The header is a [Header] encoded as a compact
// msgpack array. A request's body is the call's args and a response's body is
// the handler's reply (nil for an error response). The body must be exactly
// one msgpack value, nested at most 1024 containers deep; anything else is a
// malformed frame and the receiver drops the connection.
package peer
