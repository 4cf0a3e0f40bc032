package replica

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Route: the primary answers; a get the primary cannot serve goes to the
// buddy, and nothing else does.
func TestRouteFallsBackToTheBuddyOnlyForUnavailableGets(t *testing.T) {
	tab := tableOf(t, 1, "a", "b", "c")
	id := sessionID(1)
	stored := &Session{ID: id, Version: 3}
	unavailable := fmt.Errorf("%w: primary down", ErrUnavailable)
	cases := []struct {
		name       string
		kind       OpKind
		primaryErr error
		buddy      *Session
		buddyErr   error
		wantBuddy  bool
		wantErr    error
	}{
		{"the primary answers", OpGet, nil, nil, nil, false, nil},
		{"an unavailable primary's get goes to the buddy", OpGet, unavailable, stored, nil, true, nil},
		{"the buddy's no copy is not found", OpGet, unavailable, nil, nil, true, ErrNotFound},
		{"a failing buddy keeps both errors", OpGet, unavailable, nil, fmt.Errorf("%w: buddy down", ErrUnavailable), true, ErrUnavailable},
		{"a write never goes to the buddy", OpPatch, unavailable, stored, nil, false, ErrUnavailable},
		{"a touch never goes to the buddy", OpTouch, unavailable, stored, nil, false, ErrUnavailable},
		{"a primary of another ring is not bypassed", OpGet, fmt.Errorf("%w: moved", ErrNotOwner), stored, nil, false, ErrNotOwner},
		{"a final answer is not bypassed", OpGet, fmt.Errorf("%w: gone", ErrNotFound), stored, nil, false, ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			askedBuddy := false
			s, err := Route(context.Background(), tab, &Op{Kind: tc.kind, ID: id}, Hops{
				Primary: func(_ context.Context, name string) (*Session, error) {
					if name != tab.OwnersOf(id).Primary {
						t.Fatalf("primary hop to %s", name)
					}
					if tc.primaryErr != nil {
						return nil, tc.primaryErr
					}
					return stored, nil
				},
				Buddy: func(_ context.Context, name string) (*Session, error) {
					if name != tab.OwnersOf(id).Buddy {
						t.Fatalf("buddy hop to %s", name)
					}
					askedBuddy = true
					return tc.buddy, tc.buddyErr
				},
			})
			if askedBuddy != tc.wantBuddy {
				t.Fatalf("asked the buddy: %v, want %v", askedBuddy, tc.wantBuddy)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || s != stored {
				t.Fatalf("got %+v, %v", s, err)
			}
		})
	}
}

// Backoff doubles from First to Max, each wait drawn between half and all
// of its step.
func TestBackoffDoublesWithJitter(t *testing.T) {
	b := Backoff{First: 8 * time.Millisecond, Max: 64 * time.Millisecond}
	steps := []time.Duration{8, 16, 32, 64, 64, 64}
	seen := map[time.Duration]bool{}
	for round := range 50 {
		b = Backoff{First: b.First, Max: b.Max}
		for i, step := range steps {
			step *= time.Millisecond
			d := b.Next()
			if d < step/2 || d > step {
				t.Fatalf("round %d wait %d: %v, want between %v and %v", round, i, d, step/2, step)
			}
			if i == 0 {
				seen[d] = true
			}
		}
	}
	if len(seen) < 2 {
		t.Fatal("the first wait never varies: no jitter")
	}
}

// Retry retries while the owners change or cannot serve, stops at a final
// answer, gives up when ctx ends, and gives up early once the node says
// it is cut off.
func TestRetry(t *testing.T) {
	op := &Op{Kind: OpGet, ID: sessionID(1)}
	fast := Retry{First: time.Microsecond, Max: time.Microsecond}
	t.Run("retries until an answer", func(t *testing.T) {
		var retries atomic.Uint64
		calls := 0
		s, err := fast.Do(context.Background(), op, &retries, func(context.Context) (*Session, error) {
			if calls++; calls < 3 {
				return nil, ErrNotOwner
			}
			return &Session{Version: 1}, nil
		})
		if err != nil || s.Version != 1 || retries.Load() != 2 {
			t.Fatalf("got %+v %v after %d retries", s, err, retries.Load())
		}
	})
	t.Run("stops at a final answer", func(t *testing.T) {
		calls := 0
		_, err := fast.Do(context.Background(), op, nil, func(context.Context) (*Session, error) {
			calls++
			return nil, ErrConflict
		})
		if !errors.Is(err, ErrConflict) || calls != 1 {
			t.Fatalf("%v after %d calls", err, calls)
		}
	})
	t.Run("gives up when ctx ends", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		_, err := fast.Do(ctx, op, nil, func(context.Context) (*Session, error) { return nil, ErrNotOwner })
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%v, want ErrUnavailable", err)
		}
	})
	t.Run("a cut-off node gives up early", func(t *testing.T) {
		r := fast
		r.CutOffAfter = 10 * time.Millisecond
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := r.Do(ctx, op, nil, func(context.Context) (*Session, error) {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, errCutOff)
		})
		if !errors.Is(err, errCutOff) || ctx.Err() != nil {
			t.Fatalf("%v (ctx %v), want errCutOff before the deadline", err, ctx.Err())
		}
	})
}

// An op that reaches its primary long after its sender gave up on it (its
// frames held up by a cut network and retransmitted once it healed) is
// refused and never applied; one within the clocks' allowed skew is
// served.
func TestAnOpArrivingAfterItsSenderGaveUpIsRefused(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	id := sessionID(21)
	primary, _ := c.ownersOf(id)
	put(t, primary, id, "n", 1)
	tab := primary.Table()
	send := func(notAfter time.Time) (*Session, error) {
		op := &Op{Kind: OpPatch, ID: id, RequestID: NewRequestID(), Set: map[string]msgpack.RawMessage{"n": value(t, 2)}, NotAfter: notAfter.UnixNano()}
		body, err := msgpack.Marshal(op)
		if err != nil {
			t.Fatal(err)
		}
		reply, err := primary.serveOp(testCtx(t), tab, body)
		if err != nil {
			return nil, err
		}
		return reply.(OpReply).Session, nil
	}
	now := primary.wall()
	if _, err := send(now.Add(-TransitSkew - time.Second)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("an op a second past its deadline and the skew allowance: %v, want refused", err)
	}
	if got := primary.store.get(tab.Partition(id), id).Version; got != 1 {
		t.Fatalf("the late op was applied: v%d", got)
	}
	if primary.stats.ExpiredInTransit.Load() != 1 {
		t.Fatalf("expired in transit: %d, want 1", primary.stats.ExpiredInTransit.Load())
	}
	if s, err := send(now.Add(-TransitSkew / 2)); err != nil || s.Version != 2 {
		t.Fatalf("an op within the skew allowance: %v, %v; want applied as v2", s, err)
	}
	if late := ArrivedLate(&Op{}, now); late != 0 {
		t.Fatalf("an op without a deadline arrived %v late", late)
	}
}
