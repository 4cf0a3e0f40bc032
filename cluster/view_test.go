package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/tandem-io/tandem/ring"
)

// fakeNode returns a memberlist node as the event delegate would get it.
func fakeNode(t *testing.T, name string, port uint16, boot string, s State) *memberlist.Node {
	t.Helper()
	b, err := encodeMeta(Meta{BootID: boot, Peer: name + ".peer:7000", HTTP: name + ".http:8080", State: s, Ring: ring.DefaultConfig().String()})
	if err != nil {
		t.Fatal(err)
	}
	return &memberlist.Node{Name: name, Addr: net.IPv4(127, 0, 0, 1), Port: port, Meta: b}
}

func TestTrackerEpochs(t *testing.T) {
	tr := newTracker(slog.New(slog.DiscardHandler))
	epoch := func() uint64 { v, _ := tr.snapshot(); return v.Epoch }
	step := func(what string, want uint64, event func()) {
		t.Helper()
		event()
		if got := epoch(); got != want {
			t.Fatalf("after %s: epoch %d, want %d", what, got, want)
		}
	}

	step("self joins", 1, func() { tr.alive(fakeNode(t, "a", 1, "a1", StateJoining)) })
	step("b joins", 2, func() { tr.alive(fakeNode(t, "b", 2, "b1", StateJoining)) })
	step("b repeats itself", 2, func() { tr.alive(fakeNode(t, "b", 2, "b1", StateJoining)) })
	step("b becomes active", 2, func() { tr.alive(fakeNode(t, "b", 2, "b1", StateActive)) })
	step("c joins", 3, func() { tr.alive(fakeNode(t, "c", 3, "c1", StateJoining)) })
	step("c is leaving", 4, func() { tr.alive(fakeNode(t, "c", 3, "c1", StateLeaving)) })
	step("c leaves", 4, func() { tr.gone(fakeNode(t, "c", 3, "c1", StateLeaving)) })
	step("b dies", 5, func() { tr.gone(fakeNode(t, "b", 2, "b1", StateActive)) })
	step("b is still dead", 5, func() { tr.gone(fakeNode(t, "b", 2, "b1", StateActive)) })
	step("b restarts elsewhere", 6, func() { tr.alive(fakeNode(t, "b", 4, "b2", StateJoining)) })
	step("b restarts in place", 7, func() { tr.alive(fakeNode(t, "b", 4, "b3", StateJoining)) })

	v, _ := tr.snapshot()
	if got := ringNames(v); strings.Join(got, ",") != "a,b" {
		t.Fatalf("ring %v, want a,b", got)
	}
	c, ok := v.member("c")
	if !ok || c.Health != healthDead || c.Meta.State != StateLeaving {
		t.Fatalf("c = %+v, want dead and leaving", c)
	}
	if b, _ := v.member("b"); b.Addr != "127.0.0.1:4" || b.Meta.BootID != "b3" {
		t.Fatalf("b = %+v", b)
	}

	// c's goodbye, arriving late, makes it "left"; the ring is unchanged.
	step("c's late goodbye", 7, func() { tr.goodbye("c", "c1") })
	if c, _ := tr.view.member("c"); c.Health != healthLeft {
		t.Fatalf("c is %q after its goodbye", c.Health)
	}
	// A goodbye that comes first also counts; one of another incarnation
	// does not.
	tr.alive(fakeNode(t, "d", 5, "d1", StateActive))
	tr.goodbye("d", "d1")
	tr.goodbye("a", "a0")
	tr.gone(fakeNode(t, "d", 5, "d1", StateActive))
	tr.gone(fakeNode(t, "a", 1, "a1", StateActive))
	v, _ = tr.snapshot()
	if d, _ := v.member("d"); d.Health != healthLeft {
		t.Fatalf("d is %q, want left", d.Health)
	}
	if a, _ := v.member("a"); a.Health != healthDead {
		t.Fatalf("a is %q, want dead", a.Health)
	}

	// Gone nodes are forgotten after the retention time; self never is.
	tr.expire("a", time.Now().Add(time.Hour), time.Minute)
	v, _ = tr.snapshot()
	if len(v.Members) != 2 || v.Members[0].Name != "a" || v.Members[1].Name != "b" {
		t.Fatalf("after expiry: %+v", v.Members)
	}
}

func TestTrackerIgnoresUndecodableMeta(t *testing.T) {
	tr := newTracker(slog.New(slog.DiscardHandler))
	tr.alive(&memberlist.Node{Name: "x", Addr: net.IPv4(127, 0, 0, 1), Port: 1, Meta: []byte("junk")})
	if v, _ := tr.snapshot(); len(v.Members) != 0 || v.Epoch != 0 {
		t.Fatalf("view %+v", v)
	}
}

