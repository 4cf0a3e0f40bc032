package replica

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestTheSeatPolicyProposesOneChangeAtATime(t *testing.T) {
	policy := seatPolicy{Seats: 3, DeadFor: time.Minute}
	ready := func(name string) seatMember { return seatMember{Name: name, Ready: true} }
	for _, tc := range []struct {
		name    string
		cur     seatConfig
		members []seatMember
		want    []string // nil: no change
	}{
		{"fills up to the seats wanted with the lowest name", cfgOf(1, "a"), []seatMember{ready("a"), ready("c"), ready("b")}, []string{"a", "b"}},
		{"a witness first", cfgOf(1, "a", "b"), []seatMember{ready("a"), ready("b"), ready("c"), {Name: "w", Witness: true, Ready: true}}, []string{"a", "b", "w"}},
		{"no member that is still recovering", cfgOf(1, "a", "b"), []seatMember{ready("a"), ready("b"), {Name: "c"}}, nil},
		{"no change when full", cfgOf(1, "a", "b", "c"), []seatMember{ready("a"), ready("b"), ready("c"), ready("d")}, nil},
		{"a seat down but not long is kept", cfgOf(1, "a", "b", "c"), []seatMember{ready("a"), ready("b"), {Name: "c", Absent: 30 * time.Second}, ready("d")}, nil},
		{"a seat long dead is vacated first", cfgOf(1, "a", "b", "c"), []seatMember{ready("a"), ready("b"), {Name: "c", Absent: 2 * time.Minute}, ready("d")}, []string{"a", "b"}},
		{"a leaver's seat is vacated", cfgOf(1, "a", "b", "c"), []seatMember{ready("a"), {Name: "b", Ready: true, Leaving: true}, ready("c")}, []string{"a", "c"}},
		{"of two seats, a replacement comes first", cfgOf(1, "a", "b"), []seatMember{ready("a"), {Name: "b", Leaving: true}, ready("c")}, []string{"a", "b", "c"}},
		{"of two seats, none is vacated while another member may yet be ready", cfgOf(1, "a", "b"), []seatMember{ready("a"), {Name: "b", Absent: time.Hour}, {Name: "c"}}, nil},
		{"the last member keeps a lone seat", cfgOf(1, "a", "b"), []seatMember{ready("a"), {Name: "b", Leaving: true}}, []string{"a"}},
		{"a surplus goes, a seat not ready first", cfgOf(1, "a", "b", "c", "d"), []seatMember{ready("a"), {Name: "b"}, ready("c"), ready("d")}, []string{"a", "c", "d"}},
		{"two seats at least", cfgOf(1, "a"), []seatMember{ready("a"), ready("b")}, []string{"a", "b"}},
		{"four members hold three seats", cfgOf(1, "a", "b", "c"), []seatMember{ready("a"), ready("b"), ready("c"), ready("d")}, nil},
		{"four seats of four members become three", cfgOf(1, "a", "b", "c", "d"), []seatMember{ready("a"), ready("b"), ready("c"), ready("d")}, []string{"a", "b", "c"}},
		{"five members hold five seats", cfgOf(1, "a", "b", "c", "d"), []seatMember{ready("a"), ready("b"), ready("c"), ready("d"), ready("e")}, []string{"a", "b", "c", "d", "e"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policy
			switch tc.name {
			case "two seats at least":
				p.Seats = 1
			case "four members hold three seats", "four seats of four members become three", "five members hold five seats":
				p.Seats = 5
			}
			got, changed := p.next(tc.cur, tc.members)
			if tc.want == nil {
				if changed {
					t.Fatalf("proposed %v; want no change from %v", got.Seats, tc.cur.Seats)
				}
				return
			}
			if !changed || got.Version != tc.cur.Version+1 || !slices.Equal(got.Seats, tc.want) {
				t.Fatalf("proposed %v (changed %v); want version %d %v", got, changed, tc.cur.Version+1, tc.want)
			}
		})
	}
	members := []seatMember{{Name: "a", Absent: time.Second}, {Name: "b", Ready: true}, ready("c")}
	if got := policy.proposer(cfgOf(1, "a", "b", "c"), members); got != "b" {
		t.Fatalf("proposer %q; want b, the lowest-named seat that is ready and present", got)
	}
	if got := policy.proposer(cfgOf(1, "a"), members); got != "" {
		t.Fatalf("proposer %q of a config whose only seat is missing; want none", got)
	}
}

