package chaos

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// AnomalyKind names a broken guarantee.
type AnomalyKind string

// The anomalies the checker finds.
const (
	// LostWrite: an acknowledged write is not in the final state and no
	// later write or delete superseded it; or an expiring session vanished
	// before its idle deadline.
	LostWrite AnomalyKind = "lost-write"
	// StaleRead: a read returned an older version (or not-found) after a
	// newer acknowledged write had completed.
	StaleRead AnomalyKind = "stale-read"
	// ResurrectedDelete: a read returned content written before an
	// acknowledged delete, after that delete completed.
	ResurrectedDelete AnomalyKind = "resurrected-delete"
	// ExpiredServed: a read returned a session after its idle deadline,
	// allowing for clock skew and the buddy's documented grace.
	ExpiredServed AnomalyKind = "expired-served"
	// NotLinearizable: porcupine found no linearization of a session's
	// history against the versioned-register model.
	NotLinearizable AnomalyKind = "not-linearizable"
	// Unreadable: a session written during the run could not be read back
	// from any node after healing and settling, or its primary's or
	// buddy's own copy could not be read.
	Unreadable AnomalyKind = "unreadable"
	// ContentMismatch: an answer's version and content do not go
	// together: another answer gave the same version with other content
	// (two acknowledged writes at one version: one of them is lost), the
	// content is none that a request of the session wrote, a write's answer
	// does not hold its own value, or the content was written at a later
	// version than the answer names. Versions alone would pass these.
	ContentMismatch AnomalyKind = "content-mismatch"
	// DivergentCopy: after healing and settling, the primary's or the
	// buddy's own copy of a session is not the session's final state
	// (the one the final reads through every node agree on and the
	// checks hold against the model).
	DivergentCopy AnomalyKind = "divergent-copy"
)

// Anomaly is one broken guarantee, with the ops that show it.
type Anomaly struct {
	// Kind names the broken guarantee.
	Kind AnomalyKind `json:"kind"`
	// Session is the session concerned.
	Session string `json:"session"`
	// At is when it was observed, since the history began.
	At time.Duration `json:"at"`
	// Ops are the indexes of the ops that show it.
	Ops []int `json:"ops,omitempty"`
	// Detail says what happened, in words.
	Detail string `json:"detail"`
	// Visualization is porcupine's HTML page of the session, for
	// NotLinearizable, relative to the report directory.
	Visualization string `json:"visualization,omitempty"`

	// loss marks the anomalies of the shape a loss of the session leaves
	// (it went back to nothing), which a reported loss of its partition
	// may explain: see explainedByLoss.
	loss bool
}

// String renders the anomaly on one line.
func (a Anomaly) String() string {
	return fmt.Sprintf("%s %s at %s: %s", a.Kind, a.Session, a.At.Round(time.Millisecond), a.Detail)
}

// CheckConfig tunes the checker.
type CheckConfig struct {
	// MaxSkew is the largest clock offset any node had during the run;
	// expiry checks allow for it twice (the writer's and the reader's).
	MaxSkew time.Duration
	// ExpiryGrace is how long after its deadline a node may still serve a
	// session by design: a buddy serves a backup copy for 2 × the replica's
	// TouchInterval past its own idea of the deadline (default 2s).
	ExpiryGrace time.Duration
	// LinearizabilityTimeout bounds porcupine's search per session; past
	// it the session's result is Unknown, and an unknown session fails
	// the run: a check that did not finish proved nothing (default 30s).
	LinearizabilityTimeout time.Duration
	// Parallel is how many sessions porcupine checks at once (default
	// GOMAXPROCS).
	Parallel int
	// VisualizeDir, if set, receives porcupine's visualization of every
	// session that is not linearizable, as lin-<session>.html.
	VisualizeDir string
	// Faults are drawn in the visualizations, if given.
	Faults []FaultEvent
	// Lost are the nodes' reports of partitions lost with both owners
	// (LossWatcher). A session whose partition one reports lost may have
	// lost its acknowledged writes: its anomalies are allowed, not
	// reported, when the loss explains every one (explainedByLoss); the
	// session is then counted in Verdict.LostReported. Any other loss is
	// an anomaly.
	Lost []LostReport
	// Partitions is the ring's partition count, to find a session's
	// partition (default ring.DefaultPartitions).
	Partitions int
	// TombstoneTTL is how long the nodes keep a deleted session's
	// tombstone, and with it its version (default 5 minutes, Tandem's):
	// a session written again after that starts over at v1, by design, so
	// the checker takes it from then on as a new life of the session
	// (lives).
	TombstoneTTL time.Duration
}

// Verdict is the checker's answer.
type Verdict struct {
	// Pass is true when no anomaly was found and every session's check
	// finished: an unknown session fails the run.
	Pass bool `json:"pass"`
	// Anomalies lists every anomaly found, in order of time.
	Anomalies []Anomaly `json:"anomalies"`
	// Linearizability gives porcupine's result per session: Ok, Illegal
	// or Unknown (timed out).
	Linearizability map[string]porcupine.CheckResult `json:"linearizability"`
	// Unknown names the sessions whose linearizability check did not
	// finish (porcupine timed out, or gave no answer): each fails the run.
	Unknown []string `json:"unknown,omitempty"`
	// Sessions counts the long-lived sessions checked (porcupine and the
	// fallback checks), Expiring the expiring ones (their own checks).
	Sessions int `json:"sessions"`
	Expiring int `json:"expiring"`
	// Copies counts the owners' own copies read after settling (Op.Copy)
	// and compared with the sessions' final state.
	Copies int `json:"copies"`
	// Warnings are findings that are not anomalies: requests the workload
	// should not have provoked.
	Warnings []string `json:"warnings,omitempty"`
	// LostReported names the sessions lost with both owners, as reported:
	// their partition was reported lost (CheckConfig.Lost), and that loss
	// explains every anomaly their checks found. Allowed lists those
	// anomalies, which do not fail the run.
	LostReported []string  `json:"lost_reported,omitempty"`
	Allowed      []Anomaly `json:"allowed,omitempty"`
}

