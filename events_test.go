package tandem

import (
	"fmt"
	"testing"
	"time"

	"github.com/tandem-io/tandem/cluster"
	"github.com/tandem-io/tandem/ring"
)

// The event log keeps the latest 20 ring changes, newest first, with the
// members added and removed and why, and ignores a ring older than the
// latest it recorded.
func TestEventLog(t *testing.T) {
	table := func(epoch uint64, names ...string) *ring.Table {
		t.Helper()
		var ms []ring.Member
		for _, n := range names {
			ms = append(ms, ring.Member{Name: n, Peer: n + ":1"})
		}
		tab, err := ring.New(ring.DefaultConfig(), epoch, ms)
		if err != nil {
			t.Fatal(err)
		}
		return tab
	}
	var l eventLog
	if got := l.list(); len(got) != 0 {
		t.Fatalf("a new log has events: %+v", got)
	}
	t0 := time.Unix(1000, 0)
	l.record(table(1, "a", "b"), nil, t0)
	l.record(table(2, "a", "b", "c"), nil, t0.Add(time.Second))
	l.record(table(3, "a"), map[string]string{"b": "declared dead", "c": "left"}, t0.Add(2*time.Second))
	l.record(table(2, "a", "b"), nil, t0.Add(3*time.Second)) // a lost race: older than the latest
	restarted, err := ring.New(ring.DefaultConfig(), 4, []ring.Member{{Name: "a", Peer: "a:2"}})
	if err != nil {
		t.Fatal(err)
	}
	l.record(restarted, nil, t0.Add(4*time.Second))
	got := l.list()
	want := []Event{
		{Time: t0.Add(4 * time.Second), Epoch: 4, Members: []string{"a"}, Detail: "a restarted"},
		{Time: t0.Add(2 * time.Second), Epoch: 3, Members: []string{"a"}, Removed: []string{"b", "c"}, Detail: "b declared dead; c left"},
		{Time: t0.Add(time.Second), Epoch: 2, Members: []string{"a", "b", "c"}, Added: []string{"c"}, Detail: "c joined"},
		{Time: t0, Epoch: 1, Members: []string{"a", "b"}, Added: []string{"a", "b"}, Detail: "first ring: a, b"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events\n got %+v\nwant %+v", got, want)
	}

	for i := range 30 {
		names := []string{"a"}
		if i%2 == 0 {
			names = append(names, "b")
		}
		l.record(table(uint64(10+i), names...), nil, t0)
	}
	got = l.list()
	if len(got) != maxEvents || got[0].Epoch != 39 || got[maxEvents-1].Epoch != 20 {
		t.Fatalf("after 34 rings: %d events, epochs %d … %d", len(got), got[0].Epoch, got[len(got)-1].Epoch)
	}
	got[0].Members[0] = "changed"
	if l.list()[0].Members[0] == "changed" {
		t.Fatal("list shares the log's slices")
	}
}

// outOfRing names why each member of a view is not in the ring.
func TestOutOfRing(t *testing.T) {
	v := cluster.View{Members: []cluster.Member{
		{Name: "a", Health: "alive"},
		{Name: "b", Health: "dead"},
		{Name: "c", Health: "left"},
		{Name: "d", Health: "alive", Meta: cluster.Meta{State: cluster.StateLeaving}},
		{Name: "e", Health: "alive", Meta: cluster.Meta{BootID: "e1"}},
	}}
	got := outOfRing(v, []ring.Member{{Name: "a"}}, map[string]string{"e": "e1"})
	want := map[string]string{"b": "declared dead", "c": "left", "d": "is leaving", "e": "refused connections on its peer port"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
