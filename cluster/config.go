package cluster

import (
	"github.com/hashicorp/memberlist"

	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/tandem-io/tandem/ring"
)

// Defaults used by DefaultConfig, and by Start for knobs left at zero. The
// failure detector's timing is LANProfile's (profile.go).
const (
	defaultBindAddr            = "127.0.0.1:7946"
	defaultRejoinInterval      = 10 * time.Second
	defaultDeadNodeReclaimTime = time.Second
	defaultPushPullInterval    = 5 * time.Second
	defaultTCPTimeout          = time.Second
	defaultGossipToTheDeadTime = 15 * time.Second
)

// Config configures one node. Start fills knobs left at zero with their
// defaults; Name and a valid Ring are required.
type Config struct {
	// Name identifies the node in the cluster. It must be unique among the
	// live nodes and stable across restarts: the ring places partitions by
	// name, so a node that comes back under its name gets its partitions
	// back. Required.
	Name string

	// BindAddr is the gossip listen address, "ip:port", used for both UDP
	// (probes and gossip) and TCP (joins and state exchange) on the same
	// port. The host must be an IP address; an empty host or 0.0.0.0 listens
	// on every interface (memberlist then advertises a private address of
	// the machine unless AdvertiseAddr says otherwise). Port 0 picks a free
	// port; Cluster.Addr tells which one. Default "127.0.0.1:7946".
	BindAddr string

	// AdvertiseAddr is the gossip address other nodes should use to reach
	// this one, "ip:port" or a bare IP, for when the bound address is not
	// reachable as such (NAT, containers). An omitted or zero port means the
	// bound port. A fixed advertised port cannot be combined with bind port
	// 0. Default: the bound address.
	AdvertiseAddr string

	// Seeds name nodes to join: gossip addresses ("ip:port"), host names
	// with a port ("host:port", standing for every A and AAAA address of
	// the host), or DNS SRV records ("dns+srv://_gossip._tcp.example.org",
	// see SRVScheme; a Kubernetes headless Service has one), resolved at
	// Start and again at every re-join (see join.go). Joining one of them
	// is enough to learn the whole cluster. Addresses equal to this node's
	// own gossip address are skipped, so every node can be given the same
	// list. Empty means this node starts a new cluster.
	Seeds []string

	// Resolver looks up the names in Seeds. Nil uses net.DefaultResolver;
	// tests inject their own.
	Resolver Resolver

	// Peer is the address of this node's replication and forwarding
	// listener, gossiped in Meta.Peer for the ring's users.
	Peer string

	// HTTP is the address of this node's HTTP API, gossiped in Meta.HTTP;
	// "" if it has none.
	HTTP string
	// Witness makes this node a witness: it holds no sessions and only
	// counts toward the quorum and grants leases (ring.Member.Witness).
	Witness bool

	// Ring holds the ring settings. They are gossiped in Meta.Ring, and a
	// node refuses every peer whose settings differ, because the two would
	// compute different partition tables. Must pass ring.Config.Validate.
	Ring ring.Config

	// SecretKey, if set, encrypts and authenticates all gossip with AES-GCM
	// under this one key: a shorthand for Keys holding it alone. Setting
	// both SecretKey and Keys is an error.
	SecretKey []byte

	// Keys, if set, is the node's gossip keyring: all gossip is encrypted
	// and authenticated with AES-GCM under the first key (the primary),
	// and a message is accepted if any of the keys opens it; unencrypted
	// messages and messages no key opens are dropped, so nodes without a
	// key the others use cannot talk to this one. Each key is 16, 24 or 32
	// bytes (AES-128, -192, -256), none repeated. Keys rotate at run time
	// with Cluster.InstallKey, UseKey and RemoveKey; ParseKeyFile reads
	// them from a key file. Empty (and no SecretKey) leaves gossip in the
	// clear.
	Keys [][]byte

	// RejoinInterval is how often the node re-joins those of its Seeds that
	// are not currently live members. After a network cut heals, the two
	// halves have each declared the other dead and would otherwise never
	// talk again; the re-join merges them back. Default 10s; negative turns
	// periodic re-joining off.
	RejoinInterval time.Duration

	// DeadNodeReclaimTime is how long after a node was declared dead another
	// node may take over its name from a different address. A node
	// restarted under the same name on a new address is refused as a
	// conflict until then. Default 1s; negative means never (memberlist's
	// default behaviour: the name is only free once the dead node is
	// forgotten).
	DeadNodeReclaimTime time.Duration

	// ProbeInterval is how often each node probes one random peer to check
	// that it is alive. Together with ProbeTimeout and SuspicionMult it sets
	// how fast failures are detected: a crashed node is suspected about one
	// round of probes after it stops answering and declared dead
	// SuspicionMult × ProbeInterval (scaled up by log10 of the cluster size)
	// after that. Default 1s (LANProfile); 200ms in LocalProfile.
	ProbeInterval time.Duration

	// ProbeTimeout is how long a probe waits for the direct acknowledgement
	// before asking other nodes to probe indirectly. It should exceed the
	// round-trip time of the network, with room for a busy machine. Default
	// 500ms (LANProfile); 100ms in LocalProfile.
	ProbeTimeout time.Duration

	// SuspicionMult scales how long a suspected node has to refute the
	// suspicion before it is declared dead (see ProbeInterval). Higher
	// values make false deaths of slow but live nodes rarer and real deaths
	// slower to notice. Default 4 (LANProfile); 2 in LocalProfile.
	SuspicionMult int

	// GossipInterval is how often a node sends queued gossip (joins, state
	// changes, suspicions) to a few random peers. Lower spreads changes
	// faster for more packets. Default 200ms (LANProfile); 50ms in
	// LocalProfile.
	GossipInterval time.Duration

	// PushPullInterval is how often a node exchanges its full membership
	// state with a random peer over TCP, repairing whatever gossip missed.
	// It also bounds how long a node restarted under its old name on a new
	// address may wait before its peers accept the new address. Default 5s.
	PushPullInterval time.Duration

	// TCPTimeout bounds each TCP operation: a join's or a push/pull's dial
	// and exchange, and the goodbye Leave sends. Default 1s.
	TCPTimeout time.Duration

	// GossipToTheDeadTime is how long a dead or departed node stays known:
	// memberlist keeps gossiping its death for this long, and the View keeps
	// listing it (with Health "dead" or "left") until then. Default 15s.
	GossipToTheDeadTime time.Duration

	// Logger receives the node's own log lines and memberlist's, the latter
	// with attribute component=memberlist at the level memberlist gave them
	// (memberlist's DEBUG lines are chatty). Nil discards them.
	Logger *slog.Logger

	// OnChange, if set, is called with the new View whenever the view
	// changes: a member joins, leaves, dies, or changes its metadata (such as
	// its State). Calls come from one goroutine, one at a time, with views in
	// the order they were formed. A slow OnChange never holds memberlist up:
	// changes that happen meanwhile are coalesced, and the latest view is
	// delivered once the call returns, so intermediate views may be skipped
	// but the final one never is. The first call may come before Start
	// returns. OnChange must not call Close or Leave, which wait for it.
	OnChange func(View)

	// WrapTransport, if set, wraps the gossip transport the node binds, as
	// the chaos harness does with a FaultyTransport to cut gossip. Nil
	// uses memberlist's network transport as is.
	WrapTransport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
}

