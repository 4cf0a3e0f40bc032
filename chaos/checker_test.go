package chaos

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// sec is n seconds, to write hand-built histories briefly.
func sec(n float64) time.Duration { return time.Duration(n * float64(time.Second)) }

// reg is the register session the hand-built histories use.
const reg = "chaos-seed-0-session-000"

// put is an acknowledged put of value at version v during [call, ret].
func put(client int, value string, v uint64, call, ret float64) Op {
	return Op{Client: client, Kind: OpPut, Session: reg, Value: value, Call: sec(call), Return: sec(ret), Outcome: OK, Version: v, Put: value}
}

// get is a read during [call, ret] that saw version v with put value value,
// or not-found when v is 0.
func get(client int, value string, v uint64, call, ret float64) Op {
	op := Op{Client: client, Kind: OpGet, Session: reg, Call: sec(call), Return: sec(ret), Outcome: OK, Version: v, Put: value}
	if v == 0 {
		op.Outcome, op.Put = NotFound, ""
	}
	return op
}

// final marks a read as made after healing.
func final(op Op) Op { op.Final = true; return op }

// kinds lists the anomaly kinds of a verdict.
func kinds(v Verdict) []AnomalyKind {
	var out []Anomaly
	out = append(out, v.Anomalies...)
	var ks []AnomalyKind
	for _, a := range out {
		if !slices.Contains(ks, a.Kind) {
			ks = append(ks, a.Kind)
		}
	}
	slices.Sort(ks)
	return ks
}

func TestCheckerPassesACleanHistory(t *testing.T) {
	ops := []Op{
		put(0, "a", 1, 0, 1),
		{Client: 1, Kind: OpPatch, Session: reg, Value: "p", Call: sec(1.5), Return: sec(2), Outcome: OK, Version: 2, Put: "a", Patch: "p"},
		{Client: 0, Kind: OpCAS, Session: reg, Value: "b", IfVersion: 1, Call: sec(2.5), Return: sec(3), Outcome: Conflict},
		{Client: 0, Kind: OpCAS, Session: reg, Value: "c", IfVersion: 2, Call: sec(3.5), Return: sec(4), Outcome: OK, Version: 3, Put: "c"},
		{Client: 1, Kind: OpGet, Session: reg, Call: sec(4.5), Return: sec(5), Outcome: OK, Version: 3, Put: "c"},
		{Client: 1, Kind: OpDelete, Session: reg, Call: sec(5.5), Return: sec(6), Outcome: OK},
		{Client: 0, Kind: OpPatch, Session: reg, Value: "q", Call: sec(6.5), Return: sec(7), Outcome: NotFound},
		put(1, "d", 5, 7.5, 8),
		final(get(2, "d", 5, 10, 10.1)),
	}
	v := Check(HistoryOf(ops), CheckConfig{})
	if !v.Pass || v.Linearizability[reg] != porcupine.Ok {
		t.Fatalf("a clean history failed: %+v", v)
	}
}

func TestCheckerCatchesALostWrite(t *testing.T) {
	ops := []Op{
		put(0, "a", 1, 0, 1),
		put(1, "b", 2, 2, 3),
		final(get(2, "a", 1, 10, 10.1)),
	}
	v := Check(HistoryOf(ops), CheckConfig{})
	if v.Pass || !slices.Contains(kinds(v), LostWrite) || !slices.Contains(kinds(v), NotLinearizable) {
		t.Fatalf("lost write not caught: %+v", v)
	}
	// A session that vanished entirely is lost too, unless a delete
	// may have removed it.
	ops = []Op{put(0, "a", 1, 0, 1), final(get(2, "", 0, 10, 10.1))}
	if v := Check(HistoryOf(ops), CheckConfig{}); !slices.Contains(kinds(v), LostWrite) {
		t.Fatalf("vanished session not caught: %+v", v)
	}
	ops = []Op{put(0, "a", 1, 0, 1), {Client: 1, Kind: OpDelete, Session: reg, Call: sec(2), Return: sec(8), Outcome: Indeterminate}, final(get(2, "", 0, 10, 10.1))}
	if v := Check(HistoryOf(ops), CheckConfig{}); !v.Pass {
		t.Fatalf("a session an indeterminate delete may have removed counted as lost: %+v", v)
	}
}

