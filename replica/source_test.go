package replica

import (
	"errors"
	"testing"
)

// What a node takes from one source's answer, in a hand-off and in a
// reconciliation, with and without AllowMinority: one table for pulls
// and fetches alike.
func TestJudgeSource(t *testing.T) {
	tab := tableOf(t, 1, "a", "b", "c", "d")
	p := 0
	owners := tab.Owners(p)
	var owner, former string
	for _, m := range []string{"a", "b", "c", "d"} {
		switch {
		case owns(owners, m) && owner == "":
			owner = m
		case !owns(owners, m) && former == "":
			former = m
		}
	}
	if owner == "" || former == "" {
		t.Fatalf("partition %d has no owner and non-owner among a, b, c, d: owners %v", p, owners)
	}
	handoff := sourceAsk{handoff: true}
	reconcile := sourceAsk{}
	deadHandoff := sourceAsk{handoff: true, distrust: true}
	minority := sourceAsk{allowMinority: true}
	minorityHandoff := sourceAsk{handoff: true, allowMinority: true}
	lostReconcile := sourceAsk{afterLoss: true}
	lostHandoff := sourceAsk{handoff: true, afterLoss: true}
	lostMinority := sourceAsk{afterLoss: true, allowMinority: true}
	cases := []struct {
		name   string
		src    string
		answer sourceAnswer
		ask    sourceAsk
		want   sourceVerdict
	}{
		{"an owner's copies are taken", owner, sourceAnswer{}, handoff, sourceVerdict{take: true}},
		{"an owner's copies are taken in a reconciliation", owner, sourceAnswer{}, reconcile, sourceVerdict{take: true}},
		{"a blank owner counts as blank", owner, sourceAnswer{blank: true}, handoff, sourceVerdict{take: true, blank: true}},
		{"a source on another ring is asked again", owner, sourceAnswer{otherRing: true}, reconcile, sourceVerdict{err: errOtherRing}},
		{"an unconfirmed source is waited for in a hand-off", owner, sourceAnswer{unconfirmed: true}, handoff, sourceVerdict{err: errUnconfirmed}},
		{"an unconfirmed source is skipped in a reconciliation", owner, sourceAnswer{unconfirmed: true, blank: true}, reconcile, sourceVerdict{}},
		{"a distrusted source gives nothing", owner, sourceAnswer{distrusts: true, holds: true, blank: true}, handoff, sourceVerdict{}},
		{"a distrusted source gives nothing in a reconciliation", owner, sourceAnswer{distrusts: true, holds: true}, reconcile, sourceVerdict{}},
		{"a node declared dead merges a distrusted source", owner, sourceAnswer{distrusts: true}, deadHandoff, sourceVerdict{take: true}},
		{"with AllowMinority a distrusted source is merged", owner, sourceAnswer{distrusts: true}, minorityHandoff, sourceVerdict{take: true}},
		{"a former owner that vouches is taken", former, sourceAnswer{holds: true}, handoff, sourceVerdict{take: true}},
		{"a former owner that does not vouch is stale", former, sourceAnswer{}, handoff, sourceVerdict{}},
		{"a stale source still says it is blank", former, sourceAnswer{blank: true}, handoff, sourceVerdict{blank: true}},
		{"a reconciliation skips a stale source", former, sourceAnswer{}, reconcile, sourceVerdict{}},
		{"with AllowMinority a reconciliation merges a stale source", former, sourceAnswer{}, minority, sourceVerdict{take: true}},
		{"with AllowMinority a hand-off still skips a stale source", former, sourceAnswer{}, minorityHandoff, sourceVerdict{}},
		{"after a reported loss a former owner that vouches gives nothing", former, sourceAnswer{holds: true}, lostReconcile, sourceVerdict{}},
		{"after a reported loss a hand-off skips a former owner that vouches", former, sourceAnswer{holds: true, blank: true}, lostHandoff, sourceVerdict{blank: true}},
		{"after a reported loss an owner's copies are taken", owner, sourceAnswer{holds: true}, lostReconcile, sourceVerdict{take: true}},
		{"with AllowMinority a former owner's copies merge after a loss", former, sourceAnswer{holds: true}, lostMinority, sourceVerdict{take: true}},
		{"after an owner's answer a former owner that vouches gives nothing", former, sourceAnswer{holds: true}, sourceAsk{handoff: true, ownersFirst: true}, sourceVerdict{}},
		{"after an owner's answer a former owner on another ring is still waited for", former, sourceAnswer{otherRing: true}, sourceAsk{handoff: true, ownersFirst: true}, sourceVerdict{err: errOtherRing}},
		{"after an owner's answer an owner's copies are taken", owner, sourceAnswer{holds: true}, sourceAsk{handoff: true, ownersFirst: true}, sourceVerdict{take: true}},
	}
	for _, c := range cases {
		got := judgeSource(tab, p, c.src, c.answer, c.ask)
		if !errors.Is(got.err, c.want.err) || (got.err == nil) != (c.want.err == nil) || got.take != c.want.take || got.blank != c.want.blank {
			t.Errorf("%s: got %+v, want %+v", c.name, got, c.want)
		}
	}
}

// Pulls and raw reads carry the same standing to judgeSource.
func TestRepliesCarryTheirStanding(t *testing.T) {
	want := sourceAnswer{otherRing: true, unconfirmed: true, distrusts: true, holds: true, blank: true}
	pr := pullReply{OtherRing: true, Unconfirmed: true, Distrusts: true, Holds: true, Blank: true}
	rr := ReadReply{OtherRing: true, Unconfirmed: true, Distrusts: true, Holds: true, Blank: true}
	if pr.answer() != want || rr.answer() != want {
		t.Fatalf("pull %+v, read %+v; want %+v", pr.answer(), rr.answer(), want)
	}
}
