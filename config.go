package tandem

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/tandem-io/tandem/cluster"
	"github.com/tandem-io/tandem/replica"
	"github.com/tandem-io/tandem/replica/peer"
	"github.com/tandem-io/tandem/ring"
)

// Config configures a Node. Start from DefaultConfig.
type Config struct {
	// Name identifies the node in the cluster. It must be unique and should
	// be stable across restarts, so a returning node gets its sessions back.
	Name string
	// GossipAddr is where the node gossips membership (UDP and TCP),
	// host:port; port 0 picks a free one.
	GossipAddr string
	// PeerAddr is where the node listens for replication and forwarded
	// requests from other nodes, host:port; port 0 picks a free one.
	PeerAddr string
	// HTTPAddr is the address of the node's HTTP API, if the program serves
	// one; it is advertised to other nodes and to clients asking who owns a
	// session. It may be empty.
	HTTPAddr string
	// Witness makes the node a witness: a member that holds no sessions
	// and takes no requests (it is never ready: /readyz answers 503
	// "witness"), and only counts toward the quorum and grants leases. Two
	// nodes and a witness survive the loss of either node, which two nodes
	// alone cannot (a crash looks like a cut to the survivor).
	Witness bool
	// Advertise is the host (an IP address) other nodes and clients are
	// given for the node's HTTP, gossip and peer listeners, with each
	// listener's own port. Empty advertises each listener's bound host,
	// except that a wildcard (0.0.0.0, ::, or an empty host as in ":7070")
	// is never advertised: the address of the default route is, and if
	// the host has none Start fails with ErrInvalid. Set it when the node
	// is bound to a wildcard address on a host with several networks, or
	// behind NAT. Cluster.AdvertiseAddr, if set, overrides it for gossip.
	Advertise string
	// Join lists seeds, existing nodes to join: gossip addresses
	// ("ip:port"), host names ("host:port": every A and AAAA address of
	// the host) or DNS SRV records ("dns+srv://_gossip._tcp.tandem.default.svc.cluster.local",
	// as a Kubernetes headless Service publishes), resolved at Start and
	// again at every periodic re-join (cluster.Config.Seeds; the lookups
	// go through Cluster.Resolver if set). The node's own address is
	// skipped. Empty starts a new cluster.
	//
	// A live member with the node's name fails Start with ErrNameTaken:
	// the member answers probes at another gossip address. A node
	// restarted under its name before its crashed incarnation was
	// declared dead is accepted (nothing answers at the old address).
	Join []string
	// JoinTimeout is how long Start keeps trying to join when no seed
	// answers yet, as when a whole cluster starts at once (default 30s);
	// each retry is logged. Seeds that refuse the node, because its ring
	// settings differ, and a name taken by a live member fail Start at
	// once.
	JoinTimeout time.Duration
	// Ring holds the partitioning settings; every node must agree.
	Ring ring.Config
	// MaxSessionBytes bounds a session's encoded size (default 1 MiB).
	MaxSessionBytes int
	// IdleTimeout and AbsoluteTimeout apply to sessions written without
	// their own (defaults 30 minutes and 12 hours).
	IdleTimeout, AbsoluteTimeout time.Duration
	// RequestTimeout bounds each session operation whose context has no
	// deadline, including retries while owners change (default 5s).
	RequestTimeout time.Duration
	// SecretKey, if set, encrypts gossip (16, 24 or 32 bytes): a shorthand
	// for GossipKeys holding this key alone. Set one or the other.
	SecretKey []byte
	// GossipKeys, if set, encrypts and authenticates gossip with AES-GCM:
	// the first key (the primary) encrypts, all of them are tried to
	// decrypt, and nodes without a key the cluster uses can neither join
	// nor be heard. Each key is 16, 24 or 32 bytes; LoadGossipKeys reads
	// them from a key file. Rotate them at run time with
	// Node.InstallGossipKey, UseGossipKey and RemoveGossipKey.
	GossipKeys [][]byte
	// Logger receives the node's logs (default: discard).
	Logger *slog.Logger

	// Cluster tunes membership: the failure detector's timing, the
	// advertised address, the gossip transport. Zero fields take
	// cluster.DefaultConfig's values, each on its own. Start fills Name,
	// BindAddr, Seeds, Peer, HTTP, Ring, SecretKey, Keys, Logger and
	// OnChange from the fields above; leave them empty, or Start fails
	// with ErrInvalid.
	Cluster cluster.Config
	// Replica tunes the replication engine. Zero fields take replica's
	// defaults. Start fills Name, Caller, Logger, Partitions,
	// MaxSessionBytes, IdleTimeout and AbsoluteTimeout from the fields
	// above; leave them empty, or Start fails with ErrInvalid. Set
	// Replica.MinMembers to a majority of the cluster (2 of 3, 3 of 5) so
	// that the smaller side of a network cut answers ErrUnavailable
	// instead of serving alone.
	Replica replica.Config
	// Caller, if set, wraps the peer client; chaos tests use it to inject
	// faults. Nil uses the client as is.
	Caller func(peer.Caller) peer.Caller
	// PeerTLS, if set, makes the peer wire speak mutual TLS (TLS 1.3):
	// the node accepts peer connections only from certificates the CA
	// signed, takes each caller's name from its certificate, and verifies
	// the nodes it dials against the CA. Its certificate must name this
	// node (Subject CommonName = Name), or Start fails with ErrInvalid.
	// Nil means plain TCP, for a trusted network only (`-insecure`).
	PeerTLS *PeerTLS
}

