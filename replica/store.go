package replica

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
)

// store holds this node's copies, one map per partition. Whether a
// partition's copies are primary or buddy copies is the ring's to say; a
// node holds each partition in at most one role, so the two kinds of copy
// never share a map.
type store struct {
	parts []*partition
	// locks serialise writes to one session on its primary, striped by id
	// hash so that no per-session lock outlives its session.
	locks [1024]sync.Mutex
}

// partition is the copies of one partition's sessions, with an index of
// their principals.
type partition struct {
	mu         sync.RWMutex
	sessions   map[string]*Session
	principals principalIndex
	touched    []touchItem // last accesses the primary has yet to send to the buddy
	gen        uint64      // the partition's generation: the highest of its copies', or set when it was rebuilt
	floor      uint64      // copies of a lower generation are gone: the generation it was last rebuilt at, here or where this node heard of it
	// lossGen is the generation a reported loss of the partition began
	// (its reporter's, for a report this node took from another owner):
	// copies of a lower one are from before the loss; 0 if unknown.
	lossGen uint64
	// unconfirmed marks the buddy copies stored by a replica whose primary
	// has not yet said it stored that write too (confirm.go): such a copy
	// is not shown to readers. A mark names the copy it was made for, and
	// any other store of the session removes it.
	unconfirmed map[string]copyMark
}

// copyMark names one copy of a session: the write that made it.
type copyMark struct {
	Version uint64 `msgpack:"v"`
	Stamp   uint64 `msgpack:"hlc"`
	Writer  string `msgpack:"w,omitempty"`
}

// markOf returns the mark of copy s.
func markOf(s *Session) copyMark {
	return copyMark{Version: s.Version, Stamp: s.Stamp, Writer: s.Writer}
}

// setLocked stores sess (or removes id when sess is nil) and keeps the
// principal index in step. The caller holds part.mu.
func (part *partition) setLocked(id string, sess *Session) {
	delete(part.unconfirmed, id)
	var was, is string
	if old := part.sessions[id]; old != nil {
		was = old.Principal
	}
	if sess != nil {
		is = sess.Principal
	}
	if was != is {
		part.principals.remove(was, id)
		part.principals.add(is, id)
	}
	if sess == nil {
		delete(part.sessions, id)
		return
	}
	part.sessions[id] = sess
}

// principalIndex lists the ids of each principal's copies in one
// partition. Most principals have a session or two in a partition, so
// their ids are a short slice (a slice of one id is 16 bytes; a set of
// one was about 200, a tenth of a copy); a principal with more than
// principalFew has a set, so that removing one id stays cheap.
type principalIndex struct {
	few  map[string][]string
	many map[string]map[string]struct{}
}

// principalFew is the most ids a principal's slice holds.
const principalFew = 16

// newPrincipalIndex makes an empty index.
func newPrincipalIndex() principalIndex {
	return principalIndex{few: map[string][]string{}, many: map[string]map[string]struct{}{}}
}

// add records id under principal ("" is none); id must not be there yet.
func (x principalIndex) add(principal, id string) {
	if principal == "" {
		return
	}
	if set := x.many[principal]; set != nil {
		set[id] = struct{}{}
		return
	}
	ids := x.few[principal]
	if len(ids) < principalFew {
		x.few[principal] = append(ids, id)
		return
	}
	set := make(map[string]struct{}, len(ids)+1)
	for _, had := range ids {
		set[had] = struct{}{}
	}
	set[id] = struct{}{}
	x.many[principal] = set
	delete(x.few, principal)
}

// remove forgets id under principal ("" is none).
func (x principalIndex) remove(principal, id string) {
	if principal == "" {
		return
	}
	if set := x.many[principal]; set != nil {
		delete(set, id)
		if len(set) == 0 {
			delete(x.many, principal)
		}
		return
	}
	ids := x.few[principal]
	i := slices.Index(ids, id)
	if i < 0 {
		return
	}
	ids[i] = ids[len(ids)-1]
	ids[len(ids)-1] = "" // the backing array keeps no id it no longer lists
	if ids = ids[:len(ids)-1]; len(ids) == 0 {
		delete(x.few, principal)
	} else {
		x.few[principal] = ids
	}
}

// ids returns a new slice of principal's ids.
func (x principalIndex) ids(principal string) []string {
	if set := x.many[principal]; set != nil {
		out := make([]string, 0, len(set))
		for id := range set {
			out = append(out, id)
		}
		return out
	}
	return slices.Clone(x.few[principal])
}

// len returns how many principals the index lists.
func (x principalIndex) len() int { return len(x.few) + len(x.many) }

