package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/replica"
)

// WorkloadConfig configures the clients of a run.
type WorkloadConfig struct {
	// Seed drives every client's choices: the same seed gives the same
	// sequence of operations, sessions and target nodes per client.
	Seed int64
	// Clients is how many clients run at once (default 6).
	Clients int
	// Sessions is how many long-lived session slots the clients share
	// (default 16). Each slot holds one session at a time, a register in
	// the linearizability model; after OpsPerSession requests the slot
	// moves to a fresh session id.
	Sessions int
	// OpsPerSession bounds the requests sent to one long-lived session id
	// (default DefaultOpsPerSession): the request that would exceed it
	// goes to a fresh id of the same slot instead, so every session's
	// history stays short enough for porcupine to finish. Negative: no
	// bound (one id per slot for the whole run).
	OpsPerSession int
	// RequestTimeout bounds each request (default 6s, more than a node's
	// own 5s bound, so the node's answer is seen when it has one).
	RequestTimeout time.Duration
	// MinIdle and MaxIdle bound the idle timeouts of expiring sessions
	// (default 2s and 4s).
	MinIdle, MaxIdle time.Duration
	// MaxThink bounds each client's pause between requests (default 10ms).
	MaxThink time.Duration
	// MaxOps stops each client after that many requests (0: no limit but
	// time).
	MaxOps int
	// Dial opens the clients' connections (default: a plain dial);
	// Cluster.DialContext reaches nodes in network namespaces.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ValueSize pads every attribute value a write stores to this many
	// bytes (0: no padding, values of a few bytes), so that sessions are
	// large and hand-offs move them in batches. The padding follows the
	// value's unique name after a "~", and the checker reads the name.
	ValueSize int
	// Msgpack is the share of requests (0..1) sent and answered in
	// msgpack rather than JSON.
	Msgpack float64
	// Client is the share of requests (0..1) sent through the smart
	// client (tandem.Client) over the peer wire, straight to the
	// session's primary (its buddy, for a read the primary cannot
	// answer), instead of through a node's HTTP API. Logouts and POST
	// creates always go through HTTP.
	Client float64
	// App is the share of requests (0..1, with Client at most 1) sent
	// through an app's session middleware: a node's chaos app
	// (/chaos/app/{id}, in a chaos build of tandem serve) reads or
	// patches the session its cookie names with tandem's net/http
	// middleware, as a web app embedding a node does. Only reads and
	// plain patches of the attribute "patch" of long-lived sessions go
	// there (the middleware sends no If-Match and no Idempotency-Key);
	// the others drawn for it go through HTTP.
	App float64
}

// padValue pads v to size bytes (see WorkloadConfig.ValueSize).
func padValue(v string, size int) string {
	if size <= len(v)+1 {
		return v
	}
	return v + "~" + strings.Repeat("x", size-len(v)-1)
}

// unpadValue returns the unique name of a stored value, as a string of
// its own: a substring would keep the whole padded value (up to
// -value-size bytes) alive for as long as the history holds the op.
func unpadValue(v string) string {
	name, _, _ := strings.Cut(v, "~")
	return strings.Clone(name)
}

// DefaultOpsPerSession is the default WorkloadConfig.OpsPerSession. With
// six clients a 90 s run sends 10,000–25,000 requests to long-lived
// sessions, so 16 slots rotate through some 50–125 ids of up to 200
// requests each, and porcupine decides each in milliseconds.
const DefaultOpsPerSession = 200

// withDefaults fills zero fields.
func (c WorkloadConfig) withDefaults() WorkloadConfig {
	if c.Clients == 0 {
		c.Clients = 6
	}
	if c.Sessions == 0 {
		c.Sessions = 16
	}
	if c.OpsPerSession == 0 {
		c.OpsPerSession = DefaultOpsPerSession
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 6 * time.Second
	}
	if c.MinIdle == 0 {
		c.MinIdle = 2 * time.Second
	}
	if c.MaxIdle < c.MinIdle {
		c.MaxIdle = max(c.MinIdle, 4*time.Second)
	}
	if c.MaxThink == 0 {
		c.MaxThink = 10 * time.Millisecond
	}
	return c
}

