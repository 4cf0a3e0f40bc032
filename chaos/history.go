package chaos

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// OpKind says what a client asked of a session.
type OpKind string

// The operations of the workload, each one HTTP request.
const (
	// OpGet is GET /v1/sessions/{id}.
	OpGet OpKind = "get"
	// OpPut is an unconditional PUT /v1/sessions/{id}: create or replace.
	OpPut OpKind = "put"
	// OpCAS is a PUT with If-Match: a compare-and-set on the version.
	OpCAS OpKind = "cas"
	// OpPatch is PATCH /v1/sessions/{id}, a merge patch of one attribute;
	// with IfVersion, sent with If-Match.
	OpPatch OpKind = "patch"
	// OpDelete is DELETE /v1/sessions/{id}; with IfVersion, sent with
	// If-Match.
	OpDelete OpKind = "delete"
	// OpCreate creates an expiring session with a short idle timeout: a
	// PUT of a fresh id, or (with Post) a POST /v1/sessions, which makes
	// the id. It is never written again.
	OpCreate OpKind = "create"
	// OpLogout is DELETE /v1/principals/{name}/sessions for the principal
	// of a long-lived session, which names it alone: it deletes the
	// session if live, answering how many it deleted (Deleted).
	OpLogout OpKind = "logout"
)

// writes reports whether the kind changes a session.
func (k OpKind) writes() bool { return k != OpGet }

// Outcome is what a client learned from one request.
type Outcome string

// The outcomes of a request.
const (
	// OK: 2xx; the operation took effect (or read what it returned).
	OK Outcome = "ok"
	// NotFound: 404; the session does not exist, was deleted or expired.
	NotFound Outcome = "not-found"
	// Conflict: 412; a conditional write found another version.
	Conflict Outcome = "conflict"
	// Indeterminate: a timeout, a 5xx or a connection error; a write may or
	// may not have taken effect, now or later.
	Indeterminate Outcome = "indeterminate"
	// Unsent: the request never reached a node (the connection was
	// refused); it cannot have taken effect and the checker leaves it out.
	Unsent Outcome = "unsent"
	// Invalid: a 4xx the workload should never provoke; a harness bug,
	// reported as a warning. It took no effect.
	Invalid Outcome = "invalid"
)

// Op is one request of the workload and what came of it.
type Op struct {
	// Index is the op's position in the history.
	Index int `json:"index"`
	// Client numbers the workload client that sent it.
	Client int `json:"client"`
	// Node names the node the request was sent to.
	Node string `json:"node"`
	// Kind says what was asked.
	Kind OpKind `json:"kind"`
	// Session is the session id.
	Session string `json:"session"`
	// Value is the unique value a write stores: the "put" attribute of a
	// put, cas or create, the "patch" attribute of a patch.
	Value string `json:"value,omitempty"`
	// Attr is what a patch writes: "" for the attribute "patch", attrB or
	// attrC for a field of the object attribute "n" (a nested merge), or
	// attrAll for all three at once.
	Attr string `json:"attr,omitempty"`
	// Null marks a patch that deletes Attr (a JSON null); its Value is "".
	Null bool `json:"null,omitempty"`
	// IfVersion is the version a cas, or a patch or delete sent with
	// If-Match, expects; zero: none.
	IfVersion uint64 `json:"if_version,omitempty"`
	// IdleTimeout is a create's idle timeout.
	IdleTimeout time.Duration `json:"idle_timeout,omitempty"`
	// Post marks a create sent as POST /v1/sessions; Expiring, any op of
	// an expiring session (whose id a POST may have made).
	Post     bool `json:"post,omitempty"`
	Expiring bool `json:"expiring,omitempty"`
	// Key is the write's Idempotency-Key; Attempts, how many times it
	// was sent with it: a write whose answer was lost is sent again, to
	// another node, and Call to Return spans every attempt.
	Key      string `json:"key,omitempty"`
	Attempts int    `json:"attempts,omitempty"`
	// firstSent, on an attempt after the first, is when the first was
	// sent: the retry says how long ago (Idempotency-Age), as a client
	// retrying should.
	firstSent time.Time
	// Smart marks a request sent through the smart client over the peer
	// wire (WorkloadConfig.Client); its Node is "client".
	Smart bool `json:"smart,omitempty"`
	// App marks a request sent through a node's chaos app, whose session
	// middleware loads and saves the session (WorkloadConfig.App).
	App bool `json:"app,omitempty"`
	// Final marks the reads made after healing and settling.
	Final bool `json:"final,omitempty"`
	// Copy, on a final read, says whose own copy it read over the peer
	// wire: CopyPrimary or CopyBuddy (Workload.ReadCopies). Empty for
	// requests through the HTTP API.
	Copy string `json:"copy,omitempty"`

	// Call and Return are when the request was sent and answered, since the
	// history began.
	Call   time.Duration `json:"call"`
	Return time.Duration `json:"return"`
	// Outcome is what the answer said.
	Outcome Outcome `json:"outcome"`
	// Version is the session version answered (reads and writes but
	// delete, which answers none).
	Version uint64 `json:"version,omitempty"`
	// Put is the "put" attribute answered, Patch the patched values
	// "patch", n.pb and n.pc (joinPatch: "a+pb:b+pc:c", or a alone).
	Put   string `json:"put,omitempty"`
	Patch string `json:"patch,omitempty"`
	// Deleted is how many sessions a logout answered it deleted.
	Deleted int `json:"deleted,omitempty"`
	// Error is the error or status of a failed request.
	Error string `json:"error,omitempty"`
}

// label names the op for people: "get", "put(c1-7)", "cas(v3, c1-8)".
func (o *Op) label() string {
	switch {
	case o.Kind == OpCAS:
		return fmt.Sprintf("cas(v%d, %s)", o.IfVersion, o.Value)
	case o.Kind == OpPatch && o.IfVersion != 0:
		return fmt.Sprintf("patch(v%d, %s)", o.IfVersion, patchLabel(o.Attr, o.Value, o.Null))
	case o.Kind == OpPatch:
		return fmt.Sprintf("patch(%s)", patchLabel(o.Attr, o.Value, o.Null))
	case o.IfVersion != 0:
		return fmt.Sprintf("%s(v%d)", o.Kind, o.IfVersion)
	case o.Value != "":
		return fmt.Sprintf("%s(%s)", o.Kind, o.Value)
	}
	return string(o.Kind)
}

// expiring reports whether the op belongs to an expiring session.
func (o *Op) expiring() bool { return o.Expiring || o.IdleTimeout > 0 || isExpiringID(o.Session) }

// History is the record of every request of a run. It is safe for
// concurrent use.
type History struct {
	start time.Time

	mu  sync.Mutex
	ops []Op
}

// NewHistory starts an empty history whose times count from now.
func NewHistory() *History { return &History{start: time.Now()} }

// Start returns the time the history counts from.
func (h *History) Start() time.Time { return h.start }

// Since returns how long after the history's start t is.
func (h *History) Since(t time.Time) time.Duration { return t.Sub(h.start) }

// Add records op and returns its index.
func (h *History) Add(op Op) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	op.Index = len(h.ops)
	h.ops = append(h.ops, op)
	return op.Index
}

// Ops returns a copy of the recorded ops, in the order they were recorded.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// HistoryOf returns a history holding ops, for checking histories built
// by hand or loaded from a report.
func HistoryOf(ops []Op) *History {
	h := &History{start: time.Now()}
	for _, op := range ops {
		h.Add(op)
	}
	return h
}