// DefaultConfig returns a Config for a node called name: gossip on
// 127.0.0.1:7946, the default ring settings, and the failure-detector
// timing of LANProfile, safe on a real network (each Config field says its
// default). Set BindAddr (and Seeds, Peer, HTTP) for anything but a
// single-machine cluster; LocalProfile().Apply suits loopback and tests.
func DefaultConfig(name string) Config {
	lan := LANProfile()
	return Config{
		Name:                name,
		BindAddr:            defaultBindAddr,
		Ring:                ring.DefaultConfig(),
		RejoinInterval:      defaultRejoinInterval,
		DeadNodeReclaimTime: defaultDeadNodeReclaimTime,
		ProbeInterval:       lan.ProbeInterval,
		ProbeTimeout:        lan.ProbeTimeout,
		SuspicionMult:       lan.SuspicionMult,
		GossipInterval:      lan.GossipInterval,
		PushPullInterval:    defaultPushPullInterval,
		TCPTimeout:          defaultTCPTimeout,
		GossipToTheDeadTime: defaultGossipToTheDeadTime,
	}
}

// errConfig is wrapped by every configuration error Start returns.
var errConfig = errors.New("cluster: invalid config")

// endpoint is a parsed gossip address.
type endpoint struct {
	host string // IP literal, or "" for every interface
	port int
}