// Workload is a set of clients sending session requests to a cluster and
// recording them in a History.
type Workload struct {
	cfg    WorkloadConfig
	nodes  []NodeInfo
	h      *History
	client *http.Client

	sent atomic.Uint64 // requests sent, to pick the msgpack share

	smart     *tandem.Client // the smart client (WorkloadConfig.Client); nil when not used or not reached
	smartErr  error          // why the smart client could not be dialled
	smartOnce sync.Once

	mu       sync.Mutex
	expiring map[string]time.Duration // expiring sessions created (maybe), by id: idle timeout
	slots    []slot                   // long-lived session slots: current id, requests sent to it
	ids      []string                 // every long-lived session id used, in order of first use
}

// slot is one long-lived session slot: its current generation (the id's
// suffix) and how many requests went to that id.
type slot struct {
	gen, ops int
}

// NewWorkload returns a workload against nodes, recording into h.
func NewWorkload(nodes []NodeInfo, h *History, cfg WorkloadConfig) *Workload {
	cfg = cfg.withDefaults()
	return &Workload{cfg: cfg, nodes: nodes, h: h, expiring: map[string]time.Duration{}, slots: make([]slot, cfg.Sessions),
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true, DialContext: cfg.Dial}}}
}

// sessionID names generation gen of long-lived session slot i of a seed's
// run.
func sessionID(seed int64, i, gen int) string {
	return fmt.Sprintf("chaos-seed-%d-session-%03d-r%04d", seed, i, gen)
}

// session returns the id the next request to slot i goes to, and counts
// the request: after OpsPerSession requests to one id, the slot moves to a
// fresh one.
func (w *Workload) session(i int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := &w.slots[i]
	if w.cfg.OpsPerSession > 0 && s.ops >= w.cfg.OpsPerSession {
		s.gen, s.ops = s.gen+1, 0
	}
	if s.ops == 0 {
		w.ids = append(w.ids, sessionID(w.cfg.Seed, i, s.gen))
	}
	s.ops++
	return sessionID(w.cfg.Seed, i, s.gen)
}

// Sessions returns every long-lived session id the workload has sent
// requests to, in order of first use.
func (w *Workload) Sessions() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.ids)
}

// expiringID names the n-th expiring session of a client.
func expiringID(seed int64, client, n int) string {
	return fmt.Sprintf("chaos-seed-%d-exp-c%02d-%05d", seed, client, n)
}

// isExpiringID reports whether id names an expiring session.
func isExpiringID(id string) bool { return strings.Contains(id, "-exp-") }

// choice is one decision of a client: what to send where.
type choice struct {
	Kind    OpKind
	IfMatch bool          // a patch or delete sent with If-Match
	Attr    string        // what a patch writes: "" ("patch"), attrB, attrC or attrAll
	Null    bool          // the patch deletes Attr
	Post    bool          // a create sent as POST /v1/sessions
	Session int           // long-lived session index
	Expired int           // for a read of an expiring session: which of the client's, by index (-1: none)
	Node    int           // target node
	Retry   [2]int        // the nodes a write whose answer was lost is sent to again, in turn
	Smart   bool          // sent through the smart client
	App     bool          // sent through an app's session middleware, if it can be
	Idle    time.Duration // a create's idle timeout
	Think   time.Duration // pause before the request
}

// maxAttempts bounds how often a write is sent with one Idempotency-Key.
const maxAttempts = 3

// chooser makes a client's decisions from the seed alone.
type chooser struct {
	cfg     WorkloadConfig
	nodes   int
	rng     *rand.Rand
	created int // expiring sessions created so far
}

// newChooser returns the chooser of client c.
func newChooser(cfg WorkloadConfig, nodes, c int) *chooser {
	cfg = cfg.withDefaults()
	return &chooser{cfg: cfg, nodes: nodes, rng: rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(c)+0x636c69656e74))}
}

