package replica

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// The principal index lists exactly the copies each principal has in a
// partition, through random puts (principals changing, a principal
// growing past the short slice and shrinking back), removals, sweeps and
// drops: checked against a scan of the copies after every step.
func TestThePrincipalIndexFollowsTheCopies(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	s := newStore(4)
	const p = 2
	principals := []string{"", "alice", "bob", "carol"}
	check := func(step int) {
		t.Helper()
		want := map[string][]string{}
		for id, sess := range s.parts[p].sessions {
			if sess.Principal != "" {
				want[sess.Principal] = append(want[sess.Principal], id)
			}
		}
		for _, principal := range principals[1:] {
			got := s.ofPrincipal(p, principal)
			slices.Sort(got)
			slices.Sort(want[principal])
			if !slices.Equal(got, want[principal]) {
				t.Fatalf("step %d: %s's copies listed as %v, want %v", step, principal, got, want[principal])
			}
		}
		if got := s.parts[p].principals.len(); got != len(want) {
			t.Fatalf("step %d: the index lists %d principals, the copies have %d", step, got, len(want))
		}
	}
	crossed := false
	for step := range 20000 {
		id := fmt.Sprintf("session-%03d", rng.IntN(60))
		switch r := rng.IntN(100); {
		case r < 70:
			principal := principals[rng.IntN(len(principals))]
			if rng.IntN(3) > 0 {
				principal = "alice" // so that alice often has more than principalFew
			}
			s.putUnder(p, &Session{ID: id, Principal: principal, Version: uint64(step + 1)}, false, nil)
		case r < 95:
			part := s.parts[p]
			part.mu.Lock()
			part.setLocked(id, nil)
			part.mu.Unlock()
		case r < 99:
			s.sweep(p, func(sess *Session) bool { return rng.IntN(4) == 0 })
		default:
			s.drop(p)
		}
		if len(s.parts[p].principals.many) > 0 {
			crossed = true
		}
		check(step)
	}
	if !crossed {
		t.Fatal("no principal ever had more copies than principalFew: the set was never tested")
	}
}
