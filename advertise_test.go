package tandem

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// Which host a node advertises for a listener: Advertise if set, else the
// bound host unless it is a wildcard, else the default route's address,
// else an error that names the setting.
func TestAdvertisedHost(t *testing.T) {
	noRoute := errors.New("connect: network is unreachable")
	for _, tc := range []struct {
		bind, advertise, route string
		routeErr               error
		want                   string // "" means an error
		wantErr                string // part of the error
	}{
		// Bound to one address: that address, whatever the route.
		{bind: "10.0.0.7", route: "192.168.1.2", want: "10.0.0.7"},
		{bind: "127.0.0.1", routeErr: noRoute, want: "127.0.0.1"},
		{bind: "::1", routeErr: noRoute, want: "::1"},
		{bind: "localhost", routeErr: noRoute, want: "localhost"},
		// Advertise wins, bound anywhere, with or without a route.
		{bind: "10.0.0.7", advertise: "203.0.113.9", want: "203.0.113.9"},
		{bind: "0.0.0.0", advertise: "10.77.0.3", routeErr: noRoute, want: "10.77.0.3"},
		{bind: "", advertise: "10.77.0.3", route: "192.168.1.2", want: "10.77.0.3"},
		{bind: "::", advertise: "fd00::2", want: "fd00::2"},
		{bind: "::", advertise: "[fd00::2]", want: "fd00::2"},
		{bind: "::", advertise: "FD00:0::2", want: "fd00::2"},
		// Wildcards without Advertise: the default route's address.
		{bind: "", route: "192.168.1.2", want: "192.168.1.2"},
		{bind: "0.0.0.0", route: "192.168.1.2", want: "192.168.1.2"},
		{bind: "::", route: "192.168.1.2", want: "192.168.1.2"},
		{bind: "::", route: "fd00::2", want: "fd00::2"},
		{bind: "::ffff:0.0.0.0", route: "192.168.1.2", want: "192.168.1.2"},
		// ... and no usable route: refuse, naming the setting.
		{bind: "", routeErr: noRoute, wantErr: "network is unreachable"},
		{bind: "0.0.0.0", routeErr: noRoute, wantErr: "-advertise"},
		{bind: "::", routeErr: noRoute, wantErr: "TANDEM_ADVERTISE"},
		{bind: "0.0.0.0", route: "127.0.0.1", wantErr: "not reachable from other hosts"},
		{bind: "0.0.0.0", route: "0.0.0.0", wantErr: "not reachable from other hosts"},
		{bind: "0.0.0.0", route: "", wantErr: "not an IP address"},
		// A bad Advertise is refused even where it would not be needed.
		{bind: "10.0.0.7", advertise: "10.77.0.3:7070", wantErr: "want an IP address, without a port"},
		{bind: "0.0.0.0", advertise: "node-1.example.com", route: "192.168.1.2", wantErr: "want an IP address"},
		{bind: "0.0.0.0", advertise: "0.0.0.0", route: "192.168.1.2", wantErr: "is a wildcard"},
		{bind: "::", advertise: "::", route: "192.168.1.2", wantErr: "is a wildcard"},
	} {
		name := fmt.Sprintf("bind=%q,advertise=%q,route=%q,%v", tc.bind, tc.advertise, tc.route, tc.routeErr)
		got, err := advertisedHost(tc.bind, tc.advertise, tc.route, tc.routeErr)
		if tc.wantErr != "" {
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: %q, %v; want an ErrInvalid containing %q", name, got, err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "-advertise") {
				t.Errorf("%s: the error does not name -advertise: %v", name, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, tc.want)
		}
	}
}

// Listen addresses become advertised ones with their own port, IPv6
// bracketed; the default route is looked up once, and only if needed.
func TestAdvertiserAddr(t *testing.T) {
	lookups := 0
	route := func(addr string) func() (string, error) {
		return func() (string, error) { lookups++; return addr, nil }
	}
	for _, tc := range []struct {
		listen, advertise, route, want string
		lookups                        int
	}{
		{listen: "127.0.0.1:7070", want: "127.0.0.1:7070"},
		{listen: "[::1]:7947", want: "[::1]:7947"},
		{listen: ":7070", route: "10.1.2.3", want: "10.1.2.3:7070", lookups: 1},
		{listen: "0.0.0.0:0", route: "10.1.2.3", want: "10.1.2.3:0", lookups: 1},
		{listen: "[::]:41234", route: "fd00::2", want: "[fd00::2]:41234", lookups: 1},
		{listen: "[::]:7947", advertise: "fd00::9", want: "[fd00::9]:7947"},
		{listen: "0.0.0.0:7946", advertise: "10.77.0.1", want: "10.77.0.1:7946"},
		{listen: "", route: "10.1.2.3", want: ""},
	} {
		lookups = 0
		a := &advertiser{advertise: tc.advertise, route: route(tc.route)}
		got, err := a.addr(tc.listen)
		if err != nil || got != tc.want {
			t.Errorf("%q (advertise %q): %q, %v; want %q", tc.listen, tc.advertise, got, err, tc.want)
		}
		// A second wildcard listener reuses the first lookup.
		if _, err := a.addr(tc.listen); err != nil || lookups != tc.lookups {
			t.Errorf("%q (advertise %q): %d route lookups, want %d", tc.listen, tc.advertise, lookups, tc.lookups)
		}
	}
	a := &advertiser{route: route("10.1.2.3")}
	if _, err := a.addr("no-port"); !errors.Is(err, ErrInvalid) {
		t.Errorf("an address without a port: %v, want ErrInvalid", err)
	}
}

