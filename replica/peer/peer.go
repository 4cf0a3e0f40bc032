package peer

import (
	"context"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Caller is the seam the replication engine uses to talk to other nodes.
// *Client implements it; tests wrap it to inject faults.
type Caller interface {
	// Call sends method with args to the node at addr and decodes its answer into reply (reply may be nil).
	Call(ctx context.Context, addr, method string, args, reply any) error
}

// Handler serves requests arriving from other nodes.
type Handler interface {
	// ServePeer answers one request; body is the request's msgpack-encoded args (decode with msgpack.Unmarshal).
	// The returned value is msgpack-encoded as the reply; a non-nil error is sent back as an *Error.
	ServePeer(ctx context.Context, method string, body msgpack.RawMessage) (any, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, method string, body msgpack.RawMessage) (any, error)

// ServePeer calls f(ctx, method, body).
func (f HandlerFunc) ServePeer(ctx context.Context, method string, body msgpack.RawMessage) (any, error) {
	return f(ctx, method, body)
}

// Error is an error reported by the remote handler (not a transport failure).
// Code is a short machine-readable string chosen by the handler; Message is
// for humans.
//
// Handlers return *Error (possibly wrapped) to choose the code; any other
// error, and an *Error with an empty Code, is sent with Code "internal".
type Error struct {
	Code, Message string
}

// Error formats the remote error as "remote error CODE: MESSAGE".
func (e *Error) Error() string {
	if e.Message == "" {
		return "remote error " + e.Code
	}
	return "remote error " + e.Code + ": " + e.Message
}

// codeInternal is the code sent for handler errors that are not an *Error,
// for handler panics and for replies that cannot be encoded.
const codeInternal = "internal"

// ErrUnreachable is wrapped by every error that means the remote node could
// not be reached or did not answer in time: dial failure, broken connection,
// call deadline exceeded, client closed. errors.Is(err, ErrUnreachable)
// distinguishes these from *Error answers. When the ctx deadline caused it,
// errors.Is(err, context.DeadlineExceeded) is also true.
var ErrUnreachable = errors.New("peer unreachable")

// ErrFrameTooLarge is wrapped by the error for a frame over the size limit:
// ReadFrame refuses to read one and WriteFrame refuses to produce one.
var ErrFrameTooLarge = errors.New("frame too large")

// errMalformed is wrapped by every ReadFrame error caused by the frame's bytes
// rather than by the reader.
var errMalformed = errors.New("malformed frame")

// unreachable wraps cause so that it matches both ErrUnreachable and cause.
func unreachable(cause error) error {
	return fmt.Errorf("%w: %w", ErrUnreachable, cause)
}

// errorFields picks the code and message to send for a handler error.
func errorFields(err error) (code, msg string) {
	var pe *Error
	if errors.As(err, &pe) && pe.Code != "" {
		return pe.Code, pe.Message
	}
	return codeInternal, err.Error()
}