// newStore makes an empty store of n partitions.
func newStore(n int) *store {
	s := &store{parts: make([]*partition, n)}
	for i := range s.parts {
		s.parts[i] = &partition{sessions: map[string]*Session{}, principals: newPrincipalIndex()}
	}
	return s
}

// lock takes the write lock of session id and returns its release.
func (s *store) lock(id string) func() {
	m := &s.locks[xxhash.Sum64String(id)%uint64(len(s.locks))]
	m.Lock()
	return m.Unlock
}

// awaitWrites returns once every write that held a session's lock when it
// was called has released it: stored, or failed. A primary holds the lock
// from before it replicates a write until it has stored it, so a copy read
// afterwards holds every write whose replica a buddy had stored by then.
// Each wait is bounded by the write's own call timeout.
func (s *store) awaitWrites() {
	for i := range s.locks {
		s.locks[i].Lock()
		s.locks[i].Unlock()
	}
}

// generation returns partition p's generation (Session.Gen).
func (s *store) generation(p int) uint64 {
	part := s.parts[p]
	part.mu.RLock()
	defer part.mu.RUnlock()
	return part.gen
}

// rebuiltLocked gives partition p a new generation, at least gen and
// higher than any of its copies', and makes it the partition's floor: the
// partition was lost, and what this node holds of it (copies a leaving
// node pushed here, say) is all of it from now on, moved to the new
// generation; copies from before held anywhere else (an owner frozen past
// the failure detector comes back with them) are gone for good. It
// returns the new generation. The caller holds every partition
// (exclusive) or p's lock.
func (s *store) rebuiltLocked(p int, gen uint64) uint64 {
	part := s.parts[p]
	gen = max(part.gen+1, part.floor+1, gen)
	for id, sess := range part.sessions {
		c := *sess
		c.Gen = gen
		part.sessions[id] = &c
	}
	part.unconfirmed = nil // what it holds is all of the partition now
	part.raiseFloorLocked(gen)
	return gen
}

// rebuilt is rebuiltLocked, taking p's lock.
func (s *store) rebuilt(p int, gen uint64) uint64 {
	part := s.parts[p]
	part.mu.Lock()
	defer part.mu.Unlock()
	return s.rebuiltLocked(p, gen)
}

// newGeneration raises partition p's generation to at least gen, above
// any of its copies', without a floor: copies written from now on win
// over older ones whatever their versions, and the copies held stay.
func (s *store) newGeneration(p int, gen uint64) {
	part := s.parts[p]
	part.mu.Lock()
	defer part.mu.Unlock()
	s.newGenerationLocked(p, gen)
}

// newGenerationLocked is newGeneration, with p's lock (or every
// partition's) held.
func (s *store) newGenerationLocked(p int, gen uint64) {
	part := s.parts[p]
	part.gen = max(part.gen+1, gen)
}

// markLossLocked records that a loss of partition p began generation
// gen (partition.lossGen); the caller holds p's lock or every partition.
func (s *store) markLossLocked(p int, gen uint64) { s.parts[p].lossGen = gen }

// markLoss is markLossLocked, taking p's lock.
func (s *store) markLoss(p int, gen uint64) {
	part := s.parts[p]
	part.mu.Lock()
	defer part.mu.Unlock()
	part.lossGen = gen
}

// lossGeneration returns partition.lossGen.
func (s *store) lossGeneration(p int) uint64 {
	part := s.parts[p]
	part.mu.RLock()
	defer part.mu.RUnlock()
	return part.lossGen
}

// floor returns partition p's generation floor: copies of a lower
// generation are refused.
func (s *store) floor(p int) uint64 {
	part := s.parts[p]
	part.mu.RLock()
	defer part.mu.RUnlock()
	return part.floor
}

// raiseFloor raises partition p's generation floor to floor, learned from
// an owner that rebuilt the partition (or heard of it), dropping the
// copies below it. It reports whether the floor rose, and how many copies
// it dropped.
func (s *store) raiseFloor(p int, floor uint64) (raised bool, dropped int) {
	part := s.parts[p]
	part.mu.RLock()
	below := floor > part.floor
	part.mu.RUnlock()
	if !below {
		return false, 0
	}
	part.mu.Lock()
	defer part.mu.Unlock()
	if floor <= part.floor {
		return false, 0
	}
	return true, part.raiseFloorLocked(floor)
}

// raiseFloorLocked is raiseFloor; the caller holds part.mu.
func (part *partition) raiseFloorLocked(floor uint64) int {
	if floor <= part.floor {
		return 0
	}
	part.floor = floor
	part.gen = max(part.gen, floor)
	dropped := 0
	for id, sess := range part.sessions {
		if sess.Gen < floor {
			part.setLocked(id, nil)
			dropped++
		}
	}
	return dropped
}