// withDefaults returns c with zero knobs set to their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig(c.Name)
	if c.BindAddr == "" {
		c.BindAddr = d.BindAddr
	}
	setDur := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	setDur(&c.RejoinInterval, d.RejoinInterval)
	setDur(&c.DeadNodeReclaimTime, d.DeadNodeReclaimTime)
	setDur(&c.ProbeInterval, d.ProbeInterval)
	setDur(&c.ProbeTimeout, d.ProbeTimeout)
	setDur(&c.GossipInterval, d.GossipInterval)
	setDur(&c.PushPullInterval, d.PushPullInterval)
	setDur(&c.TCPTimeout, d.TCPTimeout)
	setDur(&c.GossipToTheDeadTime, d.GossipToTheDeadTime)
	if c.SuspicionMult == 0 {
		c.SuspicionMult = d.SuspicionMult
	}
	return c
}

// validate checks a config that withDefaults has filled in, and returns the
// parsed bind and advertise addresses.
func (c Config) validate() (bind, adv endpoint, err error) {
	if c.Name == "" {
		return bind, adv, fmt.Errorf("%w: name is required", errConfig)
	}
	if err := c.Ring.Validate(); err != nil {
		return bind, adv, fmt.Errorf("%w: ring: %w", errConfig, err)
	}
	if _, err := c.gossipKeys(); err != nil {
		return bind, adv, err
	}
	for _, k := range []struct {
		name string
		d    time.Duration
	}{
		{"probe interval", c.ProbeInterval}, {"probe timeout", c.ProbeTimeout},
		{"gossip interval", c.GossipInterval}, {"push/pull interval", c.PushPullInterval},
		{"TCP timeout", c.TCPTimeout}, {"gossip-to-the-dead time", c.GossipToTheDeadTime},
	} {
		if k.d < 0 {
			return bind, adv, fmt.Errorf("%w: %s must be positive, got %v", errConfig, k.name, k.d)
		}
	}
	if c.SuspicionMult < 1 {
		return bind, adv, fmt.Errorf("%w: suspicion multiplier must be ≥ 1, got %d", errConfig, c.SuspicionMult)
	}
	for _, s := range c.Seeds {
		if err := checkSeed(s); err != nil {
			return bind, adv, fmt.Errorf("%w: seed %q: %w", errConfig, s, err)
		}
	}
	if bind, err = parseEndpoint(c.BindAddr, false); err != nil {
		return bind, adv, fmt.Errorf("%w: bind address: %w", errConfig, err)
	}
	if c.AdvertiseAddr != "" {
		if adv, err = parseEndpoint(c.AdvertiseAddr, true); err != nil {
			return bind, adv, fmt.Errorf("%w: advertise address: %w", errConfig, err)
		}
		if adv.host == "" {
			return bind, adv, fmt.Errorf("%w: advertise address %q has no IP", errConfig, c.AdvertiseAddr)
		}
		if bind.port == 0 && adv.port != 0 {
			return bind, adv, fmt.Errorf("%w: advertise port %d cannot be combined with bind port 0", errConfig, adv.port)
		}
	}
	return bind, adv, nil
}

// parseEndpoint parses "ip:port" (or, if bareIP, a lone IP, meaning port 0).
func parseEndpoint(s string, bareIP bool) (endpoint, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		if bareIP && net.ParseIP(s) != nil {
			return endpoint{host: s}, nil
		}
		return endpoint{}, fmt.Errorf("%q: %w", s, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return endpoint{}, fmt.Errorf("%q: bad port: %w", s, err)
	}
	if host != "" && net.ParseIP(host) == nil {
		return endpoint{}, fmt.Errorf("%q: host must be an IP address", s)
	}
	return endpoint{host: host, port: int(port)}, nil
}
