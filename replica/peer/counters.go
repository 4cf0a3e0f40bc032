package peer

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Counters count the requests that go over the wire, by method: the
// request frames a Client has written to a connection (Sent) and the
// request frames a Server has read from one (Received), whether or not
// the handler then accepts them. Every request is answered by exactly
// one response, so responses are not counted separately; a call that
// fails before its frame is written (redial backoff, a dial that fails,
// args too large, or its caller gave up while the frame waited for the
// connection's writer) is not counted. A Client counts a frame when its
// writer starts the write that carries it. The in-memory Network counts in its
// own Stats, not here.
//
// Counting is one lock-free map lookup and one atomic add per request.
// A method name is counted under its own name only if it looks like one
// (at most 32 bytes of letters, digits, '_', '-' and '.', starting with
// a letter) and fewer than 64 names are counted already; anything else
// — a name a misbehaving caller made up, say — is counted as
// OtherMethod, so a caller cannot grow the set without bound.
//
// The zero value is ready to use; a Counters must not be copied after
// first use. It is safe for concurrent use.
type Counters struct {
	methods sync.Map // method name → *methodCounts
	mu      sync.Mutex
	named   int // methods in the map; guarded by mu
	other   methodCounts
}

// methodCounts are one method's counts.
type methodCounts struct {
	sent, received atomic.Uint64
}

// OtherMethod is the name Counters count under a method whose own name
// they do not keep (see Counters). It cannot be the name of a counted
// method, which starts with a letter.
const OtherMethod = "_other"

// Bounds on the method names Counters keep.
const (
	maxCountedMethods    = 64
	maxCountedMethodName = 32
)

// processCounters are what every Client and Server counts into when its
// config names no Counters.
var processCounters Counters

// ProcessCounters returns the Counters of this process: every Client and
// Server whose config leaves Counters nil counts into them, so they sum
// every node (and smart client) the process runs. `tandem serve` runs
// one node per process, whose traffic they then are.
func ProcessCounters() *Counters { return &processCounters }

// MethodCount is how many requests of one method a Counters has counted.
type MethodCount struct {
	// Method is the method's name, or OtherMethod.
	Method string
	// Sent is the number of requests written by Clients.
	Sent uint64
	// Received is the number of requests read by Servers.
	Received uint64
}

// sent counts one request of method written by a Client.
func (c *Counters) sent(method string) { c.of(method).sent.Add(1) }

// received counts one request of method read by a Server.
func (c *Counters) received(method string) { c.of(method).received.Add(1) }

// of returns method's counts, adding them on first use.
func (c *Counters) of(method string) *methodCounts {
	if m, ok := c.methods.Load(method); ok {
		return m.(*methodCounts)
	}
	if !countableMethod(method) {
		return &c.other
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.methods.Load(method); ok {
		return m.(*methodCounts)
	}
	if c.named >= maxCountedMethods {
		return &c.other
	}
	m := new(methodCounts)
	c.methods.Store(strings.Clone(method), m)
	c.named++
	return m
}

// countableMethod reports whether name may be counted under its own name.
func countableMethod(name string) bool {
	if name == "" || len(name) > maxCountedMethodName {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		letter := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
		switch {
		case letter:
		case i == 0:
			return false
		case b >= '0' && b <= '9', b == '_', b == '-', b == '.':
		default:
			return false
		}
	}
	return true
}

// Snapshot returns the counts of every method counted so far, sorted by
// method name, with OtherMethod last if anything was counted under it.
// Counts only grow; each is read atomically, but not all at one instant.
func (c *Counters) Snapshot() []MethodCount {
	var out []MethodCount
	c.methods.Range(func(k, v any) bool {
		m := v.(*methodCounts)
		out = append(out, MethodCount{Method: k.(string), Sent: m.sent.Load(), Received: m.received.Load()})
		return true
	})
	slices.SortFunc(out, func(a, b MethodCount) int { return strings.Compare(a.Method, b.Method) })
	if s, r := c.other.sent.Load(), c.other.received.Load(); s > 0 || r > 0 {
		out = append(out, MethodCount{Method: OtherMethod, Sent: s, Received: r})
	}
	return out
}