// next returns the client's next decision.
func (ch *chooser) next() choice {
	r := ch.rng
	c := choice{Session: r.IntN(ch.cfg.Sessions), Node: r.IntN(ch.nodes), Expired: -1,
		Retry: [2]int{r.IntN(ch.nodes), r.IntN(ch.nodes)}}
	// One draw decides the path, so that adding the app's share leaves
	// every other choice of a seed as it was.
	path := r.Float64()
	c.Smart, c.App = path < ch.cfg.Client, path >= ch.cfg.Client && path < ch.cfg.Client+ch.cfg.App
	c.Think = time.Duration(r.Int64N(int64(ch.cfg.MaxThink) + 1))
	switch roll := r.IntN(100); {
	case roll < 33:
		c.Kind = OpGet
	case roll < 48:
		c.Kind = OpPut
	case roll < 68:
		c.Kind = OpPatch
		c.IfMatch = r.IntN(10) < 4
		switch a := r.IntN(8); {
		case a < 3: // "patch"
		case a < 5:
			c.Attr = attrB
		case a < 7:
			c.Attr = attrC
		default:
			c.Attr = attrAll
		}
		c.Null = r.IntN(10) == 0
	case roll < 80:
		c.Kind = OpCAS
	case roll < 85:
		c.Kind = OpDelete
		c.IfMatch = r.IntN(10) < 4
	case roll < 87:
		c.Kind = OpLogout
	case roll < 93:
		c.Kind = OpCreate
		c.Idle = (ch.cfg.MinIdle + time.Duration(r.Int64N(int64(ch.cfg.MaxIdle-ch.cfg.MinIdle)+1))).Round(100 * time.Millisecond)
		c.Post = r.IntN(2) == 0
		ch.created++
	default:
		c.Kind = OpGet
		if ch.created > 0 {
			c.Expired = r.IntN(ch.created)
		}
	}
	return c
}

// Run runs the clients until ctx ends or each has sent MaxOps requests.
func (w *Workload) Run(ctx context.Context) {
	if w.cfg.Client > 0 {
		w.smartOnce.Do(func() { w.smart, w.smartErr = w.dialSmart(ctx) })
	}
	var wg sync.WaitGroup
	for c := range w.cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.runClient(ctx, c)
		}()
	}
	wg.Wait()
}

// runClient is one client's loop.
func (w *Workload) runClient(ctx context.Context, c int) {
	ch := newChooser(w.cfg, len(w.nodes), c)
	versions := map[string]uint64{} // last version seen per session, for cas
	var created []string            // the client's expiring sessions, by index
	for seq := 0; w.cfg.MaxOps == 0 || seq < w.cfg.MaxOps; seq++ {
		next := ch.next()
		select {
		case <-ctx.Done():
			return
		case <-time.After(next.Think):
		}
		op := Op{Client: c, Node: w.nodes[next.Node].Name, Kind: next.Kind}
		switch {
		case next.Kind == OpCreate:
			// A POST's session is named by its answer; until then (and
			// for good, if it never comes) by a name no node holds.
			op.Session = expiringID(w.cfg.Seed, c, ch.created-1)
			op.IdleTimeout, op.Post, op.Expiring = next.Idle, next.Post, true
			op.Value = fmt.Sprintf("c%d-%d", c, seq)
		case next.Expired >= 0:
			op.Session, op.Expiring = created[next.Expired], true
		default:
			op.Session = w.session(next.Session)
		}
		switch {
		case next.Kind == OpCAS:
			op.IfVersion = max(versions[op.Session], 1)
			op.Value = fmt.Sprintf("c%d-%d", c, seq)
		case next.Kind == OpPatch && next.Null:
			op.Attr, op.Null = next.Attr, true
		case next.Kind == OpPatch:
			op.Attr, op.Value = next.Attr, fmt.Sprintf("c%d-%d", c, seq)
		case next.Kind == OpPut:
			op.Value = fmt.Sprintf("c%d-%d", c, seq)
		}
		if next.IfMatch && !op.expiring() {
			op.IfVersion = max(versions[op.Session], 1)
		}
		if op.Kind.writes() && op.Kind != OpLogout && !op.Post {
			op.Key = fmt.Sprintf("chaos-%d-c%d-%d", w.cfg.Seed, c, seq)
		}
		op.Smart = next.Smart && w.smart != nil && op.Kind != OpLogout && !op.Post
		op.App = next.App && !op.expiring() && (op.Kind == OpGet || op.Kind == OpPatch && op.Attr == "" && !op.Null && op.IfVersion == 0)
		if op.App {
			op.Key = "" // the middleware saves with no Idempotency-Key: no retry
		}
		op = w.send(ctx, next, op)
		if op.Kind == OpCreate {
			created = append(created, op.Session)
			w.mu.Lock()
			w.expiring[op.Session] = next.Idle
			w.mu.Unlock()
		}
		if op.Outcome == OK && op.Version > 0 && !op.expiring() {
			versions[op.Session] = op.Version
		}
		w.h.Add(op)
	}
}