// From any config and membership, the policy's changes, applied one
// after another, are each one seat apart, add only members that are
// ready, present and staying, never leave fewer than two seats while two
// members could hold them, and stop within a bounded number of steps at
// a config that holds no vacated seat it could replace and has the seats
// wanted, or every candidate.
func TestTheSeatPolicySettles(t *testing.T) {
	for seed := range uint64(2000) {
		rng := rand.New(rand.NewPCG(seed, 0x5ea7))
		policy := seatPolicy{Seats: 1 + rng.IntN(7), DeadFor: time.Minute}
		var members []seatMember
		for i := range 1 + rng.IntN(9) {
			m := seatMember{Name: fmt.Sprintf("n%d", i), Witness: rng.IntN(6) == 0, Ready: rng.IntN(4) > 0, Leaving: rng.IntN(8) == 0}
			if rng.IntN(6) == 0 {
				m.Absent = time.Duration(rng.IntN(120)) * time.Second
			}
			members = append(members, m)
		}
		var seats []string
		for _, m := range members {
			if rng.IntN(2) == 0 {
				seats = append(seats, m.Name)
			}
		}
		if len(seats) == 0 {
			seats = []string{members[0].Name}
		}
		cur := cfgOf(1, seats...)
		eligible := policy.eligible(members)
		steps := 0
		for ; steps < 4*len(members)+4; steps++ {
			next, changed := policy.next(cur, members)
			if !changed {
				break
			}
			if !cur.oneApart(next) || next.Version != cur.Version+1 {
				t.Fatalf("seed %d: %v to %v is not one seat apart", seed, cur, next)
			}
			for _, name := range next.Seats {
				if cur.holds(name) {
					continue
				}
				m := members[slices.IndexFunc(members, func(m seatMember) bool { return m.Name == name })]
				if !m.Ready || m.Leaving || m.Absent > 0 {
					t.Fatalf("seed %d: %v to %v adds %+v", seed, cur, next, m)
				}
			}
			if len(next.Seats) < len(cur.Seats) && len(next.Seats) < 2 && eligible >= 2 {
				t.Fatalf("seed %d: %v to %v leaves one seat while %d members could hold two (%+v)", seed, cur, next, eligible, members)
			}
			cur = next
		}
		if _, changed := policy.next(cur, members); changed {
			t.Fatalf("seed %d: still changing after %d steps at %v (%+v)", seed, steps, cur, members)
		}
		cands := len(policy.candidates(cur, members))
		if len(cur.Seats) < seatTarget(policy.Seats, len(cur.Seats)+cands) {
			t.Fatalf("seed %d: settled at %v with %d seats wanted and candidates left (%+v)", seed, cur, policy.Seats, members)
		}
		if n := len(cur.Seats); n > 2 && n%2 == 0 {
			t.Fatalf("seed %d: settled at %v, an even number of seats above two (%+v)", seed, cur, members)
		}
		if len(cur.Seats) > max(policy.Seats, 2) {
			t.Fatalf("seed %d: settled at %v, more than the %d seats wanted", seed, cur, max(policy.Seats, 2))
		}
		for _, name := range cur.Seats {
			if policy.seatGone(name, members) && (len(cur.Seats) > 2 || cands > 0) {
				t.Fatalf("seed %d: settled at %v keeping vacated seat %s (%+v)", seed, cur, name, members)
			}
		}
	}
}
