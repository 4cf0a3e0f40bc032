package tandem_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
)

func TestSessionIDsListsEveryLiveSessionOnce(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx := context.Background()
	var want []string
	for i := range 300 {
		id := fmt.Sprintf("listed-session-%04d", i)
		if _, err := nodes[i%3].Put(ctx, id, "", nil); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	for _, id := range want[:50] { // deleted sessions are not listed
		if err := nodes[1].Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	want = want[50:]
	slices.Sort(want)
	for _, n := range nodes {
		got, err := n.SessionIDs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s lists %d ids, want %d: %v", n.Name(), len(got), len(want), got[:min(5, len(got))])
		}
	}
	// With one member gone, its sessions are still listed from their
	// other copy.
	nodes[2].Kill()
	got, err := nodes[0].SessionIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("with a member down: %d ids, want %d", len(got), len(want))
	}
}