// send sends op to the node next chose and, while a write with an
// Idempotency-Key gets no answer, again to the nodes next.Retry names, up
// to maxAttempts in all: a client that lost an answer retries with the
// same key, and the node that took the write answers the session as the
// write made it instead of writing again. The op records every attempt:
// sent at the first's call, answered at the last's return, with the last
// answer, and indeterminate if a later attempt never reached a node.
func (w *Workload) send(ctx context.Context, next choice, op Op) Op {
	do := w.do
	switch {
	case op.Smart:
		do = w.doSmart
	case op.App:
		do = w.doApp
	}
	sent := time.Now()
	first := do(ctx, next.Node, op)
	first.Attempts = 1
	if first.Key == "" {
		return first
	}
	op.firstSent = sent
	out := first
	for i := 0; out.Outcome == Indeterminate && i < maxAttempts-1 && ctx.Err() == nil; i++ {
		select {
		case <-ctx.Done():
			return out
		case <-time.After(100 * time.Millisecond):
		}
		again := do(ctx, next.Retry[i], op)
		if again.Outcome == Unsent {
			out.Attempts++
			continue
		}
		again.Call, again.Attempts = first.Call, out.Attempts+1
		out = again
	}
	return out
}

// sessionAnswer is the part of a session answer the workload reads.
type sessionAnswer struct {
	ID         string         `json:"id" msgpack:"id"`
	Version    uint64         `json:"version" msgpack:"version"`
	Attributes map[string]any `json:"attributes" msgpack:"attributes"`
	Deleted    int            `json:"deleted" msgpack:"deleted"` // a logout's answer
}

// patchBody is the merge patch a patch op sends: "patch" at the top, the
// nested values merged into the object attribute "n".
func patchBody(attr string, value any) map[string]any {
	switch attr {
	case "":
		return map[string]any{"patch": value}
	case attrAll:
		return map[string]any{"patch": value, attrNest: map[string]any{attrB: value, attrC: value}}
	}
	return map[string]any{attrNest: map[string]any{attr: value}}
}

// answerDigest reads the workload's values from a session's attributes:
// the put's, and the patched values' digest (joinPatch).
func answerDigest(attrs map[string]any) (put, patch string) {
	str := func(v any) string { s, _ := v.(string); return unpadValue(s) }
	nest, _ := attrs[attrNest].(map[string]any)
	return str(attrs["put"]), joinPatch(str(attrs["patch"]), str(nest[attrB]), str(nest[attrC]))
}

// encodedDigest is answerDigest of msgpack-encoded attributes, as the
// smart client and the peer wire carry them.
func encodedDigest(encoded map[string]msgpack.RawMessage) (put, patch string, err error) {
	attrs := make(map[string]any, len(encoded))
	for name, raw := range encoded {
		var v any
		if err := msgpack.Unmarshal(raw, &v); err != nil {
			return "", "", fmt.Errorf("decode attribute %q: %w", name, err)
		}
		attrs[name] = v
	}
	put, patch = answerDigest(attrs)
	return put, patch, nil
}

