package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/anishathalye/porcupine"
)

// The rules the issue "Chaos a Jepsen reviewer would sign" asks for: a
// check that does not finish fails the run; content is compared wherever
// versions are; the owners' own copies are compared with the final state;
// and key rotation keeps every session's history short.

// concurrentHistory is a linearizable session history that porcupine
// cannot decide within a nanosecond: n writes of unknown outcome and n
// reads all overlapping, the reads seeing the writes' values in order.
func concurrentHistory(n int) []Op {
	var ops []Op
	for i := range n {
		v := fmt.Sprintf("w%d", i)
		ops = append(ops, Op{Client: i, Kind: OpPut, Session: reg, Value: v, Call: sec(0), Return: sec(10), Outcome: Indeterminate})
	}
	for i := range n {
		v := fmt.Sprintf("w%d", i)
		ops = append(ops, Op{Client: 100 + i, Kind: OpGet, Session: reg, Call: sec(1), Return: sec(9), Outcome: OK, Version: uint64(i) + 1, Put: v})
	}
	last := fmt.Sprintf("w%d", n-1)
	return append(ops, final(Op{Client: 300, Kind: OpGet, Session: reg, Call: sec(20), Return: sec(20.1), Outcome: OK, Version: uint64(n), Put: last}))
}

func TestCheckerFailsAnUnfinishedCheck(t *testing.T) {
	// The same clean history passes with time to check it, and fails when
	// porcupine runs out of time: unknown is not a pass.
	ops := []Op{
		put(0, "a", 1, 0, 1),
		put(1, "b", 2, 1.5, 2),
		get(0, "b", 2, 3, 4),
		final(get(2, "b", 2, 10, 10.1)),
	}
	if v := Check(HistoryOf(ops), CheckConfig{}); !v.Pass || len(v.Unknown) != 0 || v.Sessions != 1 {
		t.Fatalf("a clean history failed: %+v", v)
	}
	hard := concurrentHistory(8)
	if v := Check(HistoryOf(hard), CheckConfig{}); !v.Pass || v.Linearizability[reg] != porcupine.Ok {
		t.Fatalf("the concurrent history, given time, is not linearizable: %+v", v)
	}
	v := Check(HistoryOf(hard), CheckConfig{LinearizabilityTimeout: time.Nanosecond})
	if v.Linearizability[reg] != porcupine.Unknown {
		t.Skipf("porcupine decided within 1ns (%v); the history is too easy for this test", v.Linearizability[reg])
	}
	if len(v.Anomalies) != 0 {
		t.Fatalf("anomalies in a clean history: %v", v.Anomalies)
	}
	if v.Pass || v.String() != "FAIL" {
		t.Fatalf("a session whose check timed out passed: %+v", v)
	}
	if !slices.Equal(v.Unknown, []string{reg}) {
		t.Fatalf("unknown %v, want [%s]", v.Unknown, reg)
	}
	// The report counts and names it.
	rep := newReport(Config{Seed: 1, Nodes: 3}, HistoryOf(hard), nil, v, nil, sec(1), 0)
	if rep.Verdict != "FAIL" || len(rep.Unknown) != 1 || rep.Sessions != 1 {
		t.Fatalf("report: verdict %s, unknown %v, sessions %d", rep.Verdict, rep.Unknown, rep.Sessions)
	}
	if sum := rep.Summary(); !strings.Contains(sum, "unknown: 1\n  "+reg) || !strings.Contains(sum, "1 long-lived") {
		t.Fatalf("summary does not count and name the unknown session:\n%s", sum)
	}
}

