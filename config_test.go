package tandem

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/tandem-io/tandem/cluster"
	"github.com/tandem-io/tandem/replica/peer"
	"github.com/tandem-io/tandem/ring"
)

// testConfig is a loopback node's Config on free ports.
func testConfig(name string) Config {
	cfg := DefaultConfig(name)
	cfg.GossipAddr, cfg.PeerAddr = "127.0.0.1:0", "127.0.0.1:0"
	return cfg
}

// Start refuses a nested field it would fill from Config's own, naming
// it, rather than overwrite it.
func TestStartRefusesNestedFieldsItFills(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		field string
		set   func(*Config)
	}{
		{"Cluster.Name", func(c *Config) { c.Cluster.Name = "other" }},
		{"Cluster.BindAddr", func(c *Config) { c.Cluster.BindAddr = "127.0.0.1:0" }},
		{"Cluster.Seeds", func(c *Config) { c.Cluster.Seeds = []string{"127.0.0.1:7946"} }},
		{"Cluster.Peer", func(c *Config) { c.Cluster.Peer = "127.0.0.1:7947" }},
		{"Cluster.HTTP", func(c *Config) { c.Cluster.HTTP = "127.0.0.1:8080" }},
		{"Cluster.Ring", func(c *Config) { c.Cluster.Ring = ring.DefaultConfig() }},
		{"Cluster.SecretKey", func(c *Config) { c.Cluster.SecretKey = make([]byte, 16) }},
		{"Cluster.Keys", func(c *Config) { c.Cluster.Keys = [][]byte{make([]byte, 16)} }},
		{"Cluster.Logger", func(c *Config) { c.Cluster.Logger = logger }},
		{"Cluster.OnChange", func(c *Config) { c.Cluster.OnChange = func(cluster.View) {} }},
		{"Replica.Name", func(c *Config) { c.Replica.Name = "other" }},
		{"Replica.Caller", func(c *Config) { c.Replica.Caller = (*peer.Client)(nil) }},
		{"Replica.Logger", func(c *Config) { c.Replica.Logger = logger }},
		{"Replica.Partitions", func(c *Config) { c.Replica.Partitions = 64 }},
		{"Replica.MaxSessionBytes", func(c *Config) { c.Replica.MaxSessionBytes = 1 << 10 }},
		{"Replica.IdleTimeout", func(c *Config) { c.Replica.IdleTimeout = time.Minute }},
		{"Replica.AbsoluteTimeout", func(c *Config) { c.Replica.AbsoluteTimeout = time.Hour }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			cfg := testConfig("n1")
			tc.set(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			n, err := Start(ctx, cfg)
			if err == nil {
				n.Kill()
				t.Fatalf("Start with Config.%s set: no error", tc.field)
			}
			if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "tandem: start n1: ") ||
				!strings.Contains(err.Error(), "Config."+tc.field+" is filled from ") {
				t.Fatalf("Start with Config.%s set: %v; want ErrInvalid naming the field", tc.field, err)
			}
		})
	}
}

// Tuning fields of the nested configs reach the engines as set, each on
// its own: none is replaced by a default because another was left zero,
// and zero ones stay zero for cluster.Start and replica.New to fill.
func TestEngineConfigsKeepTuning(t *testing.T) {
	now := func() time.Time { return time.Unix(0, 0) }
	wrap := func(inner memberlist.NodeAwareTransport) memberlist.NodeAwareTransport { return inner }
	cfg := DefaultConfig("n1")
	cfg.Cluster.ProbeTimeout = 700 * time.Millisecond // ProbeInterval left zero
	cfg.Cluster.SuspicionMult = 5
	cfg.Cluster.AdvertiseAddr = "10.0.0.1"
	cfg.Cluster.WrapTransport = wrap
	cfg.Replica.LeaseDuration = 900 * time.Millisecond
	cfg.Replica.MinMembers = 2
	cfg.Replica.Now = now
	caller := peer.NewClient(peer.ClientConfig{})
	defer caller.Close()
	logger := slog.New(slog.DiscardHandler)
	changed := false
	cc, rc, err := cfg.engineConfigs("127.0.0.1:9999", caller, logger, func(cluster.View) { changed = true })
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"Cluster.ProbeTimeout", cc.ProbeTimeout, 700 * time.Millisecond},
		{"Cluster.ProbeInterval", cc.ProbeInterval, time.Duration(0)},
		{"Cluster.SuspicionMult", cc.SuspicionMult, 5},
		{"Cluster.AdvertiseAddr", cc.AdvertiseAddr, "10.0.0.1"},
		{"Cluster.WrapTransport", cc.WrapTransport != nil, true},
		{"Replica.LeaseDuration", rc.LeaseDuration, 900 * time.Millisecond},
		{"Replica.MinMembers", rc.MinMembers, 2},
		{"Replica.Now", rc.Now().Equal(time.Unix(0, 0)), true},
		{"Replica.HandoffTimeout", rc.HandoffTimeout, time.Duration(0)},
		{"Cluster.Name", cc.Name, "n1"},
		{"Cluster.BindAddr", cc.BindAddr, cfg.GossipAddr},
		{"Cluster.Peer", cc.Peer, "127.0.0.1:9999"},
		{"Cluster.Ring", cc.Ring, cfg.Ring},
		{"Cluster.Logger", cc.Logger, logger},
		{"Replica.Name", rc.Name, "n1"},
		{"Replica.Caller", rc.Caller, peer.Caller(caller)},
		{"Replica.Logger", rc.Logger, logger},
		{"Replica.Partitions", rc.Partitions, cfg.Ring.Partitions},
		{"Replica.MaxSessionBytes", rc.MaxSessionBytes, cfg.MaxSessionBytes},
		{"Replica.IdleTimeout", rc.IdleTimeout, cfg.IdleTimeout},
		{"Replica.AbsoluteTimeout", rc.AbsoluteTimeout, cfg.AbsoluteTimeout},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if cc.OnChange(cluster.View{}); !changed {
		t.Error("Cluster.OnChange is not the node's")
	}
}

// A node whose nested configs set tuning fields alone starts and serves.
func TestStartWithTuningFields(t *testing.T) {
	cfg := testConfig("n1")
	cfg.Cluster.ProbeTimeout = 300 * time.Millisecond
	cfg.Replica.LeaseDuration = 800 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(ctx)
	if n.cfg.Cluster.ProbeTimeout != 300*time.Millisecond || n.cfg.Replica.LeaseDuration != 800*time.Millisecond {
		t.Fatalf("node config changed: probe timeout %v, lease %v", n.cfg.Cluster.ProbeTimeout, n.cfg.Replica.LeaseDuration)
	}
	if _, err := n.Put(ctx, "tuned-session-0001", "alice", nil); err != nil {
		t.Fatal(err)
	}
}

// Start refuses seats with AllowMinority: the seats keep the smaller side
// of a cut from serving, and AllowMinority asks it to serve.
func TestStartRefusesSeatsWithAllowMinority(t *testing.T) {
	cfg := testConfig("n")
	cfg.Replica.Seats, cfg.Replica.AllowMinority = 3, true
	n, err := Start(context.Background(), cfg)
	if err == nil {
		n.Close(context.Background())
		t.Fatal("Start accepted Replica.Seats with Replica.AllowMinority")
	}
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "AllowMinority") {
		t.Fatalf("Start with seats and AllowMinority: %v; want ErrInvalid naming AllowMinority", err)
	}
}