func TestCheckerCatchesAStaleRead(t *testing.T) {
	ops := []Op{
		put(0, "a", 1, 0, 1),
		put(0, "b", 2, 2, 3),
		get(1, "a", 1, 4, 5),
		final(get(2, "b", 2, 10, 10.1)),
	}
	v := Check(HistoryOf(ops), CheckConfig{})
	if got := kinds(v); !slices.Equal(got, []AnomalyKind{NotLinearizable, StaleRead}) {
		t.Fatalf("stale read: anomalies %v, want not-linearizable and stale-read: %+v", got, v)
	}
}

func TestCheckerCatchesASessionThatStartsOver(t *testing.T) {
	// A node that lost the session's history answers a put with v1 again:
	// v1 now names two contents, as well.
	ops := []Op{
		put(0, "a", 1, 0, 1),
		put(0, "b", 2, 2, 3),
		put(1, "c", 1, 4, 5),
		final(get(2, "c", 1, 10, 10.1)),
	}
	v := Check(HistoryOf(ops), CheckConfig{})
	if got := kinds(v); !slices.Equal(got, []AnomalyKind{ContentMismatch, LostWrite, NotLinearizable}) {
		t.Fatalf("a session starting over: anomalies %v, want content-mismatch, lost-write and not-linearizable: %+v", got, v)
	}
}

func TestCheckerCatchesAResurrectedDelete(t *testing.T) {
	ops := []Op{
		put(0, "a", 1, 0, 1),
		{Client: 1, Kind: OpDelete, Session: reg, Call: sec(2), Return: sec(3), Outcome: OK},
		get(0, "a", 1, 4, 5),
		final(get(2, "", 0, 10, 10.1)),
	}
	v := Check(HistoryOf(ops), CheckConfig{})
	if !slices.Contains(kinds(v), ResurrectedDelete) || v.Pass {
		t.Fatalf("resurrected delete not caught: %+v", v)
	}
}

func TestCheckerCatchesAnExpiredRead(t *testing.T) {
	exp := "chaos-seed-0-exp-c00-00000"
	create := Op{Kind: OpCreate, Session: exp, Value: "e", IdleTimeout: sec(2), Call: sec(0), Return: sec(0.1), Outcome: OK, Version: 1, Put: "e"}
	read := func(at float64, found bool) Op {
		op := Op{Kind: OpGet, Session: exp, Call: sec(at), Return: sec(at + 0.01), Outcome: NotFound}
		if found {
			op.Outcome, op.Version, op.Put = OK, 1, "e"
		}
		return op
	}
	cfg := CheckConfig{MaxSkew: sec(1), ExpiryGrace: sec(2)}
	// Deadline 2.1s after start; allowance 2×1s skew + 2s grace: served
	// until 6.1s at the latest.
	ok := []Op{create, read(1, true), read(5.9, true), read(6.5, false)}
	if v := Check(HistoryOf(ok), cfg); !v.Pass {
		t.Fatalf("reads within the skew allowance failed: %+v", v)
	}
	bad := []Op{create, read(6.5, true)}
	if v := Check(HistoryOf(bad), cfg); !slices.Equal(kinds(v), []AnomalyKind{ExpiredServed}) {
		t.Fatalf("expired read not caught: %+v", v)
	}
	// With ±250ms skew the deadline is at least 1.5s after the create.
	early := []Op{create, read(1.4, false)}
	if v := Check(HistoryOf(early), CheckConfig{MaxSkew: sec(0.25)}); !slices.Equal(kinds(v), []AnomalyKind{LostWrite}) {
		t.Fatalf("a session gone before its deadline not caught: %+v", v)
	}
}

