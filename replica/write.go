package replica

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/ring"
)

// The write path: the primary applies a write to its copy (apply),
// replicates the result to the buddy (methodReplicate), and stores it and
// acknowledges only once the buddy has stored it. Both stores happen only
// by the ring the write was routed by (store.putUnder).

// methodReplicate carries a primary's write to its buddy.
const methodReplicate = "replicate"

// replicateRequest is one write, sent by the primary to the buddy. It
// carries the whole session, so a buddy that missed earlier versions still
// ends with the latest.
type replicateRequest struct {
	From      string   `msgpack:"f"`
	Epoch     uint64   `msgpack:"e"`
	Partition int      `msgpack:"p"`
	Session   *Session `msgpack:"s"`
	// Floor is the partition's generation floor at the primary: the
	// buddy raises its own to it, dropping copies from before the
	// partition was rebuilt (store.raiseFloor).
	Floor uint64 `msgpack:"fl,omitempty"`
	// Confirmed carries the primary's queued confirmations for this buddy
	// (confirm.go), whatever their partitions.
	Confirmed []confirmItem `msgpack:"c,omitempty"`
}

// write applies a write op as the session's primary (the gate has
// admitted it): it replicates the new version to the buddy, then stores
// it.
func (n *Node) write(ctx context.Context, tab *ring.Table, p int, op *Op) (*Session, error) {
	unlock := n.store.lock(op.ID)
	defer unlock()
	// As a read (route.go): judged against this node's copy, which may
	// differ from the buddy's, a precondition could answer for a version
	// the buddy's readers do not see.
	if err := n.settled(ctx, p, op.ID); err != nil {
		return nil, err
	}
	s, err := n.writeOnce(ctx, tab, p, op)
	if inDoubt(err) {
		n.doubts.add(p, op.ID)
	}
	if errors.Is(err, ErrStale) {
		// The buddy holds a newer copy than this primary: one an earlier
		// write made whose acknowledgement was lost (the buddy stored it,
		// its answer never came back, and this node stored nothing). That
		// write was never acknowledged, so it may take effect now: the
		// primary adopts the buddy's copy and applies op on top of it (a
		// retry of that very write, by its request id, finds it applied).
		// Without this the session would take no write until a ring change.
		if _, aerr := n.adoptBuddyCopy(ctx, tab, p, op.ID); aerr != nil {
			return nil, fmt.Errorf("%w (and the buddy's copy could not be adopted: %v)", err, aerr)
		}
		s, err = n.writeOnce(ctx, tab, p, op)
		if inDoubt(err) {
			n.doubts.add(p, op.ID)
		}
	}
	return s, err
}

// adoptBuddyCopy fetches partition p's buddy's copy of session id and
// keeps it if it is newer than this node's, and reports whether both
// owners now hold the same copy (or neither holds one). The caller holds
// id's lock.
func (n *Node) adoptBuddyCopy(ctx context.Context, tab *ring.Table, p int, id string) (agreed bool, err error) {
	buddy := tab.Owners(p).Buddy
	var reply ReadReply
	// Asked by this ring, a buddy that has not yet learned whether it
	// was declared dead finds out first (knowsItsStanding).
	req := ReadRequest{Partition: p, ID: id, Raw: true, Ring: tab.Fingerprint(), From: n.cfg.Name}
	if err := n.call(ctx, tab, buddy, methodRead, req, &reply); err != nil {
		return false, fmt.Errorf("read %s from buddy %s: %w", id, buddy, err)
	}
	if reply.OtherRing {
		return false, fmt.Errorf("%w: buddy %s serves by another ring", ErrUnavailable, buddy)
	}
	if reply.Unconfirmed || reply.Distrusts {
		// Its copy may be of a session lost while it was stopped, or
		// older than what was acknowledged since: not one to build on.
		return false, fmt.Errorf("%w: buddy %s resumed after a pause or was declared dead, and has not caught up", ErrUnavailable, buddy)
	}
	n.learnFloor(p, reply.Floor, buddy, false)
	theirs := reply.Session
	if theirs != nil && (theirs.ID != id || theirs.Gen < n.store.lossGeneration(p)) {
		theirs = nil // another session, or a copy from before a reported loss of the partition
	}
	if theirs != nil {
		if prev := n.store.get(p, id); newer(theirs, prev) {
			n.stats.BuddyCopiesAdopted.Add(1)
		}
		_ = n.merge(p, theirs, nil) // the caller holds id's lock and checks the ring when it writes
	}
	mine := n.store.get(p, id)
	switch {
	case mine == nil:
		return theirs == nil, nil
	case theirs != nil && markOf(mine) == markOf(theirs):
		n.confirms.add(buddy, p, mine) // both copies are this one now
		return true, nil
	}
	return false, nil
}