// do sends op to node i and fills in its times and outcome.
func (w *Workload) do(ctx context.Context, i int, op Op) Op {
	op.Node = w.nodes[i].Name
	base := "http://" + w.nodes[i].HTTP
	target := base + "/v1/sessions/" + op.Session
	var method, body string
	// A write sent again with its Idempotency-Key must be the same
	// request, byte for byte, as a client retrying it sends it: its
	// format follows from its key, and msgpack maps are written in
	// sorted order (json.Marshal sorts them too).
	draw := w.sent.Add(1)
	if op.Key != "" {
		h := fnv.New64a()
		h.Write([]byte(op.Key))
		draw = h.Sum64()
	}
	useMsgpack := w.cfg.Msgpack > 0 && float64(draw%100) < w.cfg.Msgpack*100
	header := http.Header{"Content-Type": {"application/json"}}
	if useMsgpack {
		header.Set("Accept", "application/msgpack")
	}
	encode := func(v any) string {
		if useMsgpack {
			header.Set("Content-Type", "application/msgpack")
			var buf bytes.Buffer
			enc := msgpack.NewEncoder(&buf)
			enc.SetSortMapKeys(true)
			_ = enc.Encode(v)
			return buf.String()
		}
		b, _ := json.Marshal(v)
		return string(b)
	}
	switch op.Kind {
	case OpGet:
		method = http.MethodGet
		if op.expiring() || op.Final {
			target += "?touch=false"
		}
	case OpPut, OpCAS, OpCreate:
		method = http.MethodPut
		idle, principal := "24h", op.Session // a long-lived session's principal names it alone (logout)
		if op.Kind == OpCreate {
			idle, principal = op.IdleTimeout.String(), "chaos"
		}
		if op.Post {
			method, target = http.MethodPost, base+"/v1/sessions"
		}
		body = encode(map[string]any{"principal": principal, "attributes": map[string]any{"put": padValue(op.Value, w.cfg.ValueSize)},
			"idle_timeout": idle, "absolute_timeout": "24h"})
	case OpPatch:
		method = http.MethodPatch
		var value any = padValue(op.Value, w.cfg.ValueSize)
		if op.Null {
			value = nil // a merge patch's null deletes the value
		}
		body = encode(patchBody(op.Attr, value))
	case OpDelete:
		method = http.MethodDelete
	case OpLogout:
		method, target = http.MethodDelete, base+"/v1/principals/"+op.Session+"/sessions"
	}
	if op.IfVersion != 0 {
		header.Set("If-Match", fmt.Sprintf(`"%d"`, op.IfVersion))
	}
	if op.Key != "" {
		header.Set("Idempotency-Key", op.Key)
	}
	if !op.firstSent.IsZero() {
		header.Set("Idempotency-Age", strconv.FormatFloat(time.Since(op.firstSent).Seconds(), 'f', 3, 64))
	}
	rctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, target, strings.NewReader(body))
	if err != nil {
		op.Outcome, op.Error = Invalid, err.Error()
		return op
	}
	req.Header = header
	resp, b, err := w.exchange(&op, req)
	switch {
	case err != nil:
		op.Outcome, op.Error = transportOutcome(err)
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusCreated:
		var s sessionAnswer
		var derr error
		if useMsgpack {
			derr = msgpack.Unmarshal(b, &s)
		} else {
			derr = json.NewDecoder(bytes.NewReader(b)).Decode(&s)
		}
		if derr != nil {
			op.Outcome, op.Error = Invalid, fmt.Sprintf("decode answer %.200q: %v", b, derr)
			break
		}
		op.Outcome = OK
		if op.Kind == OpLogout {
			op.Deleted = s.Deleted
			break
		}
		if op.Post {
			if replica.ValidateID(s.ID) != nil {
				op.Outcome, op.Error = Invalid, fmt.Sprintf("a create answered the session id %.200q", s.ID)
				break
			}
			op.Session = s.ID
		}
		op.Version = s.Version
		op.Put, op.Patch = answerDigest(s.Attributes)
	case resp.StatusCode == http.StatusNoContent:
		op.Outcome = OK
	default:
		op.Outcome, op.Error = failedAnswer(resp, b)
	}
	return op
}

// failedAnswer is the outcome of an answer that is no success: 404 not
// found, 412 a conflict, a 5xx indeterminate, anything else a request the
// workload should not have sent.
func failedAnswer(resp *http.Response, body []byte) (Outcome, string) {
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return NotFound, ""
	case resp.StatusCode == http.StatusPreconditionFailed:
		return Conflict, ""
	case resp.StatusCode >= 500:
		return Indeterminate, fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body))
	}
	return Invalid, fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body))
}

// unsentError is a request's error when no attempt of it was written:
// it cannot have taken effect.
type unsentError struct{ error }

// Unwrap returns the transport's error.
func (e unsentError) Unwrap() error { return e.error }