// wildcardConfig is a node bound to wildcard addresses on free ports,
// advertising advertise.
func wildcardConfig(name, wildcard, advertise string) Config {
	cfg := testConfig(name)
	cfg.GossipAddr = net.JoinHostPort(wildcard, "0")
	cfg.PeerAddr = net.JoinHostPort(wildcard, "0")
	cfg.HTTPAddr = net.JoinHostPort(wildcard, "7070") // advertised only
	cfg.Advertise = advertise
	return cfg
}

// startAdvertising starts two nodes bound to wildcard addresses that
// advertise host, and checks that every address either gives out names
// host (never the wildcard) with the listener's own port, and that the two
// reach each other at those addresses.
func startAdvertising(t *testing.T, wildcard, host string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var nodes []*Node
	for i := range 2 {
		cfg := wildcardConfig(fmt.Sprintf("adv-%d", i+1), wildcard, host)
		if i > 0 {
			cfg.Join = []string{nodes[0].GossipAddr()}
		}
		n, err := Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Kill)
		nodes = append(nodes, n)
	}
	onHost := func(what, addr string, port int) {
		t.Helper()
		h, p, err := net.SplitHostPort(addr)
		if err != nil || h != host || (port != 0 && p != fmt.Sprint(port)) {
			t.Errorf("%s %q: want host %s, port %d", what, addr, host, port)
		}
	}
	for _, n := range nodes {
		onHost(n.Name()+" peer", n.PeerAddr(), n.peerLn.Addr().(*net.TCPAddr).Port)
		onHost(n.Name()+" HTTP", n.HTTPAddr(), 7070)
		onHost(n.Name()+" gossip", n.GossipAddr(), 0)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !(nodes[0].Ready() && nodes[1].Ready() && len(nodes[0].Status().Members) == 2) {
		if time.Now().After(deadline) {
			t.Fatal("the nodes did not become ready within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, m := range nodes[0].Status().Members {
		onHost(m.Name+" gossip in the cluster view", m.Gossip, 0)
		onHost(m.Name+" peer in the cluster view", m.Meta.Peer, 0)
		onHost(m.Name+" HTTP in the cluster view", m.Meta.HTTP, 7070)
	}
	// Writes through one and reads through the other travel between the
	// advertised addresses.
	for i := range 20 {
		id := fmt.Sprintf("advertised-session-%04d", i)
		if _, err := nodes[i%2].Put(ctx, id, "alice", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := nodes[(i+1)%2].Get(ctx, id); err != nil {
			t.Fatal(err)
		}
		p, b, _, err := nodes[0].Owners(id)
		if err != nil {
			t.Fatal(err)
		}
		onHost("primary of "+id, p.Peer, 0)
		onHost("buddy of "+id, b.HTTP, 7070)
	}
}

func TestStartAdvertisesAddressNotWildcard(t *testing.T) {
	t.Run("IPv4", func(t *testing.T) { startAdvertising(t, "0.0.0.0", "127.0.0.1") })
	t.Run("IPv6", func(t *testing.T) {
		if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
			t.Skipf("no IPv6 loopback: %v", err)
		} else {
			ln.Close()
		}
		startAdvertising(t, "::", "::1")
	})
}

// A node bound to wildcards without Advertise advertises its default
// route's address.
func TestStartAdvertisesDefaultRoute(t *testing.T) {
	route, err := defaultRouteAddr()
	if err != nil {
		t.Skipf("this host has no default route: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := Start(ctx, wildcardConfig("adv-route", "0.0.0.0", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Kill()
	for what, addr := range map[string]string{"peer": n.PeerAddr(), "HTTP": n.HTTPAddr(), "gossip": n.GossipAddr()} {
		if h, _, _ := net.SplitHostPort(addr); h != route {
			t.Errorf("%s address %q, want the default route's %s", what, addr, route)
		}
	}
}

// Without Advertise and without a default route, a node bound to a
// wildcard refuses to start, naming the setting, and a bad Advertise is
// refused.
func TestStartRefusesToAdvertiseWildcard(t *testing.T) {
	saved := lookupDefaultRoute
	t.Cleanup(func() { lookupDefaultRoute = saved })
	lookupDefaultRoute = func() (string, error) { return "", errors.New("no default route: network is unreachable") }
	for _, tc := range []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"HTTP on :port", func(c *Config) { c.HTTPAddr = ":7070" }, "HTTP address :7070"},
		{"peer on 0.0.0.0", func(c *Config) { c.PeerAddr = "0.0.0.0:0" }, "peer address 0.0.0.0:0"},
		{"gossip on ::", func(c *Config) { c.GossipAddr = "[::]:0" }, "gossip address [::]:0"},
		{"a host name in Advertise", func(c *Config) { c.Advertise = "node-1.example.com" }, "want an IP address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("n1")
			tc.set(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			n, err := Start(ctx, cfg)
			if err == nil {
				n.Kill()
				t.Fatal("started")
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "-advertise") {
				t.Fatalf("%v: want an ErrInvalid naming %q and -advertise", err, tc.want)
			}
		})
	}
}