// writeOnce is write's one attempt; the caller holds op.ID's lock.
func (n *Node) writeOnce(ctx context.Context, tab *ring.Table, p int, op *Op) (*Session, error) {
	prev := n.store.get(p, op.ID)
	if a, ok := prev.applied(op.RequestID); ok {
		if a.Hash != 0 && a.Hash != opHash(op) {
			// The id of a request this session took, on another request.
			return nil, fmt.Errorf("%w: request id %q made v%d of %s from a request with other content", ErrRequestReused, op.RequestID, a.Version, op.ID)
		}
		// A retry of a write this session already took, perhaps on another
		// primary before a failover.
		n.stats.Duplicates.Add(1)
		if v := a.Version; v != prev.Version {
			return nil, fmt.Errorf("%w: request %s made v%d of %s, now at v%d", ErrIndeterminate, op.RequestID, v, op.ID, prev.Version)
		}
		// Answered only once this ring's buddy holds the copy too, as a
		// first attempt is: the copy may have come here by a hand-off or
		// a fetch from the previous buddy, the one copy of a first
		// attempt its primary could not store (errAtBuddyOnly), and this
		// ring's buddy may lack it (CHAOS.md F26).
		if buddy := tab.Owners(p).Buddy; buddy != "" {
			if err := n.replicate(ctx, tab, p, buddy, prev); err != nil {
				return nil, fmt.Errorf("retry of request %s: %w", op.RequestID, err)
			}
			n.confirms.add(buddy, p, prev)
		}
		if prev.Deleted {
			return nil, nil
		}
		return prev, nil
	}
	if op.RequestID != "" && prev.mayHaveForgotten(op.FirstSent) {
		// A retry whose first attempt may have been applied before the
		// session's last recentRequests writes: applying it again could
		// apply it twice (chaos finding F18).
		return nil, fmt.Errorf("%w: request %s was first sent before %s forgot requests it had applied: it may have been applied; read the session", ErrIndeterminate, op.RequestID, op.ID)
	}
	now := n.wall()
	next, err := apply(op, prev, now, n.clock.now(now), n.cfg.Name, n.lim)
	if err != nil {
		return nil, err
	}
	if prev != nil {
		next.Gen = prev.Gen
	}
	next.Gen = max(next.Gen, n.store.generation(p))
	buddy := tab.Owners(p).Buddy
	if buddy != "" {
		if err := n.replicate(ctx, tab, p, buddy, next); err != nil {
			return nil, err
		}
	} else {
		n.stats.UnderReplicatedWrites.Add(1)
	}
	if _, _, err := n.store.putUnder(p, next, false, n.storesUnder(tab, p)); err != nil {
		// Not stored here, but the buddy holds it, unconfirmed: the
		// caller retries with the same request id by the new ring.
		return nil, fmt.Errorf("write %s v%d: %w: %w", op.ID, next.Version, errAtBuddyOnly, err)
	}
	if buddy != "" {
		n.confirms.add(buddy, p, next)
	}
	n.stats.Writes.Add(1)
	if next.Deleted {
		return nil, nil
	}
	return next, nil
}

// replicate sends copy s of partition p to buddy, and returns once the
// buddy holds it.
func (n *Node) replicate(ctx context.Context, tab *ring.Table, p int, buddy string, s *Session) error {
	req := replicateRequest{From: n.cfg.Name, Epoch: tab.Epoch(), Partition: p, Session: s, Floor: n.store.floor(p),
		Confirmed: n.confirms.take(buddy)}
	sent := time.Now()
	err := n.call(ctx, tab, buddy, methodReplicate, req, nil)
	n.stats.ReplicationLatency.Observe(time.Since(sent))
	if err != nil {
		if len(req.Confirmed) > 0 {
			n.confirms.requeue(buddy, req.Confirmed)
		}
		n.stats.ReplicationFailures.Add(1)
		return fmt.Errorf("replicate %s v%d to %s: %w", s.ID, s.Version, buddy, err)
	}
	return nil
}

