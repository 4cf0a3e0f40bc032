// Package tandemscs keeps alexedwards/scs sessions in a Tandem cluster, so
// that they survive the death of any one app instance: every session lives
// on two nodes, and a write is acknowledged only once both hold it.
//
// Import it under its package name, beside scs:
//
//	import (
//		"github.com/alexedwards/scs/v2"
//		tandemscs "github.com/tandem-io/tandem/contrib/scs"
//	)
//
//	sessions := scs.New()
//	sessions.Store = tandemscs.New(node)
//
// The Store implements scs.Store and scs.CtxStore, and, over a
// *tandem.Node, scs.IterableStore and scs.IterableCtxStore (All). scs tokens (43
// characters of base64url, or of a hash with HashTokenInStore) are valid
// Tandem session ids as they are. Each commit replaces the whole Tandem
// session, as scs wants, so such sessions carry no principal.
package tandemscs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem"
)

// Sessions is what the Store needs of Tandem: a *tandem.Node embedded in
// the app, or a *tandem.Client of a cluster elsewhere.
type Sessions interface {
	Do(ctx context.Context, op *tandem.Op) (*tandem.Session, error)
}

// Attribute names under which a session's scs data is stored.
const (
	// AttrData holds the blob scs encodes (its deadline and values).
	AttrData = "scs.data"
	// AttrExpiry holds the expiry scs gave with the blob, in Unix
	// nanoseconds.
	AttrExpiry = "scs.expiry"
)

// noDeadline is the absolute timeout the Store gives Tandem: far enough
// that Tandem's own absolute deadline never ends a session before scs's
// expiry, which the Store enforces through the idle timeout instead.
const noDeadline = 100 * 365 * 24 * time.Hour

// Store is an scs session store backed by Tandem.
type Store struct {
	sessions Sessions
}

var (
	_ scs.CtxStore         = (*Store)(nil)
	_ scs.IterableStore    = (*Store)(nil)
	_ scs.IterableCtxStore = (*Store)(nil)
)

// Lister is what All needs besides Sessions: a way to list every live
// session of the cluster. *tandem.Node has it (Node.SessionIDs); a
// *tandem.Client does not, and All over one fails.
type Lister interface {
	SessionIDs(ctx context.Context) ([]string, error)
}

// New returns a store keeping scs sessions in Tandem through sessions.
func New(sessions Sessions) *Store {
	return &Store{sessions: sessions}
}

// Find returns the data of session token. A token that is malformed,
// unknown, deleted or expired is not found, and is not an error. Find does
// not move the session's idle deadline: scs does that by committing.
func (s *Store) Find(token string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), token)
}

// FindCtx is Find with a context.
func (s *Store) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	if tandem.ValidateID(token) != nil {
		return nil, false, nil
	}
	sess, err := s.sessions.Do(ctx, &tandem.Op{Kind: tandem.OpGet, ID: token, NoTouch: true})
	if errors.Is(err, tandem.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("tandemscs: find session: %w", err)
	}
	var data []byte
	var expiry int64
	if msgpack.Unmarshal(sess.Attributes[AttrData], &data) != nil || msgpack.Unmarshal(sess.Attributes[AttrExpiry], &expiry) != nil {
		return nil, false, nil // not an scs session
	}
	if !time.Now().Before(time.Unix(0, expiry)) {
		return nil, false, nil
	}
	return data, true, nil
}

// Commit stores b as session token's data until expiry, replacing what
// the session held.
func (s *Store) Commit(token string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), token, b, expiry)
}

// CommitCtx is Commit with a context. The session ends at expiry: Tandem
// is given the time until then as the session's idle timeout, which only
// a commit moves, since Find does not touch.
func (s *Store) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	ttl := time.Until(expiry)
	if ttl <= 0 {
		return s.DeleteCtx(ctx, token)
	}
	data, err := msgpack.Marshal(b)
	if err != nil {
		return fmt.Errorf("tandemscs: commit session: %w", err)
	}
	exp, err := msgpack.Marshal(expiry.UnixNano())
	if err != nil {
		return fmt.Errorf("tandemscs: commit session: %w", err)
	}
	op := &tandem.Op{
		Kind: tandem.OpPut, ID: token,
		Attributes:  map[string]msgpack.RawMessage{AttrData: data, AttrExpiry: exp},
		IdleTimeout: ttl, AbsoluteTimeout: noDeadline,
	}
	if _, err := s.sessions.Do(ctx, op); err != nil {
		return fmt.Errorf("tandemscs: commit session: %w", err)
	}
	return nil
}

// Delete deletes session token; deleting a session that does not exist is
// not an error.
func (s *Store) Delete(token string) error {
	return s.DeleteCtx(context.Background(), token)
}

// DeleteCtx is Delete with a context.
func (s *Store) DeleteCtx(ctx context.Context, token string) error {
	if tandem.ValidateID(token) != nil {
		return nil
	}
	_, err := s.sessions.Do(ctx, &tandem.Op{Kind: tandem.OpDelete, ID: token})
	if err != nil && !errors.Is(err, tandem.ErrNotFound) {
		return fmt.Errorf("tandemscs: delete session: %w", err)
	}
	return nil
}

// All returns the data of every live scs session in the cluster, keyed by
// token; see AllCtx.
func (s *Store) All() (map[string][]byte, error) {
	return s.AllCtx(context.Background())
}

// AllCtx returns the data of every live scs session in the cluster, keyed
// by token, and an empty map when there is none. It lists the cluster's
// session ids with Node.SessionIDs (every member asked, every id held in
// memory), then reads each session once without touching it; Tandem
// sessions that scs did not write are left out. Its cost grows with the
// number of sessions in the cluster: for admin pages and scripts, not per
// request. It needs Sessions that are also a Lister, as a *tandem.Node is.
func (s *Store) AllCtx(ctx context.Context) (map[string][]byte, error) {
	l, ok := s.sessions.(Lister)
	if !ok {
		return nil, fmt.Errorf("tandemscs: all sessions: %w: %T cannot list sessions; give New a *tandem.Node", tandem.ErrInvalid, s.sessions)
	}
	ids, err := l.SessionIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("tandemscs: all sessions: %w", err)
	}
	out := make(map[string][]byte, len(ids))
	for _, id := range ids {
		data, found, err := s.FindCtx(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("tandemscs: all sessions: %w", err)
		}
		if found {
			out[id] = data
		}
	}
	return out, nil
}
