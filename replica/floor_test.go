package replica

import (
	"errors"
	"testing"
	"time"
)

// The generation floor, without I/O: a rebuild moves the copies held to
// the new generation; a copy below the floor is refused however high its
// version; raising the floor drops what is below it and never lowers it.
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
	if a, b := s.get(p, "a"), s.get(p, "b"); a == nil || a.Gen != 100 || a.Version != 40 || b == nil || b.Gen != 100 || s.parts[p].principals.len() != 1 {
		t.Fatalf("a rebuild kept %+v and %+v, principals %v; want both at generation 100", a, b, s.parts[p].principals)
	}
	if old.Gen != 0 {
		t.Fatal("the rebuild changed a copy in place, not a new one")
	}
	if _, stored, err := s.putUnder(p, &Session{ID: "c", Version: 90, Gen: 0}, true, nil); stored || !errors.Is(err, ErrStale) {
		t.Fatalf("v90 of generation 0 stored %v (%v) below floor 100; want refused as stale", stored, err)
	}
	s.drop(p)
	if _, stored := s.putIfNewer(p, &Session{ID: "a", Version: 1, Gen: 100}); !stored {
		t.Fatal("v1 of the new generation refused")
	}

	// A second rebuild is above the first whatever the clock says; a
	// floor learned from another owner drops what is below it.
	gen = s.rebuilt(p, 50)
	if a := s.get(p, "a"); gen != 101 || a == nil || a.Gen != 101 {
		t.Fatalf("a second rebuild asked for 50 got generation %d and kept %v; want 101, a at 101", gen, a)
	}
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
	buddy.store.drop(p) // the buddy lost its copy, then rebuilt the partition
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

// What a view reads of the node's ownership goes with the copies it sees:
// a hand-off given up, a ring installed or copies dropped with the store
// held (exclusive) waits for the view to end. A pull reply once said the
// node held a partition while carrying the copies its give-up was
// dropping (chaos finding F17, session 370 of the 30-minute run at
// 24209bc).
func TestAViewOfAPartitionHoldsOffTheStoreHeldWhole(t *testing.T) {
	s := newStore(4)
	s.putIfNewer(2, &Session{ID: sessionID(1), Version: 1})
	entered, release := make(chan struct{}), make(chan struct{})
	viewed := make(chan int, 1)
	go s.view(2, func(sessions map[string]*Session, _ uint64) {
		close(entered)
		<-release
		viewed <- len(sessions)
	})
	<-entered
	dropped := make(chan int, 1)
	go s.exclusive(func() { dropped <- s.dropLocked(2) })
	select {
	case n := <-dropped:
		t.Fatalf("dropped %d copies while a view of the partition was open", n)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if n := <-viewed; n != 1 {
		t.Fatalf("the view saw %d copies, want the 1 from before the drop", n)
	}
	if n := <-dropped; n != 1 {
		t.Fatalf("the drop after the view dropped %d copies, want 1", n)
	}
}