// storesUnder returns the check, for store.putUnder, under which a write
// or a replica of partition p is stored: tab is still the ring this node
// serves by (a node that has moved to a new ring, and so may have answered
// a new owner, stores nothing more by its old one), and the node does not
// distrust p. A node that learns it was declared dead marks its partitions
// distrusted, then pulls them from an owner and replaces its copies with
// that owner's (replaceOwnIfDeclaredDead); a write the gate admitted before
// the mark and stored after it may be missing from the owner's copies, and
// would go with the node's own. Refused, it is not acknowledged: its caller
// retries once the node has caught up.
func (n *Node) storesUnder(tab *ring.Table, p int) func() error {
	return func() error {
		st := n.own.load()
		if st.tab != tab {
			return fmt.Errorf("%w: %s's ring changed (epoch %d to %d) while it served a request", ErrNotOwner, n.cfg.Name, tab.Epoch(), st.tab.Epoch())
		}
		if st.distrusts(p) {
			return fmt.Errorf("%w: %s learned it was declared dead while it served a request, and is catching up on partition %d", ErrUnavailable, n.cfg.Name, p)
		}
		return nil
	}
}

// serveReplicate stores a write sent by the primary, once the gate admits
// it: only from the node this one sees as the partition's primary, while
// it sees itself as the buddy, and not while the partition is fenced.
func (n *Node) serveReplicate(ctx context.Context, tab *ring.Table, body msgpack.RawMessage) (any, error) {
	var req replicateRequest
	if err := decodePartitioned(body, &req, &req.Partition, tab); err != nil {
		return nil, err
	}
	n.applyConfirms(req.Confirmed) // facts about earlier writes, whatever becomes of this one
	return empty{}, n.storeReplica(ctx, tab, &req)
}

// storeReplica stores a replicated write once the gate admits it.
func (n *Node) storeReplica(ctx context.Context, tab *ring.Table, req *replicateRequest) error {
	if req.Session == nil || ValidateID(req.Session.ID) != nil || tab.Partition(req.Session.ID) != req.Partition {
		return fmt.Errorf("%w: malformed replicate request", ErrInvalid)
	}
	if err := n.admit(ctx, admission{entry: entryReplica, tab: tab, p: req.Partition, from: req.From}); err != nil {
		if errors.Is(err, errFenced) {
			n.stats.FenceWaits.Add(1)
			// A fence that waits for the members to show they moved on
			// (ownership.departedWait) learns it from their lease
			// replies: the node renews its leases while it is asked.
			n.renewals.markLeaseUse(n.mono(), n.cfg.LeaseDuration/6)
		}
		return err
	}
	n.clock.observe(req.Session.Stamp)
	n.learnFloor(req.Partition, req.Floor, req.From, false)
	prev, stored, err := n.store.putReplica(req.Partition, req.Session, n.storesUnder(tab, req.Partition))
	if err != nil {
		return err
	}
	if !stored && (prev.Version > req.Session.Version || conflicting(prev, req.Session)) {
		return fmt.Errorf("%w: %s holds v%d of %s, refused v%d", ErrStale, n.cfg.Name, prev.Version, req.Session.ID, req.Session.Version)
	}
	n.stats.Replicated.Add(1)
	return nil
}

// limits are the node settings apply needs; zero bounds mean none.
type limits struct {
	maxBytes        int
	maxAttributes   int
	maxNameBytes    int
	idleTimeout     time.Duration
	absoluteTimeout time.Duration
}