// get returns the stored copy of id in partition p, tombstones included.
func (s *store) get(p int, id string) *Session {
	part := s.parts[p]
	part.mu.RLock()
	defer part.mu.RUnlock()
	return part.sessions[id]
}

// putIfNewer stores sess if it is newer than the stored copy. It returns
// the copy stored before the call (nil if none) and whether sess replaced
// it.
func (s *store) putIfNewer(p int, sess *Session) (prev *Session, stored bool) {
	prev, stored, _ = s.putUnder(p, sess, true, nil)
	return prev, stored
}

// putUnder stores sess in partition p (only if it is newer than the stored
// copy, with ifNewer), provided check, run under the partition's lock,
// returns nil; else it stores nothing and returns check's error. A node
// installing a ring holds every partition (exclusive), so a check that the
// ring is still the one a write was routed by holds until the write is
// stored. It returns the copy stored before and whether sess replaced it.
func (s *store) putUnder(p int, sess *Session, ifNewer bool, check func() error) (prev *Session, stored bool, err error) {
	part := s.parts[p]
	part.mu.Lock()
	defer part.mu.Unlock()
	return s.putLocked(p, sess, ifNewer, check)
}

// putReplica is putUnder for a buddy storing its primary's write (ifNewer):
// the copy it stores is marked unconfirmed, in the same step, until the
// primary confirms it (confirm).
func (s *store) putReplica(p int, sess *Session, check func() error) (prev *Session, stored bool, err error) {
	part := s.parts[p]
	part.mu.Lock()
	defer part.mu.Unlock()
	prev, stored, err = s.putLocked(p, sess, true, check)
	if stored {
		if part.unconfirmed == nil {
			part.unconfirmed = map[string]copyMark{}
		}
		part.unconfirmed[sess.ID] = markOf(sess)
	}
	return prev, stored, err
}

// confirm removes the mark of partition p's copy of id, if the mark is
// for the copy m names.
func (s *store) confirm(p int, id string, m copyMark) {
	part := s.parts[p]
	part.mu.Lock()
	defer part.mu.Unlock()
	if part.unconfirmed[id] == m {
		delete(part.unconfirmed, id)
	}
}

// unconfirmedMarks returns every copy marked unconfirmed, by partition and
// session.
func (s *store) unconfirmedMarks() map[doubtKey]copyMark {
	out := map[doubtKey]copyMark{}
	for p, part := range s.parts {
		part.mu.RLock()
		for id, m := range part.unconfirmed {
			out[doubtKey{p, id}] = m
		}
		part.mu.RUnlock()
	}
	return out
}

// getShown returns the stored copy of id in partition p, as get does, and
// whether it is unconfirmed: a replica its primary has not confirmed.
func (s *store) getShown(p int, id string) (sess *Session, unconfirmed bool) {
	part := s.parts[p]
	part.mu.RLock()
	defer part.mu.RUnlock()
	sess = part.sessions[id]
	_, unconfirmed = part.unconfirmed[id]
	return sess, unconfirmed
}

// putLocked is putUnder with p's lock held.
func (s *store) putLocked(p int, sess *Session, ifNewer bool, check func() error) (prev *Session, stored bool, err error) {
	part := s.parts[p]
	if check != nil {
		if err := check(); err != nil {
			return nil, false, err
		}
	}
	prev = part.sessions[sess.ID]
	if sess.Gen < part.floor {
		// From before the partition was rebuilt: gone for good.
		return prev, false, fmt.Errorf("%w: %s v%d is of generation %d, below partition %d's floor %d", errBelowFloor, sess.ID, sess.Version, sess.Gen, p, part.floor)
	}
	if ifNewer && !newer(sess, prev) {
		return prev, false, nil
	}
	part.setLocked(sess.ID, sess)
	part.gen = max(part.gen, sess.Gen)
	return prev, true, nil
}

// errBelowFloor refuses a copy of a generation below its partition's
// floor. It is ErrStale to a primary replicating such a copy: it adopts
// the buddy's floor and copy, and applies the write again on top.
var errBelowFloor = fmt.Errorf("%w: copy from before its partition was rebuilt", ErrStale)

// exclusive runs f while holding every partition, so that no store
// happens while it runs.
func (s *store) exclusive(f func()) {
	for _, part := range s.parts {
		part.mu.Lock()
	}
	defer func() {
		for _, part := range s.parts {
			part.mu.Unlock()
		}
	}()
	f()
}

// touch moves the last access of id to at, if the stored copy is live and
// older; it never changes the version or the content. With queue (on the
// primary), the access is also kept for the next batch to the buddy
// (takeTouches). It returns the copy now stored, nil if it moved nothing.
func (s *store) touch(p int, id string, at time.Time, queue bool) *Session {
	part := s.parts[p]
	part.mu.Lock()
	defer part.mu.Unlock()
	cur := part.sessions[id]
	if cur == nil || cur.Deleted || !cur.LastAccess.Before(at) {
		return nil
	}
	c := *cur
	c.LastAccess = at
	part.sessions[id] = &c
	if queue {
		part.touched = append(part.touched, touchItem{Partition: p, ID: id, At: at})
	}
	return &c
}

