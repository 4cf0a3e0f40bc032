package tandemscs_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/tandem-io/tandem"
	tandemscs "github.com/tandem-io/tandem/contrib/scs"
)

func TestAllListsEveryLiveSCSSessionInTheCluster(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx := context.Background()
	stores := []*tandemscs.Store{tandemscs.New(nodes[0]), tandemscs.New(nodes[1]), tandemscs.New(nodes[2])}

	// No session yet: an empty map, not nil.
	if all, err := stores[0].All(); err != nil || all == nil || len(all) != 0 {
		t.Fatalf("empty cluster: %v %v", all, err)
	}
	want := map[string][]byte{}
	for i := range 40 {
		token := fmt.Sprintf("scs-token-%033d", i)
		data := []byte(fmt.Sprintf("data %d", i))
		if err := stores[i%3].CommitCtx(ctx, token, data, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		want[token] = data
	}
	for _, token := range []string{"scs-token-000000000000000000000000000000000", "scs-token-000000000000000000000000000000007"} {
		if err := stores[1].DeleteCtx(ctx, token); err != nil {
			t.Fatal(err)
		}
		delete(want, token)
	}
	// A session scs did not write is not scs's.
	if _, err := nodes[2].Put(ctx, "not-an-scs-session-0001", "", nil); err != nil {
		t.Fatal(err)
	}
	for i, store := range stores {
		all, err := store.AllCtx(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.EqualFunc(all, want, func(a, b []byte) bool { return string(a) == string(b) }) {
			t.Fatalf("store over node %d: %d sessions, want %d: %v", i, len(all), len(want), slices.Sorted(maps.Keys(all)))
		}
	}
}

func TestSCSIterateVisitsEverySession(t *testing.T) {
	nodes := startCluster(t, 2)
	ctx := context.Background()
	sm := scs.New()
	sm.Store = tandemscs.New(nodes[1])
	var seen []string
	for range 2 {
		c, err := sm.Load(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		sm.Put(c, "user", fmt.Sprintf("user-%d", len(seen)))
		token, _, err := sm.Commit(c)
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, token)
	}
	var users []string
	err := sm.Iterate(ctx, func(c context.Context) error {
		if u := sm.GetString(c, "user"); u != "" {
			users = append(users, u)
		}
		return nil
	})
	slices.Sort(users)
	if err != nil || !slices.Equal(users, []string{"user-0", "user-1"}) {
		t.Fatalf("Iterate: users %v, %v", users, err)
	}
}

// doOnly is Sessions without a way to list them, as a *tandem.Client.
type doOnly struct{ tandemscs.Sessions }

func TestAllNeedsALister(t *testing.T) {
	nodes := startCluster(t, 1)
	_, err := tandemscs.New(doOnly{nodes[0]}).All()
	if !errors.Is(err, tandem.ErrInvalid) {
		t.Fatalf("All over Sessions that cannot list: %v, want ErrInvalid", err)
	}
}
