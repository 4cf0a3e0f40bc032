package replica

import (
	"slices"
	"strings"
	"time"
)

// This file is the seat policy of docs/design/LEASES-AT-SCALE.md (§3.3):
// which change of seats to propose next, one name at a time. It serves
// liveness only: whatever it proposes, the seat protocol (seats.go)
// keeps one config per version and every change one seat apart. Like the
// protocol, it is pure and not wired into Node yet.

// seatMember is what the seat policy knows of one member the ring knows,
// present or departed.
type seatMember struct {
	Name    string
	Witness bool // holds no sessions: a preferred seat
	// Ready: its run is up and answers; a seat's is recovered and sure of
	// its state under the newest config. Only a ready member is made a
	// seat: one that is still recovering holds no state to vote with,
	// and a config chosen with a majority of its seats recovering is lost
	// (seatAcceptor.lost).
	Ready   bool
	Leaving bool          // draining: its seat is vacated
	Absent  time.Duration // how long its name has been missing from membership; 0 while present
}

// seatPolicy picks the seat changes to propose.
type seatPolicy struct {
	// Seats is how many seats are wanted; at least two are kept while
	// two members can hold them, as a lone seat's state is held nowhere
	// else and a restart of it cannot recover, and above two an odd
	// number (seatTarget).
	Seats int
	// DeadFor is how long a seat's name must be missing from membership
	// before its seat is given to another (T_dead). A declaration of
	// death alone changes no seat: seats are crash-sticky.
	DeadFor time.Duration
}

// seatGone reports whether the seat named name is to be vacated: its
// member is leaving, or has been missing for DeadFor, or is unknown.
func (p seatPolicy) seatGone(name string, members []seatMember) bool {
	i := slices.IndexFunc(members, func(m seatMember) bool { return m.Name == name })
	return i < 0 || members[i].Leaving || members[i].Absent >= p.DeadFor
}

// candidates returns the members that may take a seat of cur, best
// first: ready, present, not leaving and no seat yet; witnesses first,
// then by name.
func (p seatPolicy) candidates(cur seatConfig, members []seatMember) []seatMember {
	var out []seatMember
	for _, m := range members {
		if m.Ready && !m.Leaving && m.Absent == 0 && !cur.holds(m.Name) {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b seatMember) int {
		if a.Witness != b.Witness {
			if a.Witness {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// seatTarget returns how many seats to hold when want are wanted and
// available members could hold them: as many as both allow, but odd once
// above two. An even config tolerates no more failed seats than the odd
// one below it, and its restarted seats recover from all other seats but
// one (recoveryNeed), so one seat down and one restarting stall it: a
// cluster of four members holds three seats.
func seatTarget(want, available int) int {
	n := min(max(want, 2), available)
	if n > 2 && n%2 == 0 {
		n--
	}
	return n
}

// next returns the config to propose after cur, one seat apart, and
// whether there is one. In order: a seat whose member left or has long
// been missing is vacated (once a replacement has been added, if only
// two seats are left); then seats are filled with ready members up to
// the target (seatTarget: Seats, or as many as the seats and candidates
// allow, odd above two); then a surplus over the target is removed, a
// seat that is not ready first.
func (p seatPolicy) next(cur seatConfig, members []seatMember) (seatConfig, bool) {
	cands := p.candidates(cur, members)
	want := seatTarget(p.Seats, len(cur.Seats)+len(cands))
	with := func(name string) seatConfig {
		return cur.next(slices.Sorted(slices.Values(append(slices.Clone(cur.Seats), name))))
	}
	without := func(name string) seatConfig {
		return cur.next(slices.DeleteFunc(slices.Clone(cur.Seats), func(s string) bool { return s == name }))
	}
	var gone []string
	for _, name := range cur.Seats {
		if p.seatGone(name, members) {
			gone = append(gone, name)
		}
	}
	if len(gone) > 0 {
		keep := len(cur.Seats) - 1
		if keep >= 2 {
			return without(gone[0]), true
		}
		if len(cands) > 0 {
			return with(cands[0].Name), true // a replacement first: two seats stay
		}
		if len(cur.Seats)-len(gone) >= 1 && p.eligible(members) < 2 {
			// No member is left to hold a second seat: the one left
			// keeps a lone seat.
			return without(gone[0]), true
		}
	}
	if len(cur.Seats) < want && len(cands) > 0 {
		return with(cands[0].Name), true
	}
	if len(cur.Seats) > want {
		seats := slices.Clone(cur.Seats)
		// The last in this order goes: witnesses and ready seats stay
		// longest, then lower names.
		rank := func(name string) (witness, ready bool) {
			i := slices.IndexFunc(members, func(m seatMember) bool { return m.Name == name })
			return i >= 0 && members[i].Witness, i >= 0 && members[i].Ready
		}
		slices.SortStableFunc(seats, func(a, b string) int {
			aw, ar := rank(a)
			bw, br := rank(b)
			switch {
			case aw != bw:
				if aw {
					return -1
				}
				return 1
			case ar != br:
				if ar {
					return -1
				}
				return 1
			}
			return strings.Compare(a, b)
		})
		return without(seats[len(seats)-1]), true
	}
	return cur, false
}

// eligible counts the members that could hold a seat: present and not
// leaving, ready or not.
func (p seatPolicy) eligible(members []seatMember) int {
	n := 0
	for _, m := range members {
		if !m.Leaving && m.Absent == 0 {
			n++
		}
	}
	return n
}

// proposer returns the name that proposes cur's next change: the
// lowest-named seat that is ready, present and staying; if no seat is,
// the lowest-named ready seat that drains, which hands its seat over
// before it goes (Node.handOverSeat: a replacement first if it would
// leave fewer than two seats); "" if none is ready. A seat that left
// without handing its seat over is vacated by the lowest seat later.
func (p seatPolicy) proposer(cur seatConfig, members []seatMember) string {
	for _, leaving := range []bool{false, true} {
		for _, name := range slices.Sorted(slices.Values(cur.Seats)) {
			i := slices.IndexFunc(members, func(m seatMember) bool { return m.Name == name })
			if i >= 0 && members[i].Ready && members[i].Absent == 0 && members[i].Leaving == leaving {
				return name
			}
		}
	}
	return ""
}
