package chaos

import (
	"fmt"
	"strings"

	"github.com/anishathalye/porcupine"
)

// register is the state of one session in the linearizability model: a
// versioned register whose value is the session's content. The workload
// writes four values, each unique per write, so the pair (Put, Patch) is
// the content's digest: it names the writes that made it.
type register struct {
	Live  bool   // the session exists (not absent, not deleted)
	Ver   uint64 // its version; versions keep growing across deletes
	Put   string // value of the last put or cas
	Patch string // the patched values since that put (joinPatch), or ""
}

// The values patches write: the top-level attribute "patch" (named "" in
// an Op's Attr), and the fields attrB and attrC of the object attribute
// attrNest, which a patch merges into (RFC 7396), leaving the other field
// as it is. Two clients patching different ones at once must both see
// their value survive. attrAll writes all three in one patch.
const (
	attrB    = "pb"
	attrC    = "pc"
	attrAll  = "*"
	attrNest = "n"
)

// The separators of the patched values in a digest: "a+pb:b+pc:c".
const (
	sepB = "+" + attrB + ":"
	sepC = "+" + attrC + ":"
)

// joinPatch is the digest of the patched values "patch" (a), n.pb (b) and
// n.pc (c): each part only when its value is present, so that a digest of
// "patch" alone is its value.
func joinPatch(a, b, c string) string {
	out := a
	if b != "" {
		out += sepB + b
	}
	if c != "" {
		out += sepC + c
	}
	return out
}

// splitPatch undoes joinPatch.
func splitPatch(p string) (a, b, c string) {
	p, c, _ = strings.Cut(p, sepC)
	a, b, _ = strings.Cut(p, sepB)
	return a, b, c
}

// patchedValues returns the values of a digest by attribute: "" (patch),
// attrB and attrC.
func patchedValues(p string) map[string]string {
	a, b, c := splitPatch(p)
	return map[string]string{"": a, attrB: b, attrC: c}
}

// patched returns the digest of the patched values p after a patch that
// sets attr ("" meaning "patch", attrAll meaning all three) to value, or
// deletes it (null).
func patched(p, attr, value string, null bool) string {
	a, b, c := splitPatch(p)
	if null {
		value = ""
	}
	switch attr {
	case "":
		a = value
	case attrB:
		b = value
	case attrC:
		c = value
	case attrAll:
		a, b, c = value, value, value
	}
	return joinPatch(a, b, c)
}

// modelInput is an operation as the model sees it.
type modelInput struct {
	Kind      OpKind
	Value     string
	IfVersion uint64
	Attr      string // what a patch writes: "" ("patch"), attrB, attrC or attrAll
	Null      bool   // the patch deletes Attr (a JSON null)
}

// modelOutput is an answer as the model sees it.
type modelOutput struct {
	Outcome    Outcome
	Ver        uint64
	Put, Patch string
	Deleted    int // sessions a logout answered it deleted
}

// sessionModel is the sequential specification of one Tandem session, as
// the HTTP API promises it:
//
//   - get answers not-found when the session is not live, else exactly its
//     version and content;
//   - put makes version+1 with the new content, live or not;
//   - cas (If-Match) does the same only if live at that version, else 412;
//   - patch makes version+1 keeping the put's value, only if live, else 404;
//   - delete makes a tombstone at version+1, only if live, else 404;
//   - a patch or delete with If-Match does so only if live at that
//     version, else 412, live or not;
//   - logout (of the session's principal, its only session) deletes it
//     if live, answering 1, else does nothing, answering 0;
//   - an indeterminate write takes effect when linearized (its end is the
//     end of the history, so "never" is linearizing it last).
var sessionModel = porcupine.Model{
	Init: func() any { return register{} },
	Step: func(state, input, output any) (bool, any) {
		return step(state.(register), input.(modelInput), output.(modelOutput))
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(modelInput), output.(modelOutput)
		switch {
		case in.Kind == opLost:
			return "partition lost: the session is gone"
		case in.Kind == OpGet && out.Outcome == OK:
			return fmt.Sprintf("get → v%d %s", out.Ver, digest(out.Put, out.Patch))
		case in.Kind == OpGet:
			return fmt.Sprintf("get → %s", out.Outcome)
		case in.Kind == OpLogout && out.Outcome == OK:
			return fmt.Sprintf("logout → %d deleted", out.Deleted)
		case in.Kind == OpCAS && out.Outcome == OK:
			return fmt.Sprintf("cas(v%d, %s) → v%d", in.IfVersion, in.Value, out.Ver)
		case in.Kind == OpCAS:
			return fmt.Sprintf("cas(v%d, %s) → %s", in.IfVersion, in.Value, out.Outcome)
		case in.Kind == OpPatch:
			what := patchLabel(in.Attr, in.Value, in.Null)
			if in.IfVersion != 0 {
				what = fmt.Sprintf("v%d, %s", in.IfVersion, what)
			}
			if out.Outcome == OK {
				return fmt.Sprintf("patch(%s) → v%d", what, out.Ver)
			}
			return fmt.Sprintf("patch(%s) → %s", what, out.Outcome)
		case in.IfVersion != 0:
			return fmt.Sprintf("%s(v%d) → %s", in.Kind, in.IfVersion, out.Outcome)
		case out.Outcome == OK && in.Kind != OpDelete:
			return fmt.Sprintf("%s(%s) → v%d", in.Kind, in.Value, out.Ver)
		}
		return fmt.Sprintf("%s(%s) → %s", in.Kind, in.Value, out.Outcome)
	},
	DescribeState: func(state any) string {
		r := state.(register)
		if !r.Live {
			return fmt.Sprintf("absent (v%d)", r.Ver)
		}
		return fmt.Sprintf("v%d %s", r.Ver, digest(r.Put, r.Patch))
	},
}