func TestCheckerTreatsIndeterminateOpsAsMaybe(t *testing.T) {
	timedOut := func(value string, call float64) Op {
		return Op{Client: 1, Kind: OpPut, Session: reg, Value: value, Call: sec(call), Return: sec(call + 6), Outcome: Indeterminate, Error: "context deadline exceeded"}
	}
	// It never took effect.
	never := []Op{put(0, "a", 1, 0, 1), timedOut("x", 2), get(0, "a", 1, 9, 9.5), final(get(2, "a", 1, 10, 10.1))}
	if v := Check(HistoryOf(never), CheckConfig{}); !v.Pass {
		t.Fatalf("an indeterminate write that never took effect failed the run: %+v", v)
	}
	// It took effect, long after the client gave up.
	late := []Op{put(0, "a", 1, 0, 1), timedOut("x", 2), get(0, "a", 1, 9, 9.5), final(get(2, "x", 2, 10, 10.1))}
	if v := Check(HistoryOf(late), CheckConfig{}); !v.Pass {
		t.Fatalf("an indeterminate write that took effect late failed the run: %+v", v)
	}
	// Unsent requests and failed reads are left out.
	unsent := Op{Client: 1, Kind: OpDelete, Session: reg, Call: sec(3), Return: sec(3.1), Outcome: Unsent}
	failedRead := Op{Client: 1, Kind: OpGet, Session: reg, Call: sec(3), Return: sec(9), Outcome: Indeterminate}
	if v := Check(HistoryOf([]Op{put(0, "a", 1, 0, 1), unsent, failedRead, final(get(2, "a", 1, 10, 10.1))}), CheckConfig{}); !v.Pass {
		t.Fatalf("unsent or failed requests failed the run: %+v", v)
	}
}

func TestCheckerVisualizesNonLinearizableSessions(t *testing.T) {
	// Two reads saw version 2 with the content of two different writes
	// that may have happened: porcupine finds no order, and the content
	// check sees one version with two contents.
	ops := []Op{
		put(0, "a", 1, 0, 1),
		{Client: 1, Kind: OpPut, Session: reg, Value: "x", Call: sec(2), Return: sec(8), Outcome: Indeterminate},
		{Client: 3, Kind: OpPut, Session: reg, Value: "y", Call: sec(2), Return: sec(8), Outcome: Indeterminate},
		get(0, "x", 2, 3, 4),
		get(0, "y", 2, 5, 6),
		final(get(2, "y", 2, 10, 10.1)),
	}
	dir := t.TempDir()
	v := Check(HistoryOf(ops), CheckConfig{VisualizeDir: dir, Faults: []FaultEvent{{Fault: Fault{Kind: FaultPause, Peer: -1}, Start: sec(2), End: sec(5)}}})
	if got := kinds(v); !slices.Equal(got, []AnomalyKind{ContentMismatch, NotLinearizable}) {
		t.Fatalf("anomalies %v, want content-mismatch and not-linearizable: %+v", got, v)
	}
	i := slices.IndexFunc(v.Anomalies, func(a Anomaly) bool { return a.Kind == NotLinearizable })
	a := v.Anomalies[i]
	if a.Visualization == "" {
		t.Fatalf("no visualization: %+v", a)
	}
	if fi, err := os.Stat(filepath.Join(dir, a.Visualization)); err != nil || fi.Size() == 0 {
		t.Fatalf("visualization not written: %v", err)
	}
}

// Padded values keep their unique name in front, which is what the
// checker reads back; short sizes leave values as they are.
func TestPaddedValuesKeepTheirName(t *testing.T) {
	v := padValue("c3-4901", 64<<10)
	if len(v) != 64<<10 || unpadValue(v) != "c3-4901" {
		t.Fatalf("padValue: %d bytes, name %q", len(v), unpadValue(v))
	}
	if padValue("c3-4901", 4) != "c3-4901" || unpadValue("c3-4901") != "c3-4901" || unpadValue("") != "" {
		t.Fatal("short or empty values changed")
	}
}

