package tandem

import (
	"fmt"
	"net"
	"strings"
)

// routeProbes are the destinations whose route names the default route's
// source address: documentation addresses (RFC 5737, RFC 3849), which no
// network routes anywhere, so a host reaches them only through its default
// route. Connecting a UDP socket sends nothing; the kernel only picks the
// route and the source address, which the socket then reports.
var routeProbes = []string{"192.0.2.1:9", "[2001:db8::1]:9"}

// defaultRouteAddr returns the address this host sends from through its
// default route: IPv4 if it has one, else IPv6. It uses the kernel's own
// route lookup (a UDP "connect", portable, honouring policy routing and a
// route's preferred source) rather than parsing /proc/net/route, which is
// Linux-only and names an interface, not an address.
func defaultRouteAddr() (string, error) {
	var errs []string
	for _, probe := range routeProbes {
		c, err := net.Dial("udp", probe)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		addr := c.LocalAddr().(*net.UDPAddr).IP
		c.Close()
		return addr.String(), nil
	}
	return "", fmt.Errorf("no default route: %s", strings.Join(errs, "; "))
}

// isWildcard reports whether a listener bound to host listens on every
// interface: an empty host, 0.0.0.0 or ::.
func isWildcard(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// advertisedHost decides the host a node gives other nodes and clients for
// a listener bound to bindHost: advertise (Config.Advertise) if set, else
// bindHost itself unless it is a wildcard, else the address of the default
// route (routeAddr, or routeErr if there is none). It never returns a
// wildcard or loopback-for-wildcard address: a node that cannot tell which
// address others reach it at refuses to start rather than advertise one
// nobody can use.
func advertisedHost(bindHost, advertise, routeAddr string, routeErr error) (string, error) {
	if advertise != "" {
		ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(advertise, "["), "]"))
		switch {
		case ip == nil:
			return "", fmt.Errorf("%w: Config.Advertise (-advertise) %q: want an IP address, without a port", ErrInvalid, advertise)
		case ip.IsUnspecified():
			return "", fmt.Errorf("%w: Config.Advertise (-advertise) %q is a wildcard address; give the address other nodes reach this one at", ErrInvalid, advertise)
		}
		return ip.String(), nil
	}
	if !isWildcard(bindHost) {
		return bindHost, nil
	}
	if routeErr == nil {
		ip := net.ParseIP(routeAddr)
		switch {
		case ip == nil:
			routeErr = fmt.Errorf("default route address %q is not an IP address", routeAddr)
		case ip.IsUnspecified() || ip.IsLoopback():
			routeErr = fmt.Errorf("the default route's address %s is not reachable from other hosts", routeAddr)
		default:
			return ip.String(), nil
		}
	}
	return "", fmt.Errorf("%w: bound to the wildcard address %q and cannot tell which address to advertise (%v): set Config.Advertise (tandem serve -advertise HOST, or TANDEM_ADVERTISE) to the address other nodes and clients reach this one at", ErrInvalid, bindHost, routeErr)
}

// advertiser gives the advertised form of a node's listen addresses,
// looking the default route up at most once, and only if a listener is
// bound to a wildcard address and Config.Advertise is empty.
type advertiser struct {
	advertise string
	route     func() (string, error)
	looked    bool
	routeAddr string
	routeErr  error
}

// host returns the advertised host for a listener bound to bindHost.
func (a *advertiser) host(bindHost string) (string, error) {
	if a.advertise == "" && isWildcard(bindHost) && !a.looked {
		a.looked = true
		a.routeAddr, a.routeErr = a.route()
	}
	return advertisedHost(bindHost, a.advertise, a.routeAddr, a.routeErr)
}

// addr returns the advertised form of listen address hostport ("" stays
// ""): its port with the advertised host, IPv6 hosts bracketed.
func (a *advertiser) addr(hostport string) (string, error) {
	if hostport == "" {
		return "", nil
	}
	bindHost, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", fmt.Errorf("%w: address %q: %w", ErrInvalid, hostport, err)
	}
	host, err := a.host(bindHost)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(host, port), nil
}

// lookupDefaultRoute finds the default route's address; tests replace it.
var lookupDefaultRoute = defaultRouteAddr

// advertisedAddrs returns the HTTP address the node advertises ("" if it
// has none) and, if gossip must advertise another host than the one it is
// bound to, that host ("" to leave it to the cluster package). A gossip
// address set in Cluster.AdvertiseAddr is left as it is.
func (cfg Config) advertisedAddrs(adv *advertiser) (httpAddr, gossipHost string, err error) {
	if httpAddr, err = adv.addr(cfg.HTTPAddr); err != nil {
		return "", "", fmt.Errorf("HTTP address %s: %w", cfg.HTTPAddr, err)
	}
	if cfg.Cluster.AdvertiseAddr != "" {
		return httpAddr, "", nil
	}
	bindHost := "127.0.0.1" // the cluster package's default bind address
	if cfg.GossipAddr != "" {
		h, _, err := net.SplitHostPort(cfg.GossipAddr)
		if err != nil {
			return httpAddr, "", nil // cluster.Start reports the bad address
		}
		bindHost = h
	}
	host, err := adv.host(bindHost)
	if err != nil {
		return "", "", fmt.Errorf("gossip address %s: %w", cfg.GossipAddr, err)
	}
	if host == bindHost {
		return httpAddr, "", nil
	}
	return httpAddr, host, nil
}