// digest renders a session's content for people.
func digest(put, patch string) string {
	a, b, c := splitPatch(patch)
	out := "{put:" + put
	if a != "" {
		out += " patch:" + a
	}
	if b != "" {
		out += " " + attrNest + "." + attrB + ":" + b
	}
	if c != "" {
		out += " " + attrNest + "." + attrC + ":" + c
	}
	return out + "}"
}

// patchLabel names what a patch writes: "c1-7" (attribute "patch"),
// "n.pb=c1-7", "n.pc=null", "*=c1-7" (all three).
func patchLabel(attr, value string, null bool) string {
	if null {
		value = "null"
	}
	switch attr {
	case "":
		if null {
			return "patch=null"
		}
		return value
	case attrAll:
		return attr + "=" + value
	}
	return attrNest + "." + attr + "=" + value
}

// opLost is no request: the checker puts it in a session's history where
// the session's partition was reported lost with both owners, and the
// model resets the session to nothing (absent, version 0; a put then
// makes v1), as the new owners, who got nothing, have it.
const opLost OpKind = "lost"

// step applies one operation to r, saying whether the answer is possible.
func step(r register, in modelInput, out modelOutput) (bool, register) {
	unknown := out.Outcome == Indeterminate
	switch in.Kind {
	case opLost:
		return true, register{}
	case OpGet:
		if out.Outcome == NotFound {
			return !r.Live, r
		}
		return r.Live && out.Ver == r.Ver && out.Put == r.Put && out.Patch == r.Patch, r
	case OpPut, OpCreate:
		next := register{Live: true, Ver: r.Ver + 1, Put: in.Value}
		return unknown || (out.Outcome == OK && out.Ver == next.Ver && out.Put == in.Value && out.Patch == ""), next
	case OpCAS:
		matches := r.Live && r.Ver == in.IfVersion
		next := register{Live: true, Ver: r.Ver + 1, Put: in.Value}
		switch {
		case unknown && matches:
			return true, next
		case unknown:
			return true, r
		case out.Outcome == Conflict:
			return !matches, r
		}
		return matches && out.Outcome == OK && out.Ver == next.Ver && out.Put == in.Value && out.Patch == "", next
	case OpPatch:
		next := register{Live: true, Ver: r.Ver + 1, Put: r.Put, Patch: patched(r.Patch, in.Attr, in.Value, in.Null)}
		if in.IfVersion != 0 {
			ok, matches := conditional(r, in, out)
			if !matches {
				return ok, r
			}
			return ok && (unknown || out.Outcome == OK && out.Ver == next.Ver && out.Put == r.Put && out.Patch == next.Patch), next
		}
		switch {
		case unknown && r.Live:
			return true, next
		case unknown:
			return true, r
		case out.Outcome == NotFound:
			return !r.Live, r
		}
		return r.Live && out.Outcome == OK && out.Ver == next.Ver && out.Put == r.Put && out.Patch == next.Patch, next
	case OpDelete:
		next := register{Ver: r.Ver + 1}
		if in.IfVersion != 0 {
			ok, matches := conditional(r, in, out)
			if !matches {
				return ok, r
			}
			return ok && (unknown || out.Outcome == OK), next
		}
		switch {
		case unknown && r.Live:
			return true, next
		case unknown:
			return true, r
		case out.Outcome == NotFound:
			return !r.Live, r
		}
		return r.Live && out.Outcome == OK, next
	case OpLogout:
		switch {
		case unknown && r.Live:
			return true, register{Ver: r.Ver + 1}
		case unknown:
			return true, r
		case r.Live:
			return out.Outcome == OK && out.Deleted == 1, register{Ver: r.Ver + 1}
		}
		return out.Outcome == OK && out.Deleted == 0, r
	}
	return false, r
}

// conditional judges the If-Match of a patch or delete at r: whether it
// matches (the session is live at in.IfVersion), and whether out can be
// the answer so far: a 412 only when it does not match, any other
// definite answer only when it does; an indeterminate one either way.
func conditional(r register, in modelInput, out modelOutput) (ok, matches bool) {
	matches = r.Live && r.Ver == in.IfVersion
	switch out.Outcome {
	case Indeterminate:
		return true, matches
	case Conflict:
		return !matches, matches
	}
	return matches, matches
}