// exchange sends req, recording op's call and return times, and returns
// the answer with its body read. Go's transport sends a request with an
// Idempotency-Key again on a new connection when the one it reused broke,
// and reports only the last attempt's error: a failed dial then says
// nothing of the first attempt, which the node may have carried out. So
// an error is an unsentError only for a failed dial when no attempt wrote
// the request.
func (w *Workload) exchange(op *Op, req *http.Request) (*http.Response, []byte, error) {
	var wrote atomic.Bool
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{WroteHeaders: func() { wrote.Store(true) }}))
	op.Call = w.h.Since(time.Now())
	resp, err := w.client.Do(req)
	var b []byte
	if err == nil {
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	op.Return = w.h.Since(time.Now())
	var opErr *net.OpError
	if err != nil && errors.As(err, &opErr) && opErr.Op == "dial" && !wrote.Load() {
		err = unsentError{err}
	}
	return resp, b, err
}

// transportOutcome is the outcome of a request that got no answer.
func transportOutcome(err error) (Outcome, string) {
	if errors.As(err, new(unsentError)) {
		return Unsent, err.Error()
	}
	return Indeterminate, err.Error()
}

// doApp sends op, a read or a plain patch, through node i's chaos app:
// the node's session middleware loads the session the cookie names and,
// for a patch, saves the attribute "patch" (WorkloadConfig.App).
func (w *Workload) doApp(ctx context.Context, i int, op Op) Op {
	op.Node = w.nodes[i].Name
	method, body := http.MethodGet, ""
	if op.Kind == OpPatch {
		b, _ := json.Marshal(map[string]string{"patch": padValue(op.Value, w.cfg.ValueSize)})
		method, body = http.MethodPatch, string(b)
	}
	rctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, "http://"+w.nodes[i].HTTP+"/chaos/app/"+op.Session, strings.NewReader(body))
	if err != nil {
		op.Outcome, op.Error = Invalid, err.Error()
		return op
	}
	req.Header.Set("Content-Type", "application/json")
	req.AddCookie(&http.Cookie{Name: "tandem_session", Value: op.Session})
	resp, b, err := w.exchange(&op, req)
	switch {
	case err != nil:
		op.Outcome, op.Error = transportOutcome(err)
	case resp.StatusCode == http.StatusOK:
		var s sessionAnswer
		if err := json.Unmarshal(b, &s); err != nil {
			op.Outcome, op.Error = Invalid, fmt.Sprintf("decode answer %.200q: %v", b, err)
			break
		}
		if s.ID != op.Session {
			// The session vanished between the middleware's load and its
			// save, which then made a new one under a fresh id: to this
			// session, a patch that found nothing.
			op.Outcome = NotFound
			break
		}
		op.Outcome, op.Version = OK, s.Version
		op.Put, op.Patch = answerDigest(s.Attributes)
	default:
		op.Outcome, op.Error = failedAnswer(resp, b)
	}
	return op
}

