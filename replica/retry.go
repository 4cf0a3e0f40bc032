package replica

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/tandem-io/tandem/ring"
)

// Routing and retrying are shared by every caller that runs an Op against
// the cluster: a Node (Node.Do) and a smart client (tandem.Client). Route
// picks the owners by a ring; Retry runs attempts until one answers for
// good, with exponential backoff and jitter.

// Hops reach a session's owners for Route.
type Hops struct {
	// Primary runs the op on the primary called name (this node, or one
	// hop away).
	Primary func(ctx context.Context, name string) (*Session, error)
	// Buddy reads the session from the buddy called name, when the
	// primary cannot answer. Its nil Session with a nil error means
	// "no such session".
	Buddy func(ctx context.Context, name string) (*Session, error)
}

// Route runs op on the primary tab names for it; a get whose primary is
// unavailable (unreachable, or unable to serve now) is answered by the
// buddy, which holds every acknowledged write.
func Route(ctx context.Context, tab *ring.Table, op *Op, hops Hops) (*Session, error) {
	o := tab.OwnersOf(op.ID)
	s, err := hops.Primary(ctx, o.Primary)
	if err == nil || op.Kind != OpGet || !errors.Is(err, ErrUnavailable) || o.Buddy == "" {
		return s, err
	}
	s, berr := hops.Buddy(ctx, o.Buddy)
	switch {
	case berr != nil:
		return nil, fmt.Errorf("read %s from buddy %s after primary %s failed (%w): %w", op.ID, o.Buddy, o.Primary, err, berr)
	case s == nil:
		return nil, fmt.Errorf("%w: %s", ErrNotFound, op.ID)
	}
	return s, nil
}

// Retry runs attempts of one op until one answers for good.
type Retry struct {
	// First is the wait after the first failed attempt (default 5ms); each
	// wait doubles up to Max (default 200ms). Every wait is drawn at random
	// between half and all of that, so callers that failed together do not
	// retry together.
	First, Max time.Duration
	// CutOffAfter, if not zero, gives up this long after an attempt first
	// said that the node itself is cut off from the cluster, so that its
	// caller (a balancer, a client) can go to another node.
	CutOffAfter time.Duration
}

// Retryable reports whether err says to try again: the owners are changing
// (ErrNotOwner) or could not serve now (ErrUnavailable).
func Retryable(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotOwner)
}

// Do calls attempt until it succeeds or fails for good (not Retryable), or
// ctx ends, counting each retry in retries (if not nil).
func (r Retry) Do(ctx context.Context, op *Op, retries *atomic.Uint64, attempt func(context.Context) (*Session, error)) (*Session, error) {
	b := Backoff{First: r.First, Max: r.Max}
	var cutOff time.Time // when the node first found itself cut off
	for {
		s, err := attempt(ctx)
		if err == nil || !Retryable(err) {
			return s, err
		}
		if r.CutOffAfter > 0 && errors.Is(err, errCutOff) {
			if cutOff.IsZero() {
				cutOff = time.Now()
			} else if time.Since(cutOff) > r.CutOffAfter {
				return nil, fmt.Errorf("%s %s: %w", op.Kind, op.ID, err)
			}
		}
		if retries != nil {
			retries.Add(1)
		}
		if !b.Wait(ctx) {
			return nil, fmt.Errorf("%s %s: %w (last: %w)", op.Kind, op.ID, ErrUnavailable, err)
		}
	}
}

// Backoff spaces out retries: exponential, capped, with jitter. The zero
// value starts at 5ms and caps at 200ms.
type Backoff struct {
	First, Max time.Duration
	next       time.Duration
}

// Next returns how long to wait before the next attempt: between half and
// all of the current step, which then doubles up to Max.
func (b *Backoff) Next() time.Duration {
	if b.First <= 0 {
		b.First = 5 * time.Millisecond
	}
	if b.Max <= 0 {
		b.Max = 200 * time.Millisecond
	}
	if b.next == 0 {
		b.next = b.First
	}
	d := b.next
	b.next = min(2*b.next, b.Max)
	return d/2 + rand.N(d/2+1)
}

// Wait waits Next() or until ctx ends, and reports whether ctx is still
// live.
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