func TestCheckerComparesContentNotOnlyVersions(t *testing.T) {
	// Two acknowledged writes answered with the same version and different
	// content: porcupine would catch it, so check with it out of the way
	// (a history it cannot finish) that the fallback checks do too.
	twoWrites := []Op{
		put(0, "a", 1, 0, 1),
		put(1, "b", 2, 2, 3),
		put(2, "c", 2, 2.5, 3.5), // concurrent with b, same version: a split brain
		final(get(3, "c", 2, 10, 10.1)),
	}
	v := Check(HistoryOf(twoWrites), CheckConfig{})
	if !slices.Contains(kinds(v), ContentMismatch) || v.Pass {
		t.Fatalf("two acknowledged writes at one version not caught: %+v", v)
	}
	i := slices.IndexFunc(v.Anomalies, func(a Anomaly) bool { return a.Kind == ContentMismatch })
	if d := v.Anomalies[i].Detail; !strings.Contains(d, "one of them is lost") {
		t.Errorf("detail does not say a write is lost: %s", d)
	}
	// Two reads of one version with different content, neither ordered
	// before the other (no stale-read by versions), with an undecidable
	// history beside them.
	reads := append(concurrentHistory(40), []Op{
		get(7, "w1", 50, 20, 30),
		get(8, "w2", 50, 21, 29),
	}...)
	for i := range reads {
		reads[i].Index = i
	}
	s := newSessionHistory(ptrs(reads))
	if got := s.contentMismatches(); len(got) != 1 || !strings.Contains(got[0].Detail, "one version, two contents") {
		t.Fatalf("two reads of v50 with different content not caught: %+v", got)
	}
	// The final read has the acknowledged version but other content.
	final2 := []Op{put(0, "a", 1, 0, 1), put(1, "b", 2, 2, 3), final(get(2, "a", 2, 10, 10.1))}
	if v := Check(HistoryOf(final2), CheckConfig{}); !slices.Contains(kinds(v), LostWrite) || !slices.Contains(kinds(v), ContentMismatch) {
		t.Fatalf("a final read of v2 with v1's content not caught: %+v", v)
	}
	// Content no request wrote, and content older than its version allows.
	phantom := []Op{put(0, "a", 1, 0, 1), get(1, "zz", 2, 2, 3), final(get(2, "a", 1, 10, 10.1))}
	if v := Check(HistoryOf(phantom), CheckConfig{}); !slices.Contains(kinds(v), ContentMismatch) {
		t.Fatalf("content no request wrote not caught: %+v", v)
	}
	early := []Op{put(0, "a", 1, 0, 1), put(0, "b", 2, 2, 3), get(1, "b", 1, 4, 5), final(get(2, "b", 2, 10, 10.1))}
	if v := Check(HistoryOf(early), CheckConfig{}); !slices.Contains(kinds(v), ContentMismatch) {
		t.Fatalf("content answered at a version before it was written not caught: %+v", v)
	}
	// A patch's value with another put than the one it was acknowledged on.
	patched := []Op{
		put(0, "a", 1, 0, 1),
		{Client: 1, Kind: OpPatch, Session: reg, Value: "p", Call: sec(2), Return: sec(3), Outcome: OK, Version: 2, Put: "a", Patch: "p"},
		put(0, "b", 3, 4, 5),
		{Client: 1, Kind: OpGet, Session: reg, Call: sec(6), Return: sec(7), Outcome: OK, Version: 4, Put: "b", Patch: "p"},
		final(get(2, "b", 3, 10, 10.1)),
	}
	if v := Check(HistoryOf(patched), CheckConfig{}); !slices.Contains(kinds(v), ContentMismatch) {
		t.Fatalf("a patch's value on another put not caught: %+v", v)
	}
	// Expiring sessions: one create, so one content at one version.
	exp := "chaos-seed-0-exp-c00-00000"
	create := Op{Kind: OpCreate, Session: exp, Value: "e", IdleTimeout: sec(20), Call: sec(0), Return: sec(0.1), Outcome: OK, Version: 1, Put: "e"}
	other := Op{Kind: OpGet, Session: exp, Call: sec(1), Return: sec(1.1), Outcome: OK, Version: 1, Put: "f"}
	if v := Check(HistoryOf([]Op{create, other}), CheckConfig{}); !slices.Equal(kinds(v), []AnomalyKind{ContentMismatch}) {
		t.Fatalf("an expiring session read with other content not caught: %+v", v)
	}
	// A clean history with patches and deletes raises none.
	clean := []Op{
		put(0, "a", 1, 0, 1),
		{Client: 1, Kind: OpPatch, Session: reg, Value: "p", Call: sec(2), Return: sec(3), Outcome: OK, Version: 2, Put: "a", Patch: "p"},
		{Client: 1, Kind: OpGet, Session: reg, Call: sec(4), Return: sec(5), Outcome: OK, Version: 2, Put: "a", Patch: "p"},
		{Client: 1, Kind: OpDelete, Session: reg, Call: sec(5.5), Return: sec(6), Outcome: OK},
		put(0, "b", 4, 7, 8),
		final(get(2, "b", 4, 10, 10.1)),
	}
	if v := Check(HistoryOf(clean), CheckConfig{}); !v.Pass {
		t.Fatalf("a clean history failed: %+v", v)
	}
}