// FinalReads reads every session the run wrote, without touching it, from
// every node, retrying each read that fails until it succeeds or ctx ends.
func (w *Workload) FinalReads(ctx context.Context) {
	ids := w.Sessions()
	exp := map[string]bool{}
	w.mu.Lock()
	for id := range w.expiring {
		ids = append(ids, id)
		exp[id] = true
	}
	w.mu.Unlock()
	var wg sync.WaitGroup
	work := make(chan string)
	for range w.cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				expiring := exp[id]
				for i := range w.nodes {
					for ctx.Err() == nil {
						op := w.do(ctx, i, Op{Client: w.cfg.Clients, Kind: OpGet, Session: id, Final: true, Expiring: expiring})
						if op.Outcome == OK || op.Outcome == NotFound {
							w.h.Add(op)
							break
						}
						select {
						case <-ctx.Done():
						case <-time.After(100 * time.Millisecond):
						}
					}
				}
			}
		}()
	}
	for _, id := range ids {
		select {
		case work <- id:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
}

// LastExpiry returns how long after the history's start the last expiring
// session created may still be served: its create's return plus its idle
// timeout.
func (w *Workload) LastExpiry() time.Duration {
	var last time.Duration
	for _, op := range w.h.Ops() {
		if op.Kind == OpCreate {
			last = max(last, op.Return+op.IdleTimeout)
		}
	}
	return last
}

// Close releases the workload's connections.
func (w *Workload) Close() {
	w.client.CloseIdleConnections()
	if w.smart != nil {
		w.smart.Close()
	}
}

// Warnings says what kept the workload from sending what it was asked to:
// a smart client it could not dial.
func (w *Workload) Warnings() []string {
	if w.smartErr != nil {
		return []string{fmt.Sprintf("workload: no smart client, its share went through HTTP: %v", w.smartErr)}
	}
	return nil
}

// dialSmart dials the smart client, seeded with every node's peer
// address and reaching them as the workload's HTTP requests do.
func (w *Workload) dialSmart(ctx context.Context) (*tandem.Client, error) {
	var seeds []string
	for _, n := range w.nodes {
		seeds = append(seeds, n.Peer)
	}
	cfg := tandem.ClientConfig{RequestTimeout: w.cfg.RequestTimeout - time.Second}
	cfg.Peer.Dial = w.cfg.Dial
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := tandem.Dial(dctx, seeds, cfg)
	if err != nil {
		return nil, fmt.Errorf("dial the smart client: %w", err)
	}
	return c, nil
}

// clientOp is op as the smart client sends it: the request the HTTP API
// would make of the same HTTP request.
func (w *Workload) clientOp(op Op) *tandem.Op {
	// Map keys sorted: a retry re-encodes the op, and the same request
	// must make the same bytes, or the node takes the retry for another
	// request under the same id (tandem.ErrRequestReused; session 307 of
	// the 30-minute run at 803bf8d, a patch of all three attributes).
	enc := func(v any) msgpack.RawMessage {
		var buf bytes.Buffer
		e := msgpack.NewEncoder(&buf)
		e.SetSortMapKeys(true)
		_ = e.Encode(v)
		return buf.Bytes()
	}
	out := &tandem.Op{ID: op.Session, RequestID: op.Key, IfVersion: op.IfVersion, FirstSent: op.firstSent}
	switch op.Kind {
	case OpGet:
		out.Kind, out.NoTouch = tandem.OpGet, op.expiring() || op.Final
	case OpPut, OpCAS, OpCreate:
		out.Kind, out.Principal = tandem.OpPut, op.Session
		out.IdleTimeout, out.AbsoluteTimeout = 24*time.Hour, 24*time.Hour
		if op.Kind == OpCreate {
			out.Principal, out.IdleTimeout = "chaos", op.IdleTimeout
		}
		out.Attributes = map[string]msgpack.RawMessage{"put": enc(padValue(op.Value, w.cfg.ValueSize))}
	case OpPatch:
		out.Kind = tandem.OpPatch
		var value any = padValue(op.Value, w.cfg.ValueSize)
		if op.Null {
			value = nil
		}
		for name, v := range patchBody(op.Attr, value) {
			switch {
			case name == attrNest:
				out.Merge = map[string]msgpack.RawMessage{name: enc(v)}
			case v == nil:
				out.Delete = append(out.Delete, name)
			default:
				out.Set = map[string]msgpack.RawMessage{name: enc(v)}
			}
		}
	case OpDelete:
		out.Kind = tandem.OpDelete
	}
	return out
}

// doSmart sends op through the smart client (i only names the node the
// op is recorded against: the client picks the owner) and fills in its
// times and outcome as do does.
func (w *Workload) doSmart(ctx context.Context, i int, op Op) Op {
	op.Node = "client"
	rctx, cancel := context.WithTimeout(ctx, w.cfg.RequestTimeout)
	defer cancel()
	op.Call = w.h.Since(time.Now())
	s, err := w.smart.Do(rctx, w.clientOp(op))
	op.Return = w.h.Since(time.Now())
	switch {
	case err == nil && op.Kind == OpDelete:
		op.Outcome = OK
	case err == nil:
		put, patch, derr := encodedDigest(s.Attributes)
		if derr != nil {
			op.Outcome, op.Error = Invalid, derr.Error()
			return op
		}
		op.Outcome, op.Version = OK, s.Version
		op.Put, op.Patch = put, patch
	case errors.Is(err, tandem.ErrNotFound):
		op.Outcome = NotFound
	case errors.Is(err, tandem.ErrConflict):
		op.Outcome = Conflict
	case errors.Is(err, tandem.ErrInvalid), errors.Is(err, tandem.ErrTooLarge), errors.Is(err, tandem.ErrRequestReused):
		op.Outcome, op.Error = Invalid, err.Error()
	default: // unavailable, indeterminate, out of time: it may have taken effect
		op.Outcome, op.Error = Indeterminate, err.Error()
	}
	return op
}
