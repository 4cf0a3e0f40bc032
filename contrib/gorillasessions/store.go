// Package tandemsessions keeps gorilla/sessions sessions in a Tandem
// cluster, so that they survive the death of any one app instance: every
// session lives on two nodes, and a write is acknowledged only once both
// hold it.
//
// Import it under its package name, beside gorilla/sessions:
//
//	import (
//		"github.com/gorilla/sessions"
//		tandemsessions "github.com/tandem-io/tandem/contrib/gorillasessions"
//	)
//
//	store := tandemsessions.New(node)
//	session, err := store.Get(r, "app")
//
// The cookie carries only the session's id (128 random bits); the values
// stay in Tandem, gob-encoded as gorilla's own stores do them (register
// your types with gob.Register).
package tandemsessions

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/sessions"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem"
)

// Sessions is what the Store needs of Tandem: a *tandem.Node embedded in
// the app, or a *tandem.Client of a cluster elsewhere.
type Sessions interface {
	Do(ctx context.Context, op *tandem.Op) (*tandem.Session, error)
}

// AttrValues is the attribute that holds a session's gob-encoded values.
const AttrValues = "gorilla.values"

// Store is a gorilla/sessions store backed by Tandem.
type Store struct {
	// Options are the cookie settings new sessions start with: by default
	// path "/", HttpOnly, SameSite=Lax and MaxAge DefaultMaxAge (30 days),
	// as gorilla's own stores default. Set Secure in production. A
	// MaxAge > 0 also becomes, when the session is created, its idle and
	// absolute timeout in Tandem. MaxAge 0, set on purpose, gives a
	// browser-session cookie, as in gorilla, and the cluster's default
	// timeouts. MaxAge < 0 on a session deletes it when saved.
	Options *sessions.Options

	sessions Sessions
}

var _ sessions.Store = (*Store)(nil)

// DefaultMaxAge is the MaxAge of New's Options, in seconds: 30 days, as
// gorilla's CookieStore and FilesystemStore default.
const DefaultMaxAge = 86400 * 30

// New returns a store keeping sessions in Tandem through s.
func New(s Sessions) *Store {
	return &Store{
		sessions: s,
		Options:  &sessions.Options{Path: "/", MaxAge: DefaultMaxAge, HttpOnly: true, SameSite: http.SameSiteLaxMode},
	}
}

// MaxAge sets the MaxAge of the sessions the store makes from now on, in
// seconds, as gorilla's stores' MaxAge does; see Options.
func (s *Store) MaxAge(age int) {
	s.Options.MaxAge = age
}

// Get returns the request's session called name, cached for the request
// in gorilla's registry; see New.
func (s *Store) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(s, name)
}

// New returns the session called name that the request's cookie names, or
// a new one (IsNew) when there is no cookie or Tandem does not know its id:
// an unknown, deleted or expired id is never kept, so the new session gets
// a fresh id when it is saved. The session is never nil, even with an
// error.
func (s *Store) New(r *http.Request, name string) (*sessions.Session, error) {
	session := sessions.NewSession(s, name)
	opts := *s.Options
	session.Options, session.IsNew = &opts, true
	c, err := r.Cookie(name)
	if err != nil || tandem.ValidateID(c.Value) != nil {
		return session, nil
	}
	stored, err := s.sessions.Do(r.Context(), &tandem.Op{Kind: tandem.OpGet, ID: c.Value})
	if errors.Is(err, tandem.ErrNotFound) {
		return session, nil
	}
	if err != nil {
		return session, fmt.Errorf("tandemsessions: load session %q: %w", name, err)
	}
	if b := stored.Attributes[AttrValues]; b != nil {
		if err := decode(b, &session.Values); err != nil {
			return session, fmt.Errorf("tandemsessions: load session %q: %w", name, err)
		}
	}
	session.ID, session.IsNew = stored.ID, false
	return session, nil
}

