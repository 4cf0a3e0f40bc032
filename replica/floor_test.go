package replica

import (
	"errors"
	"testing"
)

// The generation floor, without I/O: a rebuild drops the copies held; a
// copy below the floor is refused however high its version; raising the
// floor drops what is below it and never lowers it.
func TestGenerationFloor(t *testing.T) {
	s := newStore(4)
	const p = 1
	old := &Session{ID: "a", Version: 40, Gen: 0}
	other := &Session{ID: "b", Version: 7, Gen: 0, Principal: "alice"}
	s.putIfNewer(p, old)
	s.putIfNewer(p, other)

	gen := s.rebuilt(p, 100)
	if gen != 100 || s.floor(p) != 100 || s.generation(p) != 100 {
		t.Fatalf("rebuilt at %d: floor %d, generation %d; want 100", gen, s.floor(p), s.generation(p))
	}
	if s.count(p) != 0 || len(s.parts[p].principals) != 0 {
		t.Fatalf("a rebuild from nothing kept %d copies and principals %v", s.count(p), s.parts[p].principals)
	}
	if _, stored, err := s.putUnder(p, old, true, nil); stored || !errors.Is(err, ErrStale) {
		t.Fatalf("v40 of generation 0 stored %v (%v) below floor 100; want refused as stale", stored, err)
	}
	if _, stored := s.putIfNewer(p, &Session{ID: "a", Version: 1, Gen: 100}); !stored {
		t.Fatal("v1 of the new generation refused")
	}

	// A second rebuild is above the first whatever the clock says; a
	// floor learned from another owner drops what is below it.
	gen = s.rebuilt(p, 50)
	if gen != 101 || s.get(p, "a") != nil {
		t.Fatalf("a second rebuild asked for 50 got generation %d and kept %v; want 101 and nothing", gen, s.get(p, "a"))
	}
	s.putIfNewer(p, &Session{ID: "a", Version: 2, Gen: 101})
	s.putIfNewer(p, &Session{ID: "c", Version: 3, Gen: 150})
	if raised, dropped := s.raiseFloor(p, 150); !raised || dropped != 1 || s.get(p, "a") != nil || s.get(p, "c") == nil {
		t.Fatalf("raising the floor to 150 dropped %d; a %v, c %v", dropped, s.get(p, "a"), s.get(p, "c"))
	}
	if raised, dropped := s.raiseFloor(p, 120); raised || dropped != 0 || s.floor(p) != 150 {
		t.Fatalf("a lower floor dropped %d and left the floor at %d", dropped, s.floor(p))
	}
	// A hand-off given up for time makes a new generation and no floor:
	// the copies held stay.
	s.newGeneration(p, 0)
	if s.generation(p) != 151 || s.floor(p) != 150 || s.get(p, "c") == nil {
		t.Fatalf("a new generation: %d, floor %d, c %v; want 151, 150, c kept", s.generation(p), s.floor(p), s.get(p, "c"))
	}
	if s.floor(0) != 0 || s.floor(2) != 0 {
		t.Fatal("other partitions' floors moved")
	}
}

// A primary whose buddy has heard of a rebuild the primary has not (its
// floor is higher) has its write refused as stale; it learns the floor
// from the buddy, drops its copy from before the rebuild, and applies the
// write on what is left: the session starts again at v1 in the new
// generation, on both owners.
func TestAPrimaryLearnsTheBuddysFloor(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	id := sessionID(7)
	primary, buddy := c.ownersOf(id)
	for range 4 {
		put(t, primary, id, "v", "before")
	}
	p := primary.Table().Partition(id)
	floor := buddy.store.rebuilt(p, primary.store.generation(p)+1000)

	s := put(t, primary, id, "v", "after")
	if s.Version != 1 || s.Gen != floor {
		t.Fatalf("the write after the buddy's rebuild made v%d of generation %d; want v1 of %d", s.Version, s.Gen, floor)
	}
	if primary.store.floor(p) != floor {
		t.Fatalf("the primary's floor is %d; want the buddy's %d", primary.store.floor(p), floor)
	}
	if b := buddy.store.get(p, id); b == nil || b.Stamp != s.Stamp {
		t.Fatalf("the buddy holds %+v; want the acknowledged %+v", b, s)
	}
}