// If-Match on PATCH and DELETE: a patch or delete sent with the version
// the session is at takes effect; with another version, or to a session
// that does not exist, it answers 412 and changes nothing.
func TestConditionalPatchesAndDeletes(t *testing.T) {
	patch := func(client int, ifv uint64, value string, call, ret float64, out Outcome, v uint64, put string) Op {
		op := Op{Client: client, Kind: OpPatch, Session: reg, Value: value, IfVersion: ifv, Call: sec(call), Return: sec(ret), Outcome: out}
		if out == OK {
			op.Version, op.Put, op.Patch = v, put, value
		}
		return op
	}
	del := func(client int, ifv uint64, call, ret float64, out Outcome) Op {
		return Op{Client: client, Kind: OpDelete, Session: reg, IfVersion: ifv, Call: sec(call), Return: sec(ret), Outcome: out}
	}
	clean := []Op{
		put(0, "a", 1, 0, 1),
		patch(1, 1, "p", 1.5, 2, OK, 2, "a"),
		patch(0, 1, "q", 2.5, 3, Conflict, 0, ""), // v1 is gone
		del(1, 1, 3.5, 4, Conflict),
		del(0, 2, 4.5, 5, OK),
		patch(1, 2, "r", 5.5, 6, Conflict, 0, ""), // deleted: 412, not 404
		del(0, 3, 6.5, 7, Conflict),
		put(1, "b", 4, 7.5, 8),
		final(get(2, "b", 4, 10, 10.1)),
	}
	if v := Check(HistoryOf(clean), CheckConfig{}); !v.Pass || v.Linearizability[reg] != porcupine.Ok {
		t.Fatalf("a clean history of conditional writes failed: %+v", v)
	}

	// A patch that matched no version yet took effect.
	applied := []Op{
		put(0, "a", 1, 0, 1),
		patch(1, 1, "p", 1.5, 2, OK, 2, "a"),
		patch(0, 1, "q", 2.5, 3, OK, 3, "a"),
		final(get(2, "a", 3, 10, 10.1)),
	}
	if v := Check(HistoryOf(applied), CheckConfig{}); v.Pass || v.Linearizability[reg] != porcupine.Illegal {
		t.Fatalf("a patch applied at the wrong version passed: %+v", v)
	}
	// A delete refused at the very version the session was at.
	refused := []Op{
		put(0, "a", 1, 0, 1),
		del(1, 1, 1.5, 2, Conflict),
		final(get(2, "a", 1, 10, 10.1)),
	}
	if v := Check(HistoryOf(refused), CheckConfig{}); v.Pass || v.Linearizability[reg] != porcupine.Illegal {
		t.Fatalf("a matching delete refused passed: %+v", v)
	}
	// An indeterminate conditional delete may have taken effect.
	maybe := []Op{
		put(0, "a", 1, 0, 1),
		del(1, 1, 1.5, 7.5, Indeterminate),
		final(get(2, "", 0, 10, 10.1)),
	}
	if v := Check(HistoryOf(maybe), CheckConfig{}); !v.Pass {
		t.Fatalf("an indeterminate conditional delete that took effect failed: %+v", v)
	}
}