// apply computes the session that a write op makes of prev, the stored copy
// (nil, a tombstone or expired when the session does not exist for readers).
// It is pure: the caller replicates and stores the result.
func apply(op *Op, prev *Session, now time.Time, stamp uint64, writer string, lim limits) (*Session, error) {
	exists := prev.live(now)
	if op.IfVersion != 0 && (!exists || prev.Version != op.IfVersion) {
		have := uint64(0)
		if exists {
			have = prev.Version
		}
		return nil, fmt.Errorf("%w: %s wants version %d, have %d", ErrConflict, op.ID, op.IfVersion, have)
	}
	var base uint64
	if prev != nil {
		base = prev.Version // versions keep growing across deletes and expiry
	}
	next := &Session{ID: op.ID, Version: base + 1, LastAccess: now, Stamp: stamp, Writer: writer}
	remember(next, prev, op, stamp)
	if err := checkNames(op, lim); err != nil {
		return nil, err
	}

	switch op.Kind {
	case OpPut:
		if op.IfAbsent && exists {
			return nil, fmt.Errorf("%w: %s already exists at version %d", ErrConflict, op.ID, prev.Version)
		}
		next.Principal = op.Principal
		next.Attributes = EncodeAttributes(op.Attributes)
		next.Created = now
		if exists {
			next.Created = prev.Created
		}
		next.IdleTimeout = pick(op.IdleTimeout, lim.idleTimeout)
		if abs := pick(op.AbsoluteTimeout, lim.absoluteTimeout); abs > 0 {
			next.Deadline = next.Created.Add(abs)
		}
	case OpPatch:
		if !exists {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, op.ID)
		}
		next.Principal, next.Created, next.IdleTimeout, next.Deadline = prev.Principal, prev.Created, prev.IdleTimeout, prev.Deadline
		if op.SetPrincipal {
			next.Principal = op.Principal
		}
		attrs, err := patchAttributes(prev.Attributes, op)
		if err != nil {
			return nil, err
		}
		next.Attributes = attrs
	case OpDelete:
		if !exists {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, op.ID)
		}
		next.Deleted = true
		next.Created = prev.Created
	default:
		return nil, fmt.Errorf("%w: %s is not a write", ErrInvalid, op.Kind)
	}

	if !next.Deleted {
		if err := checkCount(op, prev, next, lim); err != nil {
			return nil, err
		}
		size, err := encodedSize(next)
		if err != nil {
			return nil, fmt.Errorf("%w: encode %s: %v", ErrInvalid, op.ID, err)
		}
		if lim.maxBytes > 0 && size > lim.maxBytes {
			return nil, fmt.Errorf("%w: %s would be %d bytes, limit %d", ErrTooLarge, op.ID, size, lim.maxBytes)
		}
	}
	return next, nil
}

// remember carries prev's record of recent requests into next, the
// session op makes of it at stamp, and adds op's own (if it names one):
// the oldest records past recentRequests are forgotten, and next.Forgot
// keeps the stamp of the latest one forgotten (a retry first sent before
// it is refused as indeterminate).
func remember(next, prev *Session, op *Op, stamp uint64) {
	if prev != nil {
		keep := max(0, len(prev.Recent)-recentRequests+1)
		next.Recent, next.Forgot = prev.Recent[keep:], prev.Forgot
		for _, dropped := range prev.Recent[:keep] {
			at := dropped.At
			if at == 0 {
				at = stamp // a record from before At: it was applied no later than now
			}
			next.Forgot = max(next.Forgot, at)
		}
	}
	if op.RequestID != "" {
		next.Recent = append(slices.Clip(next.Recent), Applied{Request: op.RequestID, Version: next.Version, Hash: opHash(op), At: stamp})
	}
}

// pick returns v, or def when v is zero.
func pick(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// patchAttributes returns new attributes: prev with op's sets, merges
// and deletes applied. prev is not changed.
func patchAttributes(prev Attributes, op *Op) (Attributes, error) {
	out, err := prev.Map()
	if err != nil {
		return nil, fmt.Errorf("attributes of %s: %w", op.ID, err)
	}
	for name, v := range op.Set {
		out[name] = v
	}
	for name, patch := range op.Merge {
		merged, err := mergeValue(out[name], patch)
		if err != nil {
			return nil, fmt.Errorf("%w: merge attribute %q: %v", ErrInvalid, name, err)
		}
		if merged == nil {
			delete(out, name)
		} else {
			out[name] = merged
		}
	}
	for _, name := range op.Delete {
		delete(out, name)
	}
	return EncodeAttributes(out), nil
}

// mergeValue applies an RFC 7396 merge patch to an encoded value and returns
// the encoded result, or nil when the result is null.
func mergeValue(target, patch msgpack.RawMessage) (msgpack.RawMessage, error) {
	var t, p any
	if len(target) > 0 {
		if err := msgpack.Unmarshal(target, &t); err != nil {
			return nil, err
		}
	}
	if err := msgpack.Unmarshal(patch, &p); err != nil {
		return nil, err
	}
	r := mergePatch(t, p)
	if r == nil {
		return nil, nil
	}
	return msgpack.Marshal(r)
}

// mergePatch is RFC 7396's MergePatch over decoded values.
func mergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	} else {
		tm = maps.Clone(tm)
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
			continue
		}
		tm[k] = mergePatch(tm[k], v)
	}
	return tm
}