// ptrs returns pointers to ops' elements.
func ptrs(ops []Op) []*Op {
	out := make([]*Op, len(ops))
	for i := range ops {
		out[i] = &ops[i]
	}
	return out
}

// copyRead is the read of an owner's own copy after settling.
func copyRead(role, node, value string, v uint64) Op {
	op := final(get(9, value, v, 11, 11.1))
	op.Copy, op.Node = role, node
	return op
}

func TestCheckerComparesTheOwnersCopies(t *testing.T) {
	base := []Op{put(0, "a", 1, 0, 1), put(1, "b", 2, 2, 3), final(get(2, "b", 2, 10, 10.1))}
	same := append(slices.Clone(base), copyRead(CopyPrimary, "n1", "b", 2), copyRead(CopyBuddy, "n2", "b", 2))
	v := Check(HistoryOf(same), CheckConfig{})
	if !v.Pass || v.Copies != 2 {
		t.Fatalf("copies equal to the final state failed: %+v", v)
	}
	// The buddy kept an older version.
	behind := append(slices.Clone(base), copyRead(CopyPrimary, "n1", "b", 2), copyRead(CopyBuddy, "n2", "a", 1))
	if v := Check(HistoryOf(behind), CheckConfig{}); !slices.Equal(kinds(v), []AnomalyKind{DivergentCopy}) || !strings.Contains(v.Anomalies[0].Detail, "buddy's own copy on n2") {
		t.Fatalf("a buddy copy behind the final state not caught: %+v", v)
	}
	// The buddy has the version, with other content.
	other := append(slices.Clone(base), copyRead(CopyPrimary, "n1", "b", 2), copyRead(CopyBuddy, "n2", "x", 2))
	if v := Check(HistoryOf(other), CheckConfig{}); !slices.Equal(kinds(v), []AnomalyKind{DivergentCopy}) {
		t.Fatalf("a buddy copy with other content not caught: %+v", v)
	}
	// A copy that could not be read fails the run.
	unread := copyRead(CopyBuddy, "n2", "", 0)
	unread.Outcome, unread.Error = Indeterminate, "unreachable"
	if v := Check(HistoryOf(append(slices.Clone(base), unread)), CheckConfig{}); !slices.Equal(kinds(v), []AnomalyKind{Unreadable}) {
		t.Fatalf("an unread copy not reported: %+v", v)
	}
}

// fakeNode is an in-memory stand-in for a node's HTTP API: one register
// per session, as the model describes it, with POST creates, logout of a
// principal (a long-lived session's principal is its id), and retries by
// Idempotency-Key. With loseEvery > 0 it answers 503 to every
// loseEvery-th write it carries out, as a node whose replication went
// unanswered does, so that the workload retries.
type fakeNode struct {
	loseEvery int

	mu       sync.Mutex
	sessions map[string]*register
	keys     map[string]applied // Idempotency-Key → what the write made
	writes   int
	posts    int
}

// applied is a write a fake node carried out under an Idempotency-Key.
type applied struct {
	id  string
	ver uint64
}