// Patches of different values compose: two clients patching "patch" and
// the nested n.pb at once, or n.pb and n.pc (two fields of one object,
// merged into it), must both see their value survive; a null deletes one
// value and keeps the others; a patch of all three sets each. Losing one
// of two concurrent patches is caught, and so is a patch of all three
// answered without one of them.
func TestPatchesOfDifferentAttributesBothSurvive(t *testing.T) {
	patch := func(client int, attr, value string, call, ret float64, v uint64, put, content string) Op {
		return Op{Client: client, Kind: OpPatch, Session: reg, Attr: attr, Value: value, Null: value == "",
			Call: sec(call), Return: sec(ret), Outcome: OK, Version: v, Put: put, Patch: content}
	}
	read := func(client int, v uint64, content string, call, ret float64) Op {
		op := get(client, "a", v, call, ret)
		op.Patch = content
		return op
	}
	both := []Op{
		put(0, "a", 1, 0, 1),
		patch(1, "", "p", 1.5, 2.5, 2, "a", "p"),
		patch(2, attrB, "q", 1.6, 2.6, 3, "a", joinPatch("p", "q", "")),
		read(0, 3, joinPatch("p", "q", ""), 3, 3.1),
		patch(1, "", "", 3.5, 4, 4, "a", joinPatch("", "q", "")), // {"patch": null}
		patch(1, attrC, "r", 4.5, 5.5, 5, "a", joinPatch("", "q", "r")),
		patch(2, attrB, "s", 4.6, 5.6, 6, "a", joinPatch("", "s", "r")), // {"n": {"pb": "s"}} keeps n.pc
		patch(0, attrAll, "t", 6, 6.5, 7, "a", joinPatch("t", "t", "t")),
		patch(0, attrC, "", 7, 7.5, 8, "a", joinPatch("t", "t", "")), // {"n": {"pc": null}}
		final(read(2, 8, joinPatch("t", "t", ""), 10, 10.1)),
	}
	if v := Check(HistoryOf(both), CheckConfig{}); !v.Pass || v.Linearizability[reg] != porcupine.Ok {
		t.Fatalf("concurrent patches of different values, nulls, a patch of all three: %+v", v)
	}
	lost := []Op{
		put(0, "a", 1, 0, 1),
		patch(1, "", "p", 1.5, 2.5, 2, "a", "p"),
		patch(2, attrB, "q", 1.6, 2.6, 3, "a", joinPatch("", "q", "")), // p's patch gone
		final(read(0, 3, joinPatch("", "q", ""), 10, 10.1)),
	}
	if v := Check(HistoryOf(lost), CheckConfig{}); v.Pass {
		t.Fatalf("a patch lost to a concurrent patch of another attribute passed: %+v", v)
	}
	nested := []Op{
		put(0, "a", 1, 0, 1),
		patch(1, attrB, "q", 1.5, 2.5, 2, "a", joinPatch("", "q", "")),
		patch(2, attrC, "r", 1.6, 2.6, 3, "a", joinPatch("", "", "r")), // the merge replaced n
		final(read(0, 3, joinPatch("", "", "r"), 10, 10.1)),
	}
	if v := Check(HistoryOf(nested), CheckConfig{}); v.Pass {
		t.Fatalf("a nested merge that replaced the object instead passed: %+v", v)
	}
	partial := []Op{
		put(0, "a", 1, 0, 1),
		patch(1, attrAll, "t", 1.5, 2.5, 2, "a", joinPatch("t", "t", "")),
		final(read(0, 2, joinPatch("t", "t", ""), 10, 10.1)),
	}
	if v := Check(HistoryOf(partial), CheckConfig{}); v.Pass || !slices.Contains(kinds(v), ContentMismatch) {
		t.Fatalf("a patch of all three answered without n.pc passed: %+v", v)
	}
	if got := digest("a", joinPatch("p", "q", "r")); got != "{put:a patch:p n.pb:q n.pc:r}" {
		t.Fatalf("digest %q", got)
	}
	if a, b, c := splitPatch(joinPatch("", "", "r")); a != "" || b != "" || c != "r" {
		t.Fatalf("split of a digest with n.pc alone: %q %q %q", a, b, c)
	}
}