func TestDeliverCoalescesAndKeepsLatest(t *testing.T) {
	tr := newTracker(slog.New(slog.DiscardHandler))
	stop := make(chan struct{})
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	var mu sync.Mutex
	var got []View
	done := make(chan struct{})
	go func() {
		defer close(done)
		tr.deliver(stop, "a", time.Minute, func(v View) {
			mu.Lock()
			got = append(got, v)
			mu.Unlock()
			select {
			case entered <- struct{}{}:
			default:
			}
			<-release
		})
	}()

	tr.alive(fakeNode(t, "a", 1, "a1", StateJoining))
	<-entered // the first call is running and blocked
	for i := range 50 {
		tr.alive(fakeNode(t, "a", uint16(2+i), fmt.Sprint("a", 2+i), StateJoining)) // memberlist is never held up
	}
	close(release)
	waitFor(t, 5*time.Second, "the latest view", func() bool {
		mu.Lock()
		defer mu.Unlock()
		last := got[len(got)-1]
		return len(last.Members) == 1 && last.Members[0].Addr == "127.0.0.1:51"
	})
	close(stop)
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(got) > 3 {
		t.Fatalf("%d deliveries for 51 changes while the callback was blocked; want them coalesced", len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i].Epoch <= got[i-1].Epoch {
			t.Fatalf("views out of order: epoch %d after %d", got[i].Epoch, got[i-1].Epoch)
		}
	}
}

func TestDelegateRefusesOtherRings(t *testing.T) {
	d := &delegate{name: "a", ring: ring.DefaultConfig().String(), tracker: newTracker(slog.New(slog.DiscardHandler))}
	same := fakeNode(t, "b", 2, "b1", StateActive)
	if err := d.NotifyAlive(same); err != nil {
		t.Fatalf("same ring refused: %v", err)
	}
	other := ring.Config{Partitions: 7, VirtualNodes: 1, Load: 1}
	b, _ := encodeMeta(Meta{BootID: "x", State: StateJoining, Ring: other.String()})
	x := &memberlist.Node{Name: "x", Meta: b}
	err := d.NotifyAlive(x)
	if !errors.Is(err, ErrRingMismatch) || !strings.Contains(err.Error(), other.String()) || !strings.Contains(err.Error(), d.ring) {
		t.Fatalf("NotifyAlive(x) = %v, want a ring mismatch naming both settings", err)
	}
	if err := d.NotifyAlive(&memberlist.Node{Name: "junk", Meta: []byte{0xc1}}); err == nil {
		t.Fatal("undecodable meta accepted")
	}

	// A merge is refused if any node differs; only a join of ours records it.
	if err := d.NotifyMerge([]*memberlist.Node{same, x}); !errors.Is(err, ErrRingMismatch) {
		t.Fatalf("NotifyMerge = %v", err)
	}
	d.beginJoin()
	_ = d.NotifyMerge([]*memberlist.Node{same})
	if err := d.endJoin(); err != nil {
		t.Fatalf("recorded %v for a good merge", err)
	}
	d.beginJoin()
	_ = d.NotifyMerge([]*memberlist.Node{same, x})
	if err := d.endJoin(); !errors.Is(err, ErrRingMismatch) {
		t.Fatalf("recorded %v, want the mismatch", err)
	}
}

func TestParseMemberlistLine(t *testing.T) {
	for line, want := range map[string]struct {
		level slog.Level
		msg   string
	}{
		"[DEBUG] memberlist: Stream connection from=1.2.3.4": {slog.LevelDebug, "Stream connection from=1.2.3.4"},
		"[INFO] memberlist: Suspect b has failed":            {slog.LevelInfo, "Suspect b has failed"},
		"[WARN] memberlist: Was able to connect to b":        {slog.LevelWarn, "Was able to connect to b"},
		"[ERR] memberlist: Failed push/pull merge: boom":     {slog.LevelError, "Failed push/pull merge: boom"},
		"[ERR] Failed to shutdown transport: x":              {slog.LevelError, "Failed to shutdown transport: x"},
		"Err: Could not set the deadline: x":                 {slog.LevelInfo, "Err: Could not set the deadline: x"},
	} {
		level, msg := parseMemberlistLine(line)
		if level != want.level || msg != want.msg {
			t.Errorf("%q: got %v %q, want %v %q", line, level, msg, want.level, want.msg)
		}
	}

	var buf syncBuffer
	l := newMemberlistLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Printf("[DEBUG] memberlist: hidden")
	l.Printf("[WARN] memberlist: shown %d", 1)
	out := buf.String()
	if strings.Contains(out, "hidden") || !strings.Contains(out, `level=WARN msg="shown 1" component=memberlist`) {
		t.Fatalf("log output %q", out)
	}
}