// ServeHTTP answers the workload's requests.
func (f *fakeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys == nil {
		f.keys = map[string]applied{}
	}
	if id, ok := strings.CutPrefix(r.URL.Path, "/chaos/app/"); ok {
		// The chaos app: the session is the one the cookie names, read
		// or patched as through the HTTP API (the middleware sends no
		// Idempotency-Key or If-Match).
		if c, err := r.Cookie("tandem_session"); err != nil || c.Value != id || r.Header.Get("Idempotency-Key") != "" || r.Header.Get("If-Match") != "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.URL.Path = "/v1/sessions/" + id
	}
	if name, ok := strings.CutPrefix(r.URL.Path, "/v1/principals/"); ok {
		id := strings.TrimSuffix(name, "/sessions")
		n := 0
		if s := f.sessions[id]; s != nil && s.Live {
			*s = register{Ver: s.Ver + 1}
			n = 1
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"principal": id, "deleted": n})
		return
	}
	id := strings.TrimPrefix(r.URL.Path, "/v1/sessions/")
	if r.Method == http.MethodPost {
		f.posts++
		id = fmt.Sprintf("posted-session-%04d", f.posts)
	}
	s := f.sessions[id]
	if s == nil {
		s = &register{}
		f.sessions[id] = s
	}
	answer := func(status int) {
		a, b, c := splitPatch(s.Patch)
		attrs := map[string]any{"put": s.Put}
		if a != "" {
			attrs["patch"] = a
		}
		nest := map[string]any{}
		if b != "" {
			nest[attrB] = b
		}
		if c != "" {
			nest[attrC] = c
		}
		if len(nest) > 0 {
			attrs[attrNest] = nest
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "version": s.Ver, "attributes": attrs})
	}
	key := r.Header.Get("Idempotency-Key")
	if a, ok := f.keys[key]; ok && key != "" {
		// A retry: the session as the write made it, if nothing since.
		if a.id != id || a.ver != s.Ver {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if r.Method == http.MethodDelete {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		answer(http.StatusOK)
		return
	}
	// If-Match on a write: 412 unless the session is live at that version.
	if m := r.Header.Get("If-Match"); m != "" && r.Method != http.MethodGet {
		if v, _ := strconv.ParseUint(strings.Trim(m, `"`), 10, 64); !s.Live || v != s.Ver {
			w.WriteHeader(http.StatusPreconditionFailed)
			return
		}
	}
	wrote := func() bool {
		if key != "" {
			f.keys[key] = applied{id: id, ver: s.Ver}
		}
		f.writes++
		if f.loseEvery > 0 && f.writes%f.loseEvery == 0 {
			// Carried out, and answered as maybe not.
			w.WriteHeader(http.StatusServiceUnavailable)
			return false
		}
		return true
	}
	switch r.Method {
	case http.MethodGet:
		if !s.Live {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		answer(http.StatusOK)
	case http.MethodPut, http.MethodPost:
		var b struct {
			Attributes map[string]string `json:"attributes"`
		}
		_ = json.Unmarshal(body, &b)
		*s = register{Live: true, Ver: s.Ver + 1, Put: b.Attributes["put"]}
		if wrote() {
			answer(http.StatusOK)
		}
	case http.MethodPatch:
		if !s.Live {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		var b struct {
			Patch *string            `json:"patch"`
			Nest  map[string]*string `json:"n"`
		}
		var present map[string]json.RawMessage
		_ = json.Unmarshal(body, &b)
		_ = json.Unmarshal(body, &present)
		s.Ver++
		if _, ok := present["patch"]; ok {
			s.Patch = patched(s.Patch, "", deref(b.Patch), b.Patch == nil)
		}
		for name, v := range b.Nest { // a merge into "n": its other field stays
			s.Patch = patched(s.Patch, name, deref(v), v == nil)
		}
		if wrote() {
			answer(http.StatusOK)
		}
	case http.MethodDelete:
		if !s.Live {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		*s = register{Ver: s.Ver + 1}
		if wrote() {
			w.WriteHeader(http.StatusNoContent)
		}
	}
}

func TestRotationBoundsEverySessionsHistory(t *testing.T) {
	srv := httptest.NewServer(&fakeNode{sessions: map[string]*register{}})
	defer srv.Close()
	nodes := []NodeInfo{{Name: "n1", HTTP: strings.TrimPrefix(srv.URL, "http://")}}
	h := NewHistory()
	const perSession, clients, maxOps = 25, 4, 300
	w := NewWorkload(nodes, h, WorkloadConfig{Seed: 7, Clients: clients, Sessions: 3, OpsPerSession: perSession, MaxThink: time.Microsecond, MaxOps: maxOps})
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w.Run(ctx)
	w.FinalReads(ctx)

	counts := map[string]int{}
	for _, op := range h.Ops() {
		if !op.expiring() && !op.Final {
			counts[op.Session]++
		}
	}
	ids := w.Sessions()
	if len(counts) != len(ids) {
		t.Fatalf("%d sessions in the history, the workload names %d", len(counts), len(ids))
	}
	total := 0
	for id, n := range counts {
		total += n
		if n > perSession {
			t.Errorf("%s got %d requests, more than %d", id, n, perSession)
		}
	}
	// 4 clients × 300 requests, most of them to the 3 slots: far more than
	// 3 × 25, so every slot moved on many times.
	if min := total / perSession; len(ids) < min {
		t.Fatalf("%d requests over only %d sessions; want at least %d", total, len(ids), min)
	}
	if !slices.Contains(ids, sessionID(7, 0, 0)) || !slices.Contains(ids, sessionID(7, 0, 1)) {
		t.Fatalf("slot 0 did not move from its first id to the next: %v", ids)
	}
	v := Check(h, CheckConfig{})
	if !v.Pass || v.Sessions != len(ids) || len(v.Unknown) != 0 {
		t.Fatalf("a rotated history of a correct store: %s, %d sessions checked (want %d), unknown %v, anomalies %v", v, v.Sessions, len(ids), v.Unknown, v.Anomalies)
	}
}

// The workload's wider requests, against a correct store that loses one
// answer in seven: a write whose answer was lost is sent again with its
// Idempotency-Key and checked as one op spanning its attempts; POST
// creates are named by their answers; logouts delete; nested merges and
// patches of all three values are read back. The history passes, and
// each kind of request is in it.
func TestTheWiderWorkloadOnACorrectStorePasses(t *testing.T) {
	srv := httptest.NewServer(&fakeNode{sessions: map[string]*register{}, loseEvery: 7})
	defer srv.Close()
	nodes := []NodeInfo{{Name: "n1", HTTP: strings.TrimPrefix(srv.URL, "http://")}, {Name: "n2", HTTP: strings.TrimPrefix(srv.URL, "http://")}}
	h := NewHistory()
	w := NewWorkload(nodes, h, WorkloadConfig{Seed: 11, Clients: 4, Sessions: 4, MaxThink: time.Microsecond, MaxOps: 400, MinIdle: time.Hour, MaxIdle: time.Hour, App: 0.2}) // the fake never expires
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w.Run(ctx)
	w.FinalReads(ctx)
	var retried, posted, loggedOut, nested, all, app int
	for _, op := range h.Ops() {
		if op.App && op.Outcome == OK && op.Version > 0 {
			app++
		}
		switch {
		case op.Attempts > 1 && op.Outcome == OK:
			retried++
		case op.Post && op.Outcome == OK && !isExpiringID(op.Session):
			posted++
		case op.Kind == OpLogout && op.Outcome == OK && op.Deleted == 1:
			loggedOut++
		}
		if _, b, c := splitPatch(op.Patch); op.Outcome == OK && b != "" && c != "" {
			nested++
		}
		if op.Kind == OpPatch && op.Attr == attrAll && op.Outcome == OK {
			all++
		}
	}
	if retried == 0 || posted == 0 || loggedOut == 0 || nested == 0 || all == 0 || app == 0 {
		t.Fatalf("retried %d, posted %d, logged out %d, answers with both nested values %d, patches of all three %d, answered through the app %d: want each > 0", retried, posted, loggedOut, nested, all, app)
	}
	v := Check(h, CheckConfig{})
	if !v.Pass || len(v.Warnings) != 0 {
		t.Fatalf("the wider workload on a correct store: %s, warnings %v, anomalies %v", v, v.Warnings, v.Anomalies)
	}
}

// A retried write that a store carried out twice is caught: the retry
// must find the write its Idempotency-Key made, not make another.
func TestAWriteCarriedOutTwiceByItsRetryIsCaught(t *testing.T) {
	ops := []Op{
		put(0, "a", 1, 0, 1),
		{Client: 1, Kind: OpPatch, Session: reg, Value: "p", Key: "k", Attempts: 2, Call: sec(2), Return: sec(4), Outcome: OK, Version: 3, Put: "a", Patch: "p"},
		{Client: 0, Kind: OpGet, Session: reg, Call: sec(2.5), Return: sec(2.6), Outcome: OK, Version: 2, Put: "a", Patch: "p"},
		final(get(2, "a", 3, 10, 10.1)),
	}
	ops[3].Patch = "p"
	if v := Check(HistoryOf(ops), CheckConfig{}); v.Pass {
		t.Fatalf("a patch applied at v2 and again at v3 by its retry passed: %+v", v)
	}
}

// deref is *v, or "" for nil.
func deref(v *string) string {
	if v == nil {
		return ""
	}
	return *v
}

// The history keeps each op's value names for the whole run: a name cut
// out of a padded value must not keep the padding (up to -value-size
// bytes) alive with it. (A 60-minute run with 64 KiB values grew the
// harness by some 0.6 GB a minute until the machine stalled.)
func TestAValuesNameDoesNotKeepItsPaddingAlive(t *testing.T) {
	padded := padValue("c1-7", 64<<10)
	name := unpadValue(padded)
	if name != "c1-7" {
		t.Fatalf("name %q", name)
	}
	if unsafe.StringData(name) == unsafe.StringData(padded) {
		t.Fatal("the name shares the padded value's bytes: the history would keep 64 KiB per op")
	}
}
