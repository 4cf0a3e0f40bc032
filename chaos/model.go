package chaos

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// register is the state of one session in the linearizability model: a
// versioned register whose value is the session's content. The workload
// writes only two attributes, each a unique value per write, so the pair
// (Put, Patch) is the content's digest: it names the writes that made it.
type register struct {
	Live  bool   // the session exists (not absent, not deleted)
	Ver   uint64 // its version; versions keep growing across deletes
	Put   string // value of the last put or cas
	Patch string // value of the last patch since that put, or ""
}

// modelInput is an operation as the model sees it.
type modelInput struct {
	Kind      OpKind
	Value     string
	IfVersion uint64
}

// modelOutput is an answer as the model sees it.
type modelOutput struct {
	Outcome    Outcome
	Ver        uint64
	Put, Patch string
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
		case in.Kind == OpCAS && out.Outcome == OK:
			return fmt.Sprintf("cas(v%d, %s) → v%d", in.IfVersion, in.Value, out.Ver)
		case in.Kind == OpCAS:
			return fmt.Sprintf("cas(v%d, %s) → %s", in.IfVersion, in.Value, out.Outcome)
		case in.IfVersion != 0 && out.Outcome == OK && in.Kind == OpPatch:
			return fmt.Sprintf("patch(v%d, %s) → v%d", in.IfVersion, in.Value, out.Ver)
		case in.IfVersion != 0:
			return fmt.Sprintf("%s(v%d, %s) → %s", in.Kind, in.IfVersion, in.Value, out.Outcome)
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
	if patch == "" {
		return fmt.Sprintf("{put:%s}", put)
	}
	return fmt.Sprintf("{put:%s patch:%s}", put, patch)
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
		next := register{Live: true, Ver: r.Ver + 1, Put: r.Put, Patch: in.Value}
		if in.IfVersion != 0 {
			ok, matches := conditional(r, in, out)
			if !matches {
				return ok, r
			}
			return ok && (unknown || out.Outcome == OK && out.Ver == next.Ver && out.Put == r.Put && out.Patch == in.Value), next
		}
		switch {
		case unknown && r.Live:
			return true, next
		case unknown:
			return true, r
		case out.Outcome == NotFound:
			return !r.Live, r
		}
		return r.Live && out.Outcome == OK && out.Ver == next.Ver && out.Put == r.Put && out.Patch == in.Value, next
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
