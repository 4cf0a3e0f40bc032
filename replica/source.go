package replica

import "github.com/tandem-io/tandem/ring"

// sourceAnswer is what a node weighs in one source's answer to a pull
// (pullReply) or a raw read (ReadReply) before it takes any copy from it:
// the same judgement serves a hand-off and a reconciliation, whole
// partitions and single sessions (judgeSource).
type sourceAnswer struct {
	otherRing   bool // the source refused: its ring is not the asker's
	unconfirmed bool // the source resumed after a pause and does not know its standing yet
	distrusts   bool // the source was declared dead and has not caught up
	holds       bool // the source vouches for its hold to the asker
	blank       bool // the source is young and knows nothing of the partition
}

func (r *pullReply) answer() sourceAnswer {
	return sourceAnswer{otherRing: r.OtherRing, unconfirmed: r.Unconfirmed, distrusts: r.Distrusts, holds: r.Holds, blank: r.Blank}
}

func (r *ReadReply) answer() sourceAnswer {
	return sourceAnswer{otherRing: r.OtherRing, unconfirmed: r.Unconfirmed, distrusts: r.Distrusts, holds: r.Holds, blank: r.Blank}
}

// sourceAsk says how a node asks a source: in a hand-off (by its ring)
// or a reconciliation, itself declared dead or not, and whether the
// cluster lets a minority acknowledge writes (Config.AllowMinority).
type sourceAsk struct {
	handoff       bool
	distrust      bool
	allowMinority bool
	// afterLoss: the asker reported the partition lost and owns it still
	// (partState.reportedLost).
	afterLoss bool
	// ownersFirst: in this pull round an owner failed, or one that holds
	// the partition, takes it from no one and trusts its copies answered
	// (Node.pullSources): no non-owner's copies are merged.
	ownersFirst bool
}

// sourceVerdict is what to do with one source's answer: err says to try
// again later (the source cannot answer yet; wrap it with
// ErrUnavailable); take, to merge the copies it sent; blank, whether the
// source counts as knowing nothing of the partition when the asker
// looks for a cluster that is starting (Node.blank).
type sourceVerdict struct {
	err   error
	take  bool
	blank bool
	// sinceLoss: take only the copies of the generation a reported loss
	// began or later (partition.lossGen), when it is known: the rest
	// are what the loss took.
	sinceLoss bool
}

// judgeSource decides, without I/O, what a node taking partition p over
// or reconciling it does with source src's answer a, under ring tab:
//
//   - A source on another ring is asked again once the rings agree.
//   - An unconfirmed source is waited for in a hand-off, and skipped in a
//     reconciliation: an owner holds every acknowledged write, and
//     waiting would hold up the partition's writes (chaos finding F17,
//     session 588 of the 30-minute run at 2e4bd53).
//   - A distrusted source's copies may be older than what was
//     acknowledged since and nothing tells which: no owner builds on
//     them. A node itself declared dead merges them, as two sides of a
//     healed cut do, and so does every node with AllowMinority, where a
//     node declared dead may hold writes acknowledged on its side.
//   - A stale source's copies (stale) are a former owner's leftovers:
//     skipped by hand-offs, and by reconciliations too, since one merged
//     after a loss was reported brought the session back (chaos finding
//     F17, session 230 of the 60-minute run at e9d1ae5). With
//     AllowMinority a reconciliation merges them: they may be one side's
//     writes, merged as a split brain heals.
//   - Once the asker has reported the partition lost (afterLoss), a
//     source that does not own it gives nothing, even one that vouches
//     for its hold: its copies are from before the loss, which took them
//     (partState.reportedLost). Nor in a pull round where an owner
//     failed or a trusted owner holding the partition answered
//     (ownersFirst). AllowMinority merges them, as above.
//
// A source skipped for its standing (unconfirmed, distrusted) knows the
// partition had owners, so it is never blank; a stale one is blank if it
// says so.
func judgeSource(tab *ring.Table, p int, src string, a sourceAnswer, ask sourceAsk) sourceVerdict {
	switch {
	case a.otherRing:
		return sourceVerdict{err: errOtherRing}
	case a.unconfirmed && ask.handoff:
		return sourceVerdict{err: errUnconfirmed}
	case a.unconfirmed:
		return sourceVerdict{}
	case a.distrusts && !ask.distrust && !ask.allowMinority:
		return sourceVerdict{}
	case (ask.handoff || !ask.allowMinority) && stale(tab, p, src, a.holds):
		return sourceVerdict{blank: a.blank}
	case ask.ownersFirst && !ask.allowMinority && !owns(tab.Owners(p), src):
		return sourceVerdict{blank: a.blank}
	case ask.afterLoss && !ask.allowMinority && !owns(tab.Owners(p), src):
		return sourceVerdict{blank: a.blank, sinceLoss: true}
	}
	return sourceVerdict{take: true, blank: a.blank}
}

// stale reports whether a source's copies of partition p are no new
// owner's to merge: src does not own p in tab (the ring the hand-off is
// served by, the source's too) and does not vouch for its hold to this
// node (ownState.vouches, the reply's Holds). It stopped owning p in
// favour of other runs, which have written since where it does not; a
// copy it kept may be older than what they acknowledged, and merged into
// a partition they lost it would be served rewound, or served after the
// loss was reported and gone again when the owners agree (chaos finding
// F17). An owner's copies are always merged: they include what it was
// written while it took the partition over.
func stale(tab *ring.Table, p int, src string, vouched bool) bool {
	return !vouched && !owns(tab.Owners(p), src)
}