// String is "PASS" or "FAIL".
func (v Verdict) String() string {
	if v.Pass {
		return "PASS"
	}
	return "FAIL"
}

// withDefaults fills zero fields.
func (cfg CheckConfig) withDefaults() CheckConfig {
	if cfg.ExpiryGrace == 0 {
		cfg.ExpiryGrace = 2 * time.Second
	}
	if cfg.LinearizabilityTimeout == 0 {
		cfg.LinearizabilityTimeout = 30 * time.Second
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = runtime.GOMAXPROCS(0)
	}
	if cfg.TombstoneTTL == 0 {
		cfg.TombstoneTTL = 5 * time.Minute
	}
	return cfg
}

// Check checks a history and returns the verdict.
func Check(h *History, cfg CheckConfig) Verdict {
	cfg = cfg.withDefaults()
	ops := h.Ops()
	bySession := map[string][]*Op{}
	copies := map[string][]*Op{}
	v := Verdict{Linearizability: map[string]porcupine.CheckResult{}}
	invalid := map[string]int{}
	for i := range ops {
		op := &ops[i]
		switch {
		case op.Copy != "":
			copies[op.Session] = append(copies[op.Session], op)
			v.Copies++
		case op.Outcome == Unsent:
			// never reached a node
		case op.Outcome == Invalid:
			invalid[fmt.Sprintf("%s got %s", op.Kind, op.Error)]++
		default:
			bySession[op.Session] = append(bySession[op.Session], op)
		}
	}
	for _, msg := range slices.Sorted(maps.Keys(invalid)) {
		v.Warnings = append(v.Warnings, fmt.Sprintf("%d× %s: the workload should not provoke it", invalid[msg], msg))
	}
	last := splitLives(bySession, cfg)
	sessions := slices.Sorted(maps.Keys(bySession))
	var registers []string
	for _, id := range sessions {
		sops := bySession[id]
		if sessionExpiring(sops) {
			v.Expiring++
			v.Anomalies = append(v.Anomalies, checkExpiring(id, sops, cfg)...)
			continue
		}
		registers = append(registers, id)
		s := newSessionHistory(sops)
		lastLife := id == baseSession(id) && last[id] == "" || last[baseSession(id)] == id
		if lastLife {
			// The final reads and the owners' copies are of the
			// session's last life; an earlier one ended in a deletion.
			v.Anomalies = append(v.Anomalies, s.lostWrites()...)
		}
		v.Anomalies = append(v.Anomalies, s.staleReads()...)
		v.Anomalies = append(v.Anomalies, s.resurrections()...)
		v.Anomalies = append(v.Anomalies, s.contentMismatches()...)
		if lastLife {
			v.Anomalies = append(v.Anomalies, checkCopies(baseSession(id), sops, copies[baseSession(id)])...)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(copies)) {
		if _, ok := bySession[id]; !ok {
			v.Anomalies = append(v.Anomalies, checkCopies(id, nil, copies[id])...)
		}
	}
	v.Sessions = len(registers)
	results := checkAllLinearizable(registers, bySession, cfg)
	for i, id := range registers {
		res := results[i]
		v.Linearizability[id] = res.result
		if res.anomaly != nil {
			v.Anomalies = append(v.Anomalies, *res.anomaly)
		} else if res.result != porcupine.Ok {
			v.Unknown = append(v.Unknown, id)
		}
	}
	if len(cfg.Lost) > 0 {
		allowLosses(&v, ops, bySession, cfg)
	}
	slices.SortStableFunc(v.Anomalies, func(a, b Anomaly) int { return cmp.Compare(a.At, b.At) })
	v.Pass = len(v.Anomalies) == 0 && len(v.Unknown) == 0
	return v
}

// allowLosses moves out of v's anomalies and unknown sessions those of
// sessions lost with both owners, as reported: sessions whose partition a
// node reported lost, when that loss explains everything found wrong with
// them (explainedByLoss). They are counted in v.LostReported, their
// anomalies listed in v.Allowed.
func allowLosses(v *Verdict, ops []Op, bySession map[string][]*Op, cfg CheckConfig) {
	losses := lossWindows(cfg.Lost)
	found := map[string][]Anomaly{}
	for _, a := range v.Anomalies {
		found[a.Session] = append(found[a.Session], a)
	}
	for _, id := range v.Unknown {
		if _, ok := found[id]; !ok {
			found[id] = nil
		}
	}
	allowed := map[string]bool{}
	for _, id := range slices.Sorted(maps.Keys(found)) {
		ws := losses[partitionOf(cfg.Partitions, baseSession(id))]
		if len(ws) == 0 {
			continue
		}
		if explainedByLoss(bySession[id], ops, found[id], ws, sessionExpiring(bySession[id]), cfg) {
			allowed[id] = true
			v.LostReported = append(v.LostReported, id)
			v.Allowed = append(v.Allowed, found[id]...)
		}
	}
	v.Anomalies = slices.DeleteFunc(v.Anomalies, func(a Anomaly) bool { return allowed[a.Session] })
	v.Unknown = slices.DeleteFunc(v.Unknown, func(id string) bool { return allowed[id] })
	slices.SortStableFunc(v.Allowed, func(a, b Anomaly) int { return cmp.Compare(a.At, b.At) })
}

// linResult is porcupine's answer for one session.
type linResult struct {
	result  porcupine.CheckResult
	anomaly *Anomaly
}

// checkAllLinearizable runs porcupine on the sessions ids, cfg.Parallel at
// a time, and returns their results in the same order.
func checkAllLinearizable(ids []string, bySession map[string][]*Op, cfg CheckConfig) []linResult {
	out := make([]linResult, len(ids))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(cfg.Parallel, len(ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i].result, out[i].anomaly = checkLinearizable(ids[i], bySession[ids[i]], cfg)
			}
		}()
	}
	for i := range ids {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// sessionHistory indexes one register session's ops for the checks.
type sessionHistory struct {
	id      string
	ops     []*Op
	byValue map[string]*Op // the write that stored each value
}

// newSessionHistory indexes ops.
func newSessionHistory(ops []*Op) *sessionHistory {
	s := &sessionHistory{ops: ops, byValue: map[string]*Op{}}
	if len(ops) > 0 {
		s.id = ops[0].Session
	}
	for _, op := range ops {
		if op.Kind.writes() && op.Value != "" {
			s.byValue[op.Value] = op
		}
	}
	return s
}

// writer returns the write whose content a successful read saw: its patch
// if any, else its put.
func (s *sessionHistory) writer(read *Op) *Op {
	a, b, c := splitPatch(read.Patch)
	for _, v := range []string{a, b, c} {
		if v != "" {
			return s.byValue[v]
		}
	}
	return s.byValue[read.Put]
}

// acked reports whether op is a write that was acknowledged.
func acked(op *Op) bool { return op.Kind.writes() && op.Outcome == OK }

// tombstone follows a session's ops in call order and tells from when
// its tombstone, if it has one, may have been swept (splitLives).
//
// since is the earliest time the session may have been deleted with
// nothing making it live since (-1: it may be live). A delete or logout
// acknowledged makes a tombstone; one answered indeterminate may have
// (session 633 of the 60-minute run at e9d1ae5: a logout answered
// indeterminate, and a put 357 s later answered v1). A write acknowledged
// makes the session live. A write answered indeterminate may have:
// until an answer sent after it shows the session absent (absent), the
// tombstone is in doubt (pending); once one does, the write did not
// apply before it, or a delete or logout sent since (the latest,
// lastDeleter) removed it, and the tombstone is that one's at the
// earliest (session 298 of the 30-minute run at 803bf8d: a logout
// indeterminate at 699 s, a put indeterminate at 809 s, the session
// absent from 816 s on, and a put answering v1 at 1,051 s). A write
// acknowledged while the deletion was still in flight (sent before the
// deletion's answer) may have come before it: it leaves the tombstone in
// doubt the same way, and an answer sent after it showing the session
// absent shows the deletion came after it (session 450 of the 72-minute
// run at 15f0ad6: a delete sent at 3,398.460 s and a put sent at
// 3,398.468 s, both acknowledged, the put as v5, the session absent from
// 3,501 s on, and a put answering v1 at 3,774 s). A write
// that would apply after an answer sent past its own answer is out of
// the model: a node does not carry a write out after answering it (F9).
type tombstone struct {
	since        time.Duration
	deleting     time.Duration // the latest answer to a deletion since, 0: none
	pending      bool
	pendingUntil time.Duration // the latest answer to a write in doubt
	lastDeleter  time.Duration // the latest delete or logout sent while pending, -1: none
}

func newTombstone() tombstone { return tombstone{since: -1, lastDeleter: -1} }

// swept reports whether, at at, the tombstone may have been swept, ttl
// after it was made.
func (t *tombstone) swept(at, ttl time.Duration) bool {
	return t.since >= 0 && !t.pending && at > t.since+ttl
}

// see takes the next op in call order.
func (t *tombstone) see(op *Op) {
	makesLive := op.Kind.writes() && op.Kind != OpDelete && op.Kind != OpLogout
	switch {
	case deleted(op):
		*t = tombstone{since: op.Call, deleting: op.Return, lastDeleter: -1}
	case mayDelete(op) && t.pending:
		t.lastDeleter = op.Call
		t.deleting = max(t.deleting, op.Return)
	case mayDelete(op) && t.since < 0:
		t.since, t.deleting = op.Call, op.Return
	case makesLive && op.Outcome == OK && t.since >= 0 && op.Call < t.deleting:
		// Acknowledged while a deletion was in flight: before it or
		// after it, as the answers that follow tell.
		t.pending, t.pendingUntil = true, max(t.pendingUntil, op.Return)
	case makesLive && op.Outcome == OK:
		*t = newTombstone()
	case makesLive && op.Outcome == Indeterminate && t.since >= 0:
		t.pending, t.pendingUntil = true, max(t.pendingUntil, op.Return)
	default:
		t.resolve(op)
	}
}

// resolve ends the doubt a write in doubt left (pending) once an answer
// sent after that write's shows the session absent: the write did not
// leave it live, or a delete or logout sent since (lastDeleter) removed
// it, and the tombstone is that one's at the earliest. splitLives calls
// it before it asks whether the tombstone may have been swept, since the
// answer that shows the absence may be the new life's first (a write
// answered v1).
func (t *tombstone) resolve(op *Op) {
	if t.pending && absent(op) && op.Call > t.pendingUntil {
		t.pending, t.since = false, max(t.since, t.lastDeleter)
		t.lastDeleter = -1
	}
}

// absent reports whether op's answer shows the session was not live: a
// not-found to a read, an unconditional patch or a delete, a logout
// that deleted nothing, or a write answered v1, which the nodes give
// only to a session with no copy left, not even a tombstone (session 609
// of the 72-minute run at 4bf1d3b: a put in doubt 277 s after a delete,
// then a put answered v1 at 323 s, after the tombstone's 300 s).
func absent(op *Op) bool {
	switch {
	case op.Kind == OpLogout:
		return op.Outcome == OK && op.Deleted == 0
	case op.Outcome == OK && op.Version == 1 && op.Kind.writes() && op.Kind != OpDelete:
		return true
	}
	return op.Outcome == NotFound && op.IfVersion == 0 && (op.Kind == OpGet || op.Kind == OpPatch || op.Kind == OpDelete)
}

// mayDelete reports whether op is a delete, or a logout, that may have
// taken effect.
func mayDelete(op *Op) bool {
	switch op.Kind {
	case OpDelete:
		return op.Outcome == OK || op.Outcome == Indeterminate
	case OpLogout:
		return op.Outcome == OK && op.Deleted > 0 || op.Outcome == Indeterminate
	}
	return false
}

// deleted reports whether op is a delete, or a logout, acknowledged as
// having deleted the session.
func deleted(op *Op) bool {
	return op.Outcome == OK && (op.Kind == OpDelete || op.Kind == OpLogout && op.Deleted > 0)
}

// lifeSep joins a session's id and the number of a later life of it
// (splitLives): "id~life2".
const lifeSep = "~life"

// baseSession returns the session id of key, a session id or one of its
// later lives.
func baseSession(key string) string {
	id, _, _ := strings.Cut(key, lifeSep)
	return id
}

// splitLives splits, in bySession, each long-lived session's ops into
// lives at expired tombstones, and returns each split session's last
// life's key. A session deleted (a delete or a logout acknowledged, or
// one indeterminate, which may have deleted it: mayDelete), then found
// absent by every request answered since, may start over at
// v1 once its tombstone, which kept the version, is swept: from
// cfg.TombstoneTTL after the deletion by the clock of the node that
// stamped it, read by the clock of the node that sweeps it, which may be
// up to twice the skew ahead. So from the first request sent more than
// TombstoneTTL less twice the skew after the deletion was sent, if the
// session then starts over (startsOver), its ops are a new life, under
// the key id~lifeN, checked as a session of its own (ops cloned, with
// that Session); if the tombstone was still there, the life goes on. A
// write that may have made the session live in between (one answered, or
// indeterminate and not shown absent since; not a delete or a logout)
// keeps the life whole (tombstone).
func splitLives(bySession map[string][]*Op, cfg CheckConfig) map[string]string {
	last := map[string]string{}
	for _, id := range slices.Sorted(maps.Keys(bySession)) {
		ops := bySession[id]
		if sessionExpiring(ops) {
			continue
		}
		byCall := slices.Clone(ops)
		slices.SortStableFunc(byCall, func(a, b *Op) int { return cmp.Compare(a.Call, b.Call) })
		var lives [][]*Op
		start, t := 0, newTombstone()
		for i, op := range byCall {
			t.resolve(op)
			if t.swept(op.Call, cfg.TombstoneTTL-2*cfg.MaxSkew) && startsOver(byCall[i:]) {
				lives = append(lives, byCall[start:i])
				start, t = i, newTombstone()
			}
			t.see(op)
		}
		if len(lives) == 0 {
			continue
		}
		lives = append(lives, byCall[start:])
		bySession[id] = lives[0]
		for n, life := range lives[1:] {
			key := fmt.Sprintf("%s%s%d", id, lifeSep, n+2)
			cloned := make([]*Op, len(life))
			for j, op := range life {
				c := *op
				c.Session = key
				cloned[j] = &c
			}
			bySession[key] = cloned
			last[id] = key
		}
	}
	return last
}

// startsOver reports whether ops, in call order, show the session
// started over at v1 with their first: an answer at v1 before the next
// deletion, which the session's old life, whose versions a tombstone
// carries on, cannot give, and no answer at a later version returned
// before that v1 was sent. Such an answer shows the tombstone was still
// there: the old life went on, and a v1 after it has another cause (a
// reported loss; session 778 of the 60-minute run at 9efd854, v15 within
// the window the tombstone may have been swept in, then v1 after the
// partition was lost).
func startsOver(ops []*Op) bool {
	wentOn := time.Duration(-1) // the earliest return of an answer past v1
	for _, op := range ops {
		if deleted(op) {
			return false
		}
		if op.Outcome != OK || op.Kind != OpGet && !op.Kind.writes() || op.Kind == OpDelete || op.Version == 0 {
			continue
		}
		if op.Version == 1 {
			return wentOn < 0 || op.Call < wentOn
		}
		if wentOn < 0 || op.Return < wentOn {
			wentOn = op.Return
		}
	}
	return false
}

// sessionExpiring reports whether ops are those of an expiring session.
func sessionExpiring(ops []*Op) bool { return slices.ContainsFunc(ops, (*Op).expiring) }

// lostWrites finds acknowledged writes missing from the final reads.
func (s *sessionHistory) lostWrites() []Anomaly {
	var finals []*Op
	for _, op := range s.ops {
		if op.Final && op.Kind == OpGet && (op.Outcome == OK || op.Outcome == NotFound) {
			finals = append(finals, op)
		}
	}
	var out []Anomaly
	wrote := false
	for _, op := range s.ops {
		wrote = wrote || (op.Kind.writes() && op.Outcome != Conflict && op.Outcome != NotFound)
	}
	if len(finals) == 0 {
		if wrote {
			out = append(out, Anomaly{Kind: Unreadable, Session: s.id, At: s.ops[len(s.ops)-1].Return,
				Detail: "no node answered a read of the session after healing and settling"})
		}
		return out
	}
	for _, w := range s.ops {
		if !acked(w) || w.Kind == OpDelete || w.Kind == OpLogout {
			continue
		}
		for _, f := range finals {
			switch {
			case f.Outcome == OK && f.Version < w.Version:
				out = append(out, Anomaly{Kind: LostWrite, Session: s.id, At: f.Call, Ops: []int{w.Index, f.Index}, loss: true,
					Detail: fmt.Sprintf("op %d %s was acknowledged at v%d; the final read from %s answered v%d %s", w.Index, w.label(), w.Version, f.Node, f.Version, digest(f.Put, f.Patch))})
			case f.Outcome == OK && f.Version == w.Version && (f.Put != w.Put || f.Patch != w.Patch):
				out = append(out, Anomaly{Kind: LostWrite, Session: s.id, At: f.Call, Ops: []int{w.Index, f.Index}, loss: true,
					Detail: fmt.Sprintf("op %d %s was acknowledged as v%d %s; the final read from %s answered v%d with other content %s", w.Index, w.label(), w.Version, digest(w.Put, w.Patch), f.Node, f.Version, digest(f.Put, f.Patch))})
			case f.Outcome == NotFound && !s.deletedAfter(w):
				out = append(out, Anomaly{Kind: LostWrite, Session: s.id, At: f.Call, Ops: []int{w.Index, f.Index}, loss: true,
					Detail: fmt.Sprintf("op %d %s was acknowledged at v%d and no delete followed; the final read from %s answered not-found", w.Index, w.label(), w.Version, f.Node)})
			default:
				continue
			}
			break // one anomaly per lost write
		}
	}
	return out
}

// deletedAfter reports whether a delete may have taken effect after op
// was sent: one that did not complete before it, or an indeterminate one.
func (s *sessionHistory) deletedAfter(op *Op) bool {
	for _, d := range s.ops {
		if mayDelete(d) && (d.Outcome == Indeterminate || d.Return >= op.Call) {
			return true
		}
	}
	return false
}

// staleReads finds answers during the run that went back in time: a
// version lower than one already answered to a request that completed
// before this one was sent, or not-found with no delete since. Versions
// never go down, across deletes too, so either means state was lost (a
// read: StaleRead; a write that started over or claimed the session gone:
// LostWrite).
func (s *sessionHistory) staleReads() []Anomaly {
	byReturn := slices.Clone(s.ops)
	slices.SortFunc(byReturn, func(a, b *Op) int { return cmp.Compare(a.Return, b.Return) })
	byCall := slices.Clone(s.ops)
	slices.SortFunc(byCall, func(a, b *Op) int { return cmp.Compare(a.Call, b.Call) })
	var deletes []*Op
	for _, d := range s.ops {
		if mayDelete(d) {
			deletes = append(deletes, d)
		}
	}
	// deletedBetween reports whether a delete may have taken effect after
	// w was sent and before r was answered.
	deletedBetween := func(w, r *Op) bool {
		for _, d := range deletes {
			if d.Call <= r.Return && (d.Outcome == Indeterminate || d.Return >= w.Call) {
				return true
			}
		}
		return false
	}
	var out []Anomaly
	var newest *Op // the highest version answered by a request completed before r was sent
	next := 0
	for _, r := range byCall {
		for ; next < len(byReturn) && byReturn[next].Return < r.Call; next++ {
			if w := byReturn[next]; w.Outcome == OK && w.Version > 0 && (newest == nil || w.Version > newest.Version) {
				newest = w
			}
		}
		if r.Final || newest == nil || (r.Outcome != OK && r.Outcome != NotFound) || (r.Outcome == OK && r.Version == 0) {
			continue
		}
		kind, what := StaleRead, "read"
		if r.Kind.writes() {
			kind, what = LostWrite, "write"
		}
		seen := fmt.Sprintf("op %d %s had been answered with v%d", newest.Index, newest.label(), newest.Version)
		switch {
		case r.Outcome == OK && (r.Version < newest.Version || (r.Kind.writes() && r.Version == newest.Version)):
			out = append(out, Anomaly{Kind: kind, Session: s.id, At: r.Call, Ops: []int{newest.Index, r.Index}, loss: true,
				Detail: fmt.Sprintf("%s op %d %s via %s was answered with v%d %s after %s: the session went back in time", what, r.Index, r.label(), r.Node, r.Version, digest(r.Put, r.Patch), seen)})
		case r.Outcome == NotFound && !deletedBetween(newest, r):
			out = append(out, Anomaly{Kind: kind, Session: s.id, At: r.Call, Ops: []int{newest.Index, r.Index}, loss: true,
				Detail: fmt.Sprintf("%s op %d %s via %s was answered not-found after %s, with no delete since", what, r.Index, r.label(), r.Node, seen)})
		}
	}
	return out
}

// resurrections finds reads that returned content an acknowledged delete
// had removed.
func (s *sessionHistory) resurrections() []Anomaly {
	var out []Anomaly
	for _, r := range s.ops {
		if r.Kind != OpGet || r.Outcome != OK {
			continue
		}
		w := s.writer(r)
		if w == nil || !acked(w) {
			continue // indeterminate writes may land late: no proof
		}
		for _, d := range s.ops {
			if deleted(d) && w.Return < d.Call && d.Return < r.Call {
				out = append(out, Anomaly{Kind: ResurrectedDelete, Session: s.id, At: r.Call, Ops: []int{w.Index, d.Index, r.Index},
					Detail: fmt.Sprintf("op %d read %s (written by op %d) from %s after op %d deleted the session", r.Index, digest(r.Put, r.Patch), w.Index, r.Node, d.Index)})
				break
			}
		}
	}
	return out
}

// contentMismatches finds answers whose version and content do not go
// together, which the version comparisons of the other checks let pass:
// a version names one state of the session (versions grow by one per
// write and never go back, across deletes too), so every answer naming it
// must show the same content; the content must be what requests of the
// session wrote, a write's answer must hold its own value, a patch's value
// comes only on top of the put it was acknowledged on, and no answer names
// a version older than the one its content was acknowledged at.
func (s *sessionHistory) contentMismatches() []Anomaly {
	byReturn := slices.Clone(s.ops)
	slices.SortStableFunc(byReturn, func(a, b *Op) int { return cmp.Compare(a.Return, b.Return) })
	var out []Anomaly
	first := map[uint64]*Op{} // the first answer naming each version
	reported := map[uint64]bool{}
	mismatch := func(r *Op, ops []int, format string, args ...any) {
		out = append(out, Anomaly{Kind: ContentMismatch, Session: s.id, At: r.Call, Ops: ops, Detail: fmt.Sprintf(format, args...)})
	}
	for _, r := range byReturn {
		if r.Outcome != OK || r.Version == 0 {
			continue // a delete answers no version
		}
		what := fmt.Sprintf("op %d %s via %s answered v%d %s", r.Index, r.label(), r.Node, r.Version, digest(r.Put, r.Patch))
		if f, ok := first[r.Version]; !ok {
			first[r.Version] = r
		} else if (f.Put != r.Put || f.Patch != r.Patch) && !reported[r.Version] {
			reported[r.Version] = true
			lost := ""
			if acked(f) && acked(r) {
				lost = "; both writes were acknowledged, so one of them is lost"
			}
			mismatch(r, []int{f.Index, r.Index}, "%s, but op %d %s via %s had answered v%d %s: one version, two contents%s",
				what, f.Index, f.label(), f.Node, f.Version, digest(f.Put, f.Patch), lost)
			out[len(out)-1].loss = true // a session lost starts over at v1
		}
		switch r.Kind {
		case OpPut, OpCAS:
			if r.Put != r.Value || r.Patch != "" {
				mismatch(r, []int{r.Index}, "%s: not the value it wrote", what)
				continue
			}
		case OpPatch:
			got := patchedValues(r.Patch)
			wrong := false
			for attr, v := range got {
				wrong = wrong || (r.Attr == attr || r.Attr == attrAll) && v != r.Value
			}
			if wrong {
				mismatch(r, []int{r.Index}, "%s: not the value it wrote", what)
				continue
			}
		}
		w := s.byValue[r.Put]
		if r.Put == "" || w == nil || (w.Kind != OpPut && w.Kind != OpCAS) {
			mismatch(r, []int{r.Index}, "%s: no put of the session wrote %q", what, r.Put)
			continue
		}
		if acked(w) && r.Version < w.Version {
			mismatch(r, []int{w.Index, r.Index}, "%s, but op %d %s was acknowledged at v%d: content from a later version", what, w.Index, w.label(), w.Version)
			continue
		}
		a, b, c := splitPatch(r.Patch)
		for _, v := range []struct{ attr, value string }{{"", a}, {attrB, b}, {attrC, c}} {
			if v.value == "" {
				continue
			}
			p := s.byValue[v.value]
			switch {
			case p == nil || p.Kind != OpPatch || p.Attr != v.attr && p.Attr != attrAll:
				mismatch(r, []int{r.Index}, "%s: no patch of the session wrote %q", what, v.value)
			case acked(p) && r.Version < p.Version:
				mismatch(r, []int{p.Index, r.Index}, "%s, but op %d %s was acknowledged at v%d: content from a later version", what, p.Index, p.label(), p.Version)
			case acked(p) && r.Put != p.Put:
				mismatch(r, []int{p.Index, r.Index}, "%s, but op %d %s was acknowledged on top of %s: a patch's value comes only with the put it patched", what, p.Index, p.label(), digest(p.Put, ""))
			}
		}
	}
	return out
}

// checkCopies compares the owners' own copies of a register session, read
// after settling (copies), with the session's final state: the last final
// read through the HTTP API (finals, among ops), which the other checks
// hold against the model. A copy that could not be read is reported too:
// a check not made proves nothing.
func checkCopies(id string, ops, copies []*Op) []Anomaly {
	var ref *Op
	for _, op := range ops {
		if op.Final && op.Kind == OpGet && (op.Outcome == OK || op.Outcome == NotFound) && (ref == nil || op.Return > ref.Return) {
			ref = op
		}
	}
	var out []Anomaly
	for _, c := range copies {
		state := "not-found"
		if c.Outcome == OK {
			state = fmt.Sprintf("v%d %s", c.Version, digest(c.Put, c.Patch))
		}
		switch {
		case c.Outcome != OK && c.Outcome != NotFound:
			out = append(out, Anomaly{Kind: Unreadable, Session: id, At: c.Call, Ops: []int{c.Index},
				Detail: fmt.Sprintf("the %s's own copy on %s could not be read after healing and settling: %s", c.Copy, c.Node, c.Error)})
		case ref == nil:
			// No final read answered: Unreadable if anything was written,
			// reported by lostWrites; nothing to compare with.
		case c.Outcome != ref.Outcome || c.Version != ref.Version || c.Put != ref.Put || c.Patch != ref.Patch:
			want := "not-found"
			if ref.Outcome == OK {
				want = fmt.Sprintf("v%d %s", ref.Version, digest(ref.Put, ref.Patch))
			}
			out = append(out, Anomaly{Kind: DivergentCopy, Session: id, At: c.Call, Ops: []int{ref.Index, c.Index},
				Detail: fmt.Sprintf("the %s's own copy on %s (op %d) is %s, but the session's final state (op %d via %s) is %s", c.Copy, c.Node, c.Index, state, ref.Index, ref.Node, want)})
		}
	}
	return out
}

// checkExpiring checks an expiring session: created once, read without
// touching, it must be live until its idle deadline and gone after it,
// give or take clock skew and the buddy's grace.
func checkExpiring(id string, ops []*Op, cfg CheckConfig) []Anomaly {
	var create *Op
	for _, op := range ops {
		if op.Kind == OpCreate {
			create = op
		}
	}
	if create == nil {
		return nil // never created: nothing to prove
	}
	var out []Anomaly
	// Content: created once and never written again, the session holds
	// the create's value at one version, whichever node answers.
	var seen *Op
	for _, r := range ops {
		if r.Kind != OpGet || r.Outcome != OK {
			continue
		}
		switch {
		case r.Put != create.Value || r.Patch != "" || (create.Outcome == OK && r.Version != create.Version):
			out = append(out, Anomaly{Kind: ContentMismatch, Session: id, At: r.Call, Ops: []int{create.Index, r.Index},
				Detail: fmt.Sprintf("op %d read v%d %s from %s; the session was created once, by op %d %s (%s, v%d), and never written again", r.Index, r.Version, digest(r.Put, r.Patch), r.Node, create.Index, create.label(), create.Outcome, create.Version)})
		case seen != nil && r.Version != seen.Version:
			out = append(out, Anomaly{Kind: ContentMismatch, Session: id, At: r.Call, Ops: []int{seen.Index, r.Index},
				Detail: fmt.Sprintf("op %d read v%d from %s, op %d had read v%d from %s; the session was created once and never written again", r.Index, r.Version, r.Node, seen.Index, seen.Version, seen.Node)})
		}
		if seen == nil {
			seen = r
		}
	}
	if create.Outcome != OK {
		return out // maybe created, when unknown: no deadline to hold it to
	}
	earliest := create.Call + create.IdleTimeout - 2*cfg.MaxSkew
	latest := create.Return + create.IdleTimeout + 2*cfg.MaxSkew + cfg.ExpiryGrace
	for _, r := range ops {
		if r.Kind != OpGet {
			continue
		}
		switch {
		case r.Outcome == OK && r.Call > latest:
			out = append(out, Anomaly{Kind: ExpiredServed, Session: id, At: r.Call, Ops: []int{create.Index, r.Index},
				Detail: fmt.Sprintf("op %d read v%d from %s %v after the create was acknowledged; idle timeout %v, skew allowance 2×%v, grace %v", r.Index, r.Version, r.Node, (r.Call - create.Return).Round(time.Millisecond), create.IdleTimeout, cfg.MaxSkew, cfg.ExpiryGrace)})
		case r.Outcome == NotFound && r.Return < earliest:
			out = append(out, Anomaly{Kind: LostWrite, Session: id, At: r.Call, Ops: []int{create.Index, r.Index}, loss: true,
				Detail: fmt.Sprintf("op %d read not-found from %s %v after the create was sent, before its idle timeout %v (less skew allowance 2×%v) could have passed", r.Index, r.Node, (r.Return - create.Call).Round(time.Millisecond), create.IdleTimeout, cfg.MaxSkew)})
		}
	}
	return out
}

// checkLinearizable runs porcupine on one session's ops; indeterminate
// writes end at the end of the history and failed reads are left out.
//
// It first checks the history without the indeterminate writes whose value
// nobody ever saw. That is sound for a pass: each one left out can be
// linearized after everything else, where it constrains nothing. It spares
// porcupine the search over where each might have landed, which is what
// makes long histories time out. Only if that check does not pass is the
// whole history checked.
func checkLinearizable(id string, ops []*Op, cfg CheckConfig) (porcupine.CheckResult, *Anomaly) {
	model := sessionModel
	model.DescribeOperationMetadata = func(m any) string { s, _ := m.(string); return s }
	seen := map[string]bool{}
	for _, op := range ops {
		if op.Outcome == OK {
			a, b, c := splitPatch(op.Patch)
			seen[op.Put], seen[a], seen[b], seen[c] = true, true, true, true
		}
	}
	kept, pops := linearizationInput(ops, func(*Op) bool { return false })
	if _, pruned := linearizationInput(ops, func(op *Op) bool { return !seen[op.Value] }); len(pruned) < len(pops) {
		if porcupine.CheckOperationsTimeout(model, pruned, cfg.LinearizabilityTimeout) == porcupine.Ok {
			return porcupine.Ok, nil
		}
	}
	res, info := porcupine.CheckOperationsVerbose(model, pops, cfg.LinearizabilityTimeout)
	if res != porcupine.Illegal {
		return res, nil
	}
	a := &Anomaly{Kind: NotLinearizable, Session: id, loss: true}
	a.At, a.Ops, a.Detail = explainIllegal(kept, pops, info)
	if cfg.VisualizeDir != "" {
		name := "lin-" + id + ".html"
		var notes []porcupine.Annotation
		for _, f := range cfg.Faults {
			notes = append(notes, porcupine.Annotation{Tag: "nemesis", Start: int64(f.Start), End: int64(f.End),
				Description: f.Fault.String(), BackgroundColor: "#fde2e2"})
		}
		info.AddAnnotations(notes)
		if err := os.MkdirAll(cfg.VisualizeDir, 0o755); err == nil {
			if err := porcupine.VisualizePath(model, info, filepath.Join(cfg.VisualizeDir, name)); err == nil {
				a.Visualization = name
			}
		}
	}
	return res, a
}

// linearizationInput turns ops into porcupine operations: failed reads and
// the indeterminate writes leave selects are left out, the other
// indeterminate writes end after the end of the history.
func linearizationInput(ops []*Op, leave func(*Op) bool) ([]*Op, []porcupine.Operation) {
	var end int64
	for _, op := range ops {
		end = max(end, int64(op.Return))
	}
	var kept []*Op
	var pops []porcupine.Operation
	for _, op := range ops {
		if op.Outcome == Indeterminate && (!op.Kind.writes() || leave(op)) {
			continue
		}
		ret := int64(op.Return)
		if op.Outcome == Indeterminate {
			ret = end + 1
		}
		kept = append(kept, op)
		pops = append(pops, porcupine.Operation{
			ClientId: op.Client,
			Input:    modelInput{Kind: op.Kind, Value: op.Value, IfVersion: op.IfVersion, Attr: op.Attr, Null: op.Null},
			Call:     int64(op.Call),
			Output:   modelOutput{Outcome: op.Outcome, Ver: op.Version, Put: op.Put, Patch: op.Patch, Deleted: op.Deleted},
			Return:   ret,
			Metadata: fmt.Sprintf("op %d via %s", op.Index, op.Node),
		})
	}
	return kept, pops
}

// explainIllegal says where a session stopped being linearizable: porcupine's
// longest partial linearization, the state it reached, and the op that
// could not follow it (the earliest-answered op left out).
func explainIllegal(ops []*Op, pops []porcupine.Operation, info porcupine.LinearizationInfo) (time.Duration, []int, string) {
	parts := info.PartialLinearizations()
	if len(parts) == 0 || len(parts[0]) == 0 {
		return 0, nil, fmt.Sprintf("no linearization of the session's %d ops fits the versioned-register model", len(ops))
	}
	longest := parts[0][0]
	for _, p := range parts[0] {
		if len(p) > len(longest) {
			longest = p
		}
	}
	state := register{}
	placed := map[int]bool{}
	for _, i := range longest {
		_, state = step(state, pops[i].Input.(modelInput), pops[i].Output.(modelOutput))
		placed[i] = true
	}
	stuck := -1
	for i, p := range pops {
		if !placed[i] && (stuck < 0 || p.Return < pops[stuck].Return) {
			stuck = i
		}
	}
	if stuck < 0 {
		return 0, nil, fmt.Sprintf("no linearization of the session's %d ops fits the versioned-register model", len(ops))
	}
	op := ops[stuck]
	var last []int
	for _, i := range longest[max(len(longest)-3, 0):] {
		last = append(last, ops[i].Index)
	}
	return op.Call, append(last, op.Index), fmt.Sprintf(
		"no linearization of the session's %d ops fits the versioned-register model: the longest linearizable prefix (%d ops, last ops %v) leaves the session %s, and no order lets op %d follow: %s via %s, sent at %v, answered at %v",
		len(ops), len(longest), last, sessionModel.DescribeState(state), op.Index,
		sessionModel.DescribeOperation(pops[stuck].Input, pops[stuck].Output), op.Node,
		op.Call.Round(time.Millisecond), op.Return.Round(time.Millisecond))
}