// Save stores the session's values and sets its cookie. A new session, or
// one that vanished since it was loaded (expired, logged out elsewhere),
// is created under a fresh id; an existing one is patched, so attributes
// that others keep in the same Tandem session, and its principal, stay as
// they are. A session whose Options.MaxAge is negative is deleted, and its
// cookie expired.
func (s *Store) Save(r *http.Request, w http.ResponseWriter, session *sessions.Session) error {
	ctx := r.Context()
	if session.Options.MaxAge < 0 {
		if session.ID != "" {
			err := s.delete(ctx, session.ID)
			if err != nil {
				return err
			}
		}
		session.ID = ""
		http.SetCookie(w, sessions.NewCookie(session.Name(), "", session.Options))
		return nil
	}
	values, err := encode(session.Values)
	if err != nil {
		return fmt.Errorf("tandemsessions: save session %q: %w", session.Name(), err)
	}
	saved := false
	if session.ID != "" {
		op := &tandem.Op{Kind: tandem.OpPatch, ID: session.ID, Set: map[string]msgpack.RawMessage{AttrValues: values}}
		_, err := s.sessions.Do(ctx, op)
		if err != nil && !errors.Is(err, tandem.ErrNotFound) {
			return fmt.Errorf("tandemsessions: save session %q: %w", session.Name(), err)
		}
		saved = err == nil
	}
	if !saved {
		id, err := s.create(ctx, "", values, session.Options.MaxAge)
		if err != nil {
			return fmt.Errorf("tandemsessions: save new session %q: %w", session.Name(), err)
		}
		session.ID = id
	}
	session.IsNew = false
	http.SetCookie(w, sessions.NewCookie(session.Name(), session.ID, session.Options))
	return nil
}

// Regenerate moves the session to a fresh id, against session fixation:
// call it when a user logs in. Its values and principal are stored under a
// new id, the old id is deleted and the new cookie is set.
func (s *Store) Regenerate(r *http.Request, w http.ResponseWriter, session *sessions.Session) error {
	old := session.ID
	principal := ""
	if old != "" {
		stored, err := s.sessions.Do(r.Context(), &tandem.Op{Kind: tandem.OpGet, ID: old, NoTouch: true})
		if err != nil && !errors.Is(err, tandem.ErrNotFound) {
			return fmt.Errorf("tandemsessions: regenerate session %q: %w", session.Name(), err)
		}
		if err == nil {
			principal = stored.Principal
		}
	}
	values, err := encode(session.Values)
	if err != nil {
		return fmt.Errorf("tandemsessions: regenerate session %q: %w", session.Name(), err)
	}
	id, err := s.create(r.Context(), principal, values, session.Options.MaxAge)
	if err != nil {
		return fmt.Errorf("tandemsessions: regenerate session %q: %w", session.Name(), err)
	}
	session.ID, session.IsNew = id, false
	if old != "" {
		if err := s.delete(r.Context(), old); err != nil {
			return err
		}
	}
	http.SetCookie(w, sessions.NewCookie(session.Name(), session.ID, session.Options))
	return nil
}

// SetPrincipal names the user a saved session belongs to, so that
// Node.InvalidatePrincipal can log them out everywhere. Call Regenerate
// first when a user logs in.
func (s *Store) SetPrincipal(r *http.Request, session *sessions.Session, principal string) error {
	if session.ID == "" {
		return fmt.Errorf("tandemsessions: set principal of session %q: %w: save it first", session.Name(), tandem.ErrInvalid)
	}
	op := &tandem.Op{Kind: tandem.OpPatch, ID: session.ID, SetPrincipal: true, Principal: principal}
	if _, err := s.sessions.Do(r.Context(), op); err != nil {
		return fmt.Errorf("tandemsessions: set principal of session %q: %w", session.Name(), err)
	}
	return nil
}

// create stores a new session under a fresh id and returns the id.
func (s *Store) create(ctx context.Context, principal string, values []byte, maxAge int) (string, error) {
	var ttl time.Duration
	if maxAge > 0 {
		ttl = time.Duration(maxAge) * time.Second
	}
	for {
		op := &tandem.Op{
			Kind: tandem.OpPut, ID: tandem.NewID(), IfAbsent: true, Principal: principal,
			Attributes:  map[string]msgpack.RawMessage{AttrValues: values},
			IdleTimeout: ttl, AbsoluteTimeout: ttl,
		}
		_, err := s.sessions.Do(ctx, op)
		if !errors.Is(err, tandem.ErrConflict) { // a conflict is an id collision: draw again
			return op.ID, err
		}
	}
}

// delete deletes session id; one that does not exist is already deleted.
func (s *Store) delete(ctx context.Context, id string) error {
	_, err := s.sessions.Do(ctx, &tandem.Op{Kind: tandem.OpDelete, ID: id})
	if err != nil && !errors.Is(err, tandem.ErrNotFound) {
		return fmt.Errorf("tandemsessions: delete session: %w", err)
	}
	return nil
}

// encode gob-encodes values into a msgpack attribute value.
func encode(values map[any]any) (msgpack.RawMessage, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(values); err != nil {
		return nil, fmt.Errorf("encode values: %w", err)
	}
	return msgpack.Marshal(buf.Bytes())
}

// decode is encode's inverse.
func decode(b msgpack.RawMessage, values *map[any]any) error {
	var raw []byte
	if err := msgpack.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("decode values: %w", err)
	}
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(values); err != nil {
		return fmt.Errorf("decode values: %w", err)
	}
	return nil
}
