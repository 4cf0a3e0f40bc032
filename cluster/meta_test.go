package cluster

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
	"github.com/tandem-io/tandem/ring"
	"github.com/vmihailenco/msgpack/v5"
)

func TestMetaRoundTrip(t *testing.T) {
	boot, err := newBootID()
	if err != nil {
		t.Fatal(err)
	}
	if len(boot) != 16 {
		t.Fatalf("boot id %q is not 8 bytes of hex", boot)
	}
	if other, _ := newBootID(); other == boot {
		t.Fatal("two boot ids are equal")
	}
	for i, s := range []State{StateJoining, StateActive, StateLeaving} {
		m := Meta{BootID: boot, Peer: "10.0.0.1:7000", HTTP: "10.0.0.1:8080", State: s, Ring: ring.DefaultConfig().String(), Witness: i == 1}
		b, err := encodeMeta(m)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 128 {
			t.Errorf("typical meta takes %d bytes; expected well under %d", len(b), memberlist.MetaMaxSize)
		}
		got, err := decodeMeta(b)
		if err != nil {
			t.Fatal(err)
		}
		if got != m {
			t.Fatalf("round trip: got %+v, want %+v", got, m)
		}
	}
}

func TestMetaSizeLimit(t *testing.T) {
	m := Meta{BootID: "0123456789abcdef", State: StateJoining, Ring: ring.DefaultConfig().String()}
	// Find the largest Peer that fits: the limit is exactly MetaMaxSize.
	fits := 0
	for n := 0; n < memberlist.MetaMaxSize; n++ {
		m.Peer = strings.Repeat("p", n)
		if _, err := encodeMeta(m); err != nil {
			if !errors.Is(err, errMetaTooLarge) {
				t.Fatalf("err = %v, want errMetaTooLarge", err)
			}
			break
		}
		fits = n
	}
	m.Peer = strings.Repeat("p", fits)
	b, err := encodeMeta(m)
	if err != nil || len(b) > memberlist.MetaMaxSize || len(b) < memberlist.MetaMaxSize-2 {
		t.Fatalf("largest meta: %d bytes, %v", len(b), err)
	}
	m.Peer += "p"
	if _, err := encodeMeta(m); !errors.Is(err, errMetaTooLarge) {
		t.Fatalf("one byte more: err = %v, want errMetaTooLarge", err)
	}
}

func TestDecodeMetaRefusesGarbage(t *testing.T) {
	badState, err := msgpack.Marshal(wireMeta{Version: metaVersion, BootID: "b", State: 9, Ring: "r"})
	if err != nil {
		t.Fatal(err)
	}
	noVersion, err := msgpack.Marshal(map[string]string{"b": "x"})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"empty":       nil,
		"not msgpack": {0xc1},
		"no version":  noVersion,
		"bad state":   badState,
	} {
		if _, err := decodeMeta(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestStateText(t *testing.T) {
	for s, want := range map[State]string{StateJoining: "joining", StateActive: "active", StateLeaving: "leaving", 0: "state(0)", 7: "state(7)"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", uint8(s), got, want)
		}
	}
	b, err := json.Marshal(Member{Name: "a", Meta: Meta{State: StateActive}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"state":"active"`) {
		t.Fatalf("JSON %s does not render the state as a string", b)
	}
	var m Member
	if err := json.Unmarshal(b, &m); err != nil || m.Meta.State != StateActive {
		t.Fatalf("JSON round trip: %+v, %v", m, err)
	}
	if _, err := State(0).MarshalText(); err == nil {
		t.Fatal("MarshalText of an unknown state succeeded")
	}
	var s State
	if err := s.UnmarshalText([]byte("sleeping")); err == nil {
		t.Fatal("UnmarshalText of an unknown name succeeded")
	}
}