// takeTouches returns and forgets partition p's queued last accesses.
func (s *store) takeTouches(p int) []touchItem {
	part := s.parts[p]
	part.mu.Lock()
	defer part.mu.Unlock()
	out := part.touched
	part.touched = nil
	return out
}

// snapshot returns the copies of partition p.
// view runs f with partition p's read lock held, on its copies (not to be
// changed or kept past f) and its floor: no ring install, hand-off
// given up or copies dropped with the store held (exclusive) happens
// while f runs, so what f reads of the node's ownership goes with the
// copies. A reply saying the node holds the partition must not carry
// copies its give-up was dropping (chaos finding F17).
func (s *store) view(p int, f func(sessions map[string]*Session, floor uint64)) {
	part := s.parts[p]
	part.mu.RLock()
	defer part.mu.RUnlock()
	f(part.sessions, part.floor)
}

func (s *store) snapshot(p int) []*Session {
	part := s.parts[p]
	part.mu.RLock()
	defer part.mu.RUnlock()
	out := make([]*Session, 0, len(part.sessions))
	for _, sess := range part.sessions {
		out = append(out, sess)
	}
	return out
}

// copiesLacked returns the IDs of partition p's copies that another
// holder, which holds the copies summarized in theirs (copyKey), lacks or
// holds older. A nil theirs (not known) lacks every copy.
func (s *store) copiesLacked(p int, theirs map[string]*Session) map[string]bool {
	lacked := make(map[string]bool)
	for _, mine := range s.snapshot(p) {
		if other, ok := theirs[mine.ID]; !ok || newer(mine, other) {
			lacked[mine.ID] = true
		}
	}
	return lacked
}

// holdsAsNew reports whether partition p holds every copy in theirs as it
// is or newer: merging them would change nothing.
func (s *store) holdsAsNew(p int, theirs []*Session) bool {
	part := s.parts[p]
	part.mu.RLock()
	defer part.mu.RUnlock()
	for _, other := range theirs {
		if other == nil {
			continue
		}
		if mine := part.sessions[other.ID]; mine == nil || newer(other, mine) {
			return false
		}
	}
	return true
}

// drop forgets every copy of partition p.
func (s *store) drop(p int) int {
	part := s.parts[p]
	part.mu.Lock()
	defer part.mu.Unlock()
	return s.dropLocked(p)
}

// dropLocked is drop, with p's lock (or every partition's) held.
func (s *store) dropLocked(p int) int {
	part := s.parts[p]
	n := len(part.sessions)
	part.sessions = map[string]*Session{}
	part.principals = newPrincipalIndex()
	part.unconfirmed = nil
	return n
}

// forgetLocked is dropLocked, and forgets partition p's floor and
// generation too: the node no longer holds the partition at all (it is
// owned elsewhere, or the node takes it over afresh). The floor travels
// with the partition: the owners carry it, and a hand-off brings it from
// them with their copies (pullReply.Floor). Kept by a node that dropped
// the partition, a floor from a rebuild long past came back 36 minutes
// later, when that node owned the partition again, and dropped what
// the owners had written since: restarted one after the other, they had
// not known that floor, and created sessions below it (chaos finding
// F17, partition 238 of the 65-minute run at e039492).
func (s *store) forgetLocked(p int) int {
	part := s.parts[p]
	part.floor, part.gen = 0, 0
	return s.dropLocked(p)
}

// count returns how many copies partition p holds.
func (s *store) count(p int) int {
	part := s.parts[p]
	part.mu.RLock()
	defer part.mu.RUnlock()
	return s.countLocked(p)
}

// countLocked is count, with p's lock (or every partition's) held.
func (s *store) countLocked(p int) int { return len(s.parts[p].sessions) }

// sweep removes the copies in partition p that gone reports as finished
// with, and returns how many it removed.
func (s *store) sweep(p int, gone func(*Session) bool) int {
	part := s.parts[p]
	part.mu.Lock()
	defer part.mu.Unlock()
	n := 0
	for id, sess := range part.sessions {
		if gone(sess) {
			part.setLocked(id, nil)
			n++
		}
	}
	return n
}

// ofPrincipal returns the ids of partition p's copies belonging to
// principal.
func (s *store) ofPrincipal(p int, principal string) []string {
	part := s.parts[p]
	part.mu.RLock()
	defer part.mu.RUnlock()
	return part.principals.ids(principal)
}