// A session written again after its tombstone expired starts over at v1,
// by design (the nodes keep a deleted session's version for
// TombstoneTTL): the checker takes it as a new life of the session. Within
// the tombstone's life a restart at v1 is still a loss. (The 30-minute run
// of 2026-11-29: a session logged out at 413 s and created again at 791 s
// answered v1, and the checker called every later answer a rewind.)
func TestASessionWrittenAgainAfterItsTombstoneExpiredStartsOver(t *testing.T) {
	history := func(again float64) []Op {
		return []Op{
			put(0, "a", 1, 0, 0.5),
			put(1, "b", 2, 1, 1.5),
			{Client: 0, Kind: OpDelete, Session: reg, Call: sec(2), Return: sec(2.1), Outcome: OK},
			get(1, "", 0, 5, 5.1),
			// A logout that found the session gone deletes nothing.
			{Client: 1, Kind: OpLogout, Session: reg, Call: sec(6), Return: sec(6.1), Outcome: OK},
			put(0, "c", 1, again, again+0.1),
			get(1, "c", 1, again+1, again+1.1),
			final(get(0, "c", 1, again+5, again+5.1)),
		}
	}
	cfg := CheckConfig{TombstoneTTL: 10 * time.Second}
	if v := Check(HistoryOf(history(13)), cfg); !v.Pass {
		t.Fatalf("created again 10.9 s after its deletion, with a 10 s tombstone: %v", v.Anomalies)
	}
	if v := Check(HistoryOf(history(8)), cfg); v.Pass {
		t.Fatal("created again at v1 5.9 s after its deletion, within the tombstone's life, passed")
	}
	// With clocks 1 s apart either way, the node that sweeps the tombstone
	// may be 2 s ahead of the one that stamped it: from 8 s after the
	// deletion was sent, either life may follow.
	cfg.MaxSkew = time.Second
	if v := Check(HistoryOf(history(11)), cfg); !v.Pass {
		t.Fatalf("created again at v1 9 s after its deletion, a 10 s tombstone swept by a clock up to 2 s ahead: %v", v.Anomalies)
	}
	if v := Check(HistoryOf(history(9.5)), cfg); v.Pass {
		t.Fatal("created again at v1 7.5 s after its deletion, before any clock could have swept the 10 s tombstone, passed")
	}
	// A delete or logout answered indeterminate may have deleted the
	// session: a v1 past the tombstone's life is a new life, as after
	// an acknowledged one (session 633 of the 60-minute run at e9d1ae5).
	// Within it, a v1 is still a loss.
	for _, kind := range []OpKind{OpDelete, OpLogout} {
		maybe := func(again float64) []Op {
			return []Op{
				put(0, "a", 1, 0, 0.5),
				put(1, "b", 2, 1, 1.5),
				{Client: 0, Kind: kind, Session: reg, Call: sec(2), Return: sec(4), Outcome: Indeterminate},
				put(0, "c", 1, again, again+0.1),
				final(get(0, "c", 1, again+5, again+5.1)),
			}
		}
		if v := Check(HistoryOf(maybe(13)), cfg); !v.Pass {
			t.Fatalf("created again at v1 11 s after an indeterminate %s, with a 10 s tombstone: %v", kind, v.Anomalies)
		}
		if v := Check(HistoryOf(maybe(6)), cfg); v.Pass {
			t.Fatalf("created again at v1 4 s after an indeterminate %s, within the tombstone's life, passed", kind)
		}
	}
	// A put answered indeterminate after the deletion, with the session
	// absent in an answer sent after it, did not make it live: the
	// tombstone is the deletion's (session 298 of the 30-minute run at
	// 803bf8d). A write answered v1 and sent after the put's answer shows
	// the same absence: the put did not leave the session live, and past
	// the tombstone's life the v1 is a new life (session 609 of the
	// 72-minute run at 4bf1d3b), as an absent read's would. Within the
	// tombstone's life a v1 is still a loss; and an absence seen only
	// before the put in doubt answered settles nothing, as before.
	inDoubt := func(absentAfter bool, putReturn, again float64) []Op {
		ops := []Op{
			put(0, "a", 1, 0, 0.5),
			{Client: 0, Kind: OpLogout, Session: reg, Call: sec(1), Return: sec(1.5), Outcome: Indeterminate},
			{Client: 1, Kind: OpPut, Session: reg, Value: "x", Call: sec(3), Return: sec(putReturn), Outcome: Indeterminate},
		}
		if absentAfter {
			ops = append(ops, get(1, "", 0, putReturn+0.5, putReturn+0.6))
		}
		return append(ops, put(0, "c", 1, again, again+0.1), final(get(0, "c", 1, again+3, again+3.1)))
	}
	if v := Check(HistoryOf(inDoubt(true, 4, 12)), cfg); !v.Pass {
		t.Fatalf("a put in doubt, then the session absent, then v1 11 s after an indeterminate logout: %v", v.Anomalies)
	}
	if v := Check(HistoryOf(inDoubt(false, 4, 12)), cfg); !v.Pass {
		t.Fatalf("a put in doubt, then v1 sent after its answer, 11 s after an indeterminate logout: %v", v.Anomalies)
	}
	if v := Check(HistoryOf(inDoubt(false, 4, 7)), cfg); v.Pass {
		t.Fatal("a put in doubt, then v1 within the tombstone's life: passed")
	}
	// A put acknowledged while the delete was still in flight may have
	// come before it: once an answer sent after both shows the session
	// absent, the delete came after the put, and past the tombstone's
	// life a v1 is a new life (session 450 of the 72-minute run at
	// 15f0ad6). Read live after both, the put came after the delete, and
	// a later v1 is a loss.
	overlapped := func(readAfter Op, again float64) []Op {
		return []Op{
			put(0, "a", 1, 0, 0.5),
			{Client: 0, Kind: OpDelete, Session: reg, Call: sec(2), Return: sec(2.3), Outcome: OK},
			put(1, "b", 2, 2.1, 2.2),
			readAfter,
			put(0, "c", 1, again, again+0.1),
			final(get(0, "c", 1, again+3, again+3.1)),
		}
	}
	if v := Check(HistoryOf(overlapped(get(1, "", 0, 3, 3.1), 13)), cfg); !v.Pass {
		t.Fatalf("a put acknowledged during a delete, then the session absent, then v1 11 s after the delete: %v", v.Anomalies)
	}
	if v := Check(HistoryOf(overlapped(get(1, "", 0, 3, 3.1), 6)), cfg); v.Pass {
		t.Fatal("a put acknowledged during a delete, then the session absent, then v1 within the tombstone's life: passed")
	}
	if v := Check(HistoryOf(overlapped(get(1, "b", 2, 3, 3.1), 13)), cfg); v.Pass {
		t.Fatal("a put acknowledged during a delete and read live after it, then v1 past the tombstone's life: passed")
	}
	// An absence seen before the put in doubt answered proves nothing.
	early := inDoubt(false, 20, 12)
	early = slices.Insert(early, 3, get(1, "", 0, 3.5, 3.6))
	if v := Check(HistoryOf(early), cfg); v.Pass {
		t.Fatal("a put in doubt until 20 s, the session absent only in answers sent before the put's, v1 at 12 s: passed")
	}
	// A tombstone swept late (or never: the sweep runs every few seconds)
	// keeps the version: the session goes on from it.
	kept := []Op{
		put(0, "a", 1, 0, 0.5),
		put(1, "b", 2, 1, 1.5),
		{Client: 0, Kind: OpDelete, Session: reg, Call: sec(2), Return: sec(2.1), Outcome: OK},
		get(1, "", 0, 5, 5.1),
		put(0, "c", 4, 20, 20.1),
		final(get(0, "c", 4, 25, 25.1)),
	}
	if v := Check(HistoryOf(kept), cfg); !v.Pass {
		t.Fatalf("written again past its tombstone's life while the tombstone was still there (v4 after the deletion at v3): %v", v.Anomalies)
	}
	// Nor does a v1 after a reported loss make a new life begin where the
	// session went on from its tombstone's version: the v4 answered
	// before the v1 was sent belongs to the old life (session 778 of the
	// 60-minute run at 9efd854: v15 at 870 s, within the skew window,
	// the partition lost at 965 s, then v1).
	wentOn := []Op{
		put(0, "a", 1, 0, 0.5),
		put(1, "b", 2, 1, 1.5),
		{Client: 0, Kind: OpDelete, Session: reg, Call: sec(2), Return: sec(2.1), Outcome: OK},
		get(1, "", 0, 5, 5.1),
		put(0, "c", 4, 11, 11.1),
		get(1, "c", 4, 12, 12.1),
		put(0, "d", 1, 20, 20.1),
		final(get(0, "d", 1, 25, 25.1)),
	}
	lost := cfg
	lost.Lost = []LostReport{{Node: "n1", Epoch: 3, Partitions: []int{partitionOf(0, reg)}, Since: sec(14), Seen: sec(16)}}
	if v := Check(HistoryOf(wentOn), lost); !v.Pass {
		t.Fatalf("v4 past the tombstone's window, a reported loss, then v1: %v", v.Anomalies)
	}
	if v := Check(HistoryOf(wentOn), cfg); v.Pass {
		t.Fatal("v4 past the tombstone's window, then v1 with no loss reported: passed")
	}
}