// DefaultConfig returns settings for a node called name on loopback, on the
// default ports (gossip 7946, peer 7947), with the failure detector timed
// for a real network (cluster.LANProfile: a crash is declared in about five
// seconds, while writes fail over on a refused connection at once). Set
// the addresses for anything but one machine.
func DefaultConfig(name string) Config {
	return Config{
		Name:            name,
		GossipAddr:      "127.0.0.1:7946",
		PeerAddr:        "127.0.0.1:7947",
		Ring:            ring.DefaultConfig(),
		MaxSessionBytes: 1 << 20,
		IdleTimeout:     30 * time.Minute,
		AbsoluteTimeout: 12 * time.Hour,
		RequestTimeout:  5 * time.Second,
		JoinTimeout:     30 * time.Second,
	}
}

// LocalConfig is DefaultConfig with the failure detector timed for one
// machine's loopback (cluster.LocalProfile: a crash is declared in under a
// second). Tests and `tandem dev` use it; on a real network it declares
// live nodes dead when an answer is late.
func LocalConfig(name string) Config {
	cfg := DefaultConfig(name)
	cluster.LocalProfile().Apply(&cfg.Cluster)
	return cfg
}

// engineConfigs returns the settings of the node's membership and of its
// replication engine: cfg.Cluster and cfg.Replica as the user tuned them,
// with the fields Start fills from cfg's own and from what it made: the
// peer listener at peerAddr, caller (the peer client, wrapped by
// cfg.Caller), the logger and onChange, which receives membership views.
// Zero tuning fields stay zero: cluster.Start and replica.New give each
// its default. A nested field that Start fills is refused, wrapping
// ErrInvalid, rather than overwritten.
func (cfg Config) engineConfigs(peerAddr string, caller peer.Caller, log *slog.Logger, onChange func(cluster.View)) (cluster.Config, replica.Config, error) {
	cc, rc := cfg.Cluster, cfg.Replica
	for _, f := range []struct {
		field, from string
		set         bool
	}{
		{"Cluster.Name", "Config.Name", cc.Name != ""},
		{"Cluster.BindAddr", "Config.GossipAddr", cc.BindAddr != ""},
		{"Cluster.Seeds", "Config.Join", len(cc.Seeds) > 0},
		{"Cluster.Peer", "the peer listener at Config.PeerAddr", cc.Peer != ""},
		{"Cluster.HTTP", "Config.HTTPAddr", cc.HTTP != ""},
		{"Cluster.Witness", "Config.Witness", cc.Witness},
		{"Cluster.Ring", "Config.Ring", cc.Ring != ring.Config{}},
		{"Cluster.SecretKey", "Config.SecretKey", len(cc.SecretKey) > 0},
		{"Cluster.Keys", "Config.GossipKeys", len(cc.Keys) > 0},
		{"Cluster.Logger", "Config.Logger", cc.Logger != nil},
		{"Cluster.OnChange", "the node itself", cc.OnChange != nil},
		{"Replica.Name", "Config.Name", rc.Name != ""},
		{"Replica.Caller", "the peer client (wrap it with Config.Caller)", rc.Caller != nil},
		{"Replica.Logger", "Config.Logger", rc.Logger != nil},
		{"Replica.Partitions", "Config.Ring.Partitions", rc.Partitions != 0},
		{"Replica.MaxSessionBytes", "Config.MaxSessionBytes", rc.MaxSessionBytes != 0},
		{"Replica.IdleTimeout", "Config.IdleTimeout", rc.IdleTimeout != 0},
		{"Replica.AbsoluteTimeout", "Config.AbsoluteTimeout", rc.AbsoluteTimeout != 0},
	} {
		if f.set {
			return cluster.Config{}, replica.Config{}, fmt.Errorf("%w: Config.%s is filled from %s; leave it empty", ErrInvalid, f.field, f.from)
		}
	}
	if err := checkGossipKeys(cfg.SecretKey, cfg.GossipKeys); err != nil {
		return cluster.Config{}, replica.Config{}, err
	}
	cc.Name, cc.BindAddr, cc.Seeds = cfg.Name, cfg.GossipAddr, cfg.Join
	cc.Peer, cc.HTTP, cc.Ring, cc.Witness = peerAddr, cfg.HTTPAddr, cfg.Ring, cfg.Witness
	cc.SecretKey, cc.Keys, cc.Logger, cc.OnChange = cfg.SecretKey, cfg.GossipKeys, log, onChange
	rc.Name, rc.Caller, rc.Logger, rc.Partitions = cfg.Name, caller, log, cfg.Ring.Partitions
	rc.MaxSessionBytes, rc.IdleTimeout, rc.AbsoluteTimeout = cfg.MaxSessionBytes, cfg.IdleTimeout, cfg.AbsoluteTimeout
	return cc, rc, nil
}
