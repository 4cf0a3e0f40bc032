package replica

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestSessionIDsPagesWholePartitions fills two nodes' stores past several
// pages and checks that SessionIDs goes through every page of every
// member, that a page holds whole partitions, and that expired and deleted
// copies are left out.
func TestSessionIDsPagesWholePartitions(t *testing.T) {
	c := newTestCluster(t, 2, nil)
	var a *testNode
	var others []*testNode
	for _, tn := range c.nodes {
		if a == nil {
			a = tn
		} else {
			others = append(others, tn)
		}
	}
	b := others[0]
	tab := a.own.table()
	now := c.clock.Now()
	var want []string
	const n = 3*listPageIDs + 123
	for i := range n {
		id := fmt.Sprintf("paged-session-%06d", i)
		s := &Session{ID: id, Version: 1, Created: now, LastAccess: now, IdleTimeout: time.Hour}
		switch {
		case i%97 == 0:
			s.Deleted = true
		case i%89 == 0:
			s.IdleTimeout, s.LastAccess = time.Minute, now.Add(-2*time.Minute)
		default:
			want = append(want, id)
		}
		// Half only on a, half only on b: each must be asked, page by page.
		holder := a
		if i%2 == 1 {
			holder = b
		}
		holder.store.putIfNewer(tab.Partition(id), s)
	}
	slices.Sort(want)

	pages, from := 0, 0
	var fromA []string
	for from >= 0 {
		page := a.listPage(from)
		if page.Next >= 0 && page.Next <= from {
			t.Fatalf("page from %d goes on at %d", from, page.Next)
		}
		for _, id := range page.IDs {
			if p := tab.Partition(id); p < from || page.Next >= 0 && p >= page.Next {
				t.Fatalf("page [%d, %d) holds %s of partition %d", from, page.Next, id, p)
			}
		}
		fromA = append(fromA, page.IDs...)
		pages++
		from = page.Next
	}
	if pages < 2 {
		t.Fatalf("%d ids on a came in %d page(s), want several", len(fromA), pages)
	}

	for _, tn := range []*testNode{a, b} {
		got, err := tn.SessionIDs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s lists %d ids, want %d", tn.cfg.Name, len(got), len(want))
		}
	}
}
