package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"
)

// State is a node's lifecycle stage, as the node itself gossips it in its
// metadata. Only the node sets its own State (Cluster.SetState); everyone else
// reads it from the gossip.
type State uint8

// The lifecycle of a node. A node starts Joining, becomes Active when its user
// says it is ready to serve, and says Leaving before it goes away so that the
// others can take its partitions over while it is still reachable.
const (
	// StateJoining is the state every node starts in: it is a ring member,
	// but its user has not yet declared it ready.
	StateJoining State = iota + 1
	// StateActive is a node that its user declared ready to serve.
	StateActive
	// StateLeaving is a node on its way out: it is still alive but no longer
	// owns partitions (View.Ring leaves it out).
	StateLeaving
)

// String returns "joining", "active" or "leaving", or "state(N)" for a value
// that is none of these.
func (s State) String() string {
	switch s {
	case StateJoining:
		return "joining"
	case StateActive:
		return "active"
	case StateLeaving:
		return "leaving"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText renders the state as its name, so that it appears as a string
// in JSON and other text encodings. It fails for an unknown state.
func (s State) MarshalText() ([]byte, error) {
	if !s.valid() {
		return nil, fmt.Errorf("cluster: unknown state %d", uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText parses a state name as MarshalText writes it.
func (s *State) UnmarshalText(text []byte) error {
	for _, v := range []State{StateJoining, StateActive, StateLeaving} {
		if string(text) == v.String() {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("cluster: unknown state %q", text)
}

// valid reports whether s is one of the defined states.
func (s State) valid() bool { return s >= StateJoining && s <= StateLeaving }

// Meta is what each node gossips about itself. It travels msgpack-encoded in
// memberlist's node metadata, which memberlist limits to
// memberlist.MetaMaxSize (512) bytes; Start refuses a configuration whose
// Meta would not fit.
type Meta struct {
	// BootID is random per process start (8 random bytes, hex): a node
	// restarted under the same name is a new incarnation with a new BootID,
	// so its peers can tell that whatever it held in memory is gone.
	BootID string `json:"boot_id"`
	// Peer is the address of the node's replication and forwarding listener.
	Peer string `json:"peer"`
	// HTTP is the address of the node's HTTP API, "" if it has none.
	HTTP string `json:"http"`
	// State is the node's lifecycle stage.
	State State `json:"state"`
	// Ring is ring.Config.String() of the node's ring settings. Nodes whose
	// Ring differs refuse each other.
	Ring string `json:"ring"`
	// Witness marks a member that holds no sessions and only counts toward
	// the quorum and grants leases (ring.Member.Witness).
	Witness bool `json:"witness,omitempty"`
}

// metaVersion is the version of the metadata encoding; decoders refuse
// metadata without it, which also refuses nodes that are not Tandem nodes.
const metaVersion = 1

// wireMeta is Meta as encoded on the wire: short keys keep it small, and
// msgpack's map encoding lets later versions add fields that older nodes
// ignore.
type wireMeta struct {
	Version uint8  `msgpack:"v"`
	BootID  string `msgpack:"b"`
	Peer    string `msgpack:"p"`
	HTTP    string `msgpack:"h"`
	State   uint8  `msgpack:"s"`
	Ring    string `msgpack:"r"`
	Witness bool   `msgpack:"w,omitempty"`
}

// errMetaTooLarge is wrapped by encodeMeta when the encoding does not fit in
// memberlist's metadata.
var errMetaTooLarge = errors.New("cluster: node metadata too large")

// encodeMeta encodes m for memberlist, failing if it exceeds MetaMaxSize.
func encodeMeta(m Meta) ([]byte, error) {
	b, err := msgpack.Marshal(wireMeta{
		Version: metaVersion,
		BootID:  m.BootID,
		Peer:    m.Peer,
		HTTP:    m.HTTP,
		State:   uint8(m.State),
		Ring:    m.Ring,
		Witness: m.Witness,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: encode node metadata: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: %d bytes encoded, memberlist allows %d (shorten Peer, HTTP or the ring settings)",
			errMetaTooLarge, len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// decodeMeta decodes metadata written by encodeMeta.
func decodeMeta(b []byte) (Meta, error) {
	if len(b) == 0 {
		return Meta{}, errors.New("cluster: node has no metadata")
	}
	var w wireMeta
	if err := msgpack.Unmarshal(b, &w); err != nil {
		return Meta{}, fmt.Errorf("cluster: decode node metadata: %w", err)
	}
	if w.Version == 0 {
		return Meta{}, errors.New("cluster: node metadata has no version")
	}
	m := Meta{BootID: w.BootID, Peer: w.Peer, HTTP: w.HTTP, State: State(w.State), Ring: w.Ring, Witness: w.Witness}
	if !m.State.valid() {
		return Meta{}, fmt.Errorf("cluster: node metadata has unknown state %d", w.State)
	}
	return m, nil
}

// newBootID returns 8 random bytes, hex-encoded.
func newBootID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("cluster: boot id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
