package peer_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/replica/peer"
	"github.com/tandem-io/tandem/replica/peer/tlstest"
)

// whoami answers every request with the caller's certificate name, or
// "-" when the wire names nobody, and counts the requests it saw.
type whoami struct{ calls atomic.Int64 }

// ServePeer implements peer.Handler.
func (w *whoami) ServePeer(ctx context.Context, _ string, _ msgpack.RawMessage) (any, error) {
	w.calls.Add(1)
	if name, ok := peer.CallerName(ctx); ok {
		return name, nil
	}
	return "-", nil
}

// serve starts a peer server with tlsCfg (nil: plain TCP) on loopback
// until the test ends and returns its address.
func serve(t *testing.T, h peer.Handler, tlsCfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := peer.NewServer(h, peer.ServerConfig{TLS: tlsCfg})
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// dial returns a client with tlsCfg (nil: plain TCP), closed when the
// test ends.
func dial(t *testing.T, tlsCfg *tls.Config) *peer.Client {
	c := peer.NewClient(peer.ClientConfig{TLS: tlsCfg, DialTimeout: 2 * time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// mutual returns a node's server and client configurations.
func mutual(t *testing.T, ca *tlstest.CA, cert tls.Certificate) (server, client *tls.Config) {
	t.Helper()
	server, client, err := peer.MutualTLS(ca.Pool, cert)
	if err != nil {
		t.Fatal(err)
	}
	return server, client
}

// who calls addr and returns the name the server saw.
func who(t *testing.T, c *peer.Client, addr string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var name string
	err := c.Call(ctx, addr, "whoami", struct{}{}, &name)
	return name, err
}

func TestMutualTLSNamesTheCaller(t *testing.T) {
	ca := tlstest.NewCA(t, "cluster")
	serverTLS, _ := mutual(t, ca, ca.Node(t, "a"))
	addr := serve(t, &whoami{}, serverTLS)

	_, asB := mutual(t, ca, ca.Node(t, "b"))
	if name, err := who(t, dial(t, asB), addr); err != nil || name != "b" {
		t.Errorf("node b: caller %q, %v; want b", name, err)
	}
	asClient, err := peer.ClientTLS(ca.Pool, ca.Client(t, "shop"))
	if err != nil {
		t.Fatal(err)
	}
	name, err := who(t, dial(t, asClient), addr)
	if err != nil || name != "client:shop" || !peer.IsClientName(name) {
		t.Errorf("client shop: caller %q, %v; want client:shop, a client name", name, err)
	}
	if peer.IsClientName("b") {
		t.Error("IsClientName(b) = true, want false")
	}

	plain := serve(t, &whoami{}, nil)
	if name, err := who(t, dial(t, nil), plain); err != nil || name != "-" {
		t.Errorf("plain TCP: caller %q, %v; want none", name, err)
	}
}

func TestMutualTLSRefusesCallersWithoutAClusterCertificate(t *testing.T) {
	ca, other := tlstest.NewCA(t, "cluster"), tlstest.NewCA(t, "other")
	serverTLS, _ := mutual(t, ca, ca.Node(t, "a"))
	h := &whoami{}
	addr := serve(t, h, serverTLS)

	// Each trusts the server, so only the server can refuse it.
	trusting := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: ca.Pool, Certificates: certs, MinVersion: tls.VersionTLS13}
	}
	callers := map[string]*tls.Config{
		"plain TCP":             nil,
		"no certificate":        trusting(),
		"another CA's node":     trusting(other.Node(t, "b")),
		"a self-signed node":    trusting(tlstest.NewCA(t, "b").Node(t, "b")),
		"a certificate no name": trusting(ca.Issue(t, &x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})),
		"a server-only node":    trusting(ca.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "b"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})),
	}
	for what, cfg := range callers {
		c := dial(t, cfg)
		for range 2 { // and again, on a new connection
			if name, err := who(t, c, addr); !errors.Is(err, peer.ErrUnreachable) {
				t.Errorf("%s: caller %q, err %v; want the handshake refused (ErrUnreachable)", what, name, err)
			}
		}
	}
	if n := h.calls.Load(); n != 0 {
		t.Errorf("the handler ran %d times for refused callers", n)
	}
}

func TestDiallersRefuseServersThatAreNotNodesOfTheCluster(t *testing.T) {
	ca, other := tlstest.NewCA(t, "cluster"), tlstest.NewCA(t, "other")
	_, asB := mutual(t, ca, ca.Node(t, "b"))
	asClient, err := peer.ClientTLS(ca.Pool, ca.Client(t, "shop"))
	if err != nil {
		t.Fatal(err)
	}
	requiring := func(cert tls.Certificate) *tls.Config {
		return &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool, MinVersion: tls.VersionTLS13}
	}
	otherServer, _ := mutual(t, other, other.Node(t, "a"))
	servers := map[string]*tls.Config{
		"another CA's node": otherServer,
		"a client with a server key usage": requiring(ca.Issue(t, &x509.Certificate{
			Subject:     pkix.Name{CommonName: peer.ClientNamePrefix + "mallory"},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		})),
		"a client-only certificate": requiring(ca.Client(t, "mallory")),
	}
	for what, cfg := range servers {
		h := &whoami{}
		addr := serve(t, h, cfg)
		for caller, c := range map[string]*peer.Client{"node": dial(t, asB), "client": dial(t, asClient)} {
			if _, err := who(t, c, addr); !errors.Is(err, peer.ErrUnreachable) {
				t.Errorf("%s dialling %s: err %v; want the handshake refused (ErrUnreachable)", caller, what, err)
			}
		}
		if n := h.calls.Load(); n != 0 {
			t.Errorf("%s: served %d requests", what, n)
		}
	}

	// A node's certificate is accepted at any address: the dialler checks
	// names, not hosts.
	noHosts := ca.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "a"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}})
	serverTLS, _ := mutual(t, ca, noHosts)
	addr := serve(t, &whoami{}, serverTLS)
	if name, err := who(t, dial(t, asB), addr); err != nil || name != "b" {
		t.Errorf("node without host names: caller %q, %v; want b", name, err)
	}
}

func TestMutualTLSRefusesMaterialThatCannotWork(t *testing.T) {
	ca, other := tlstest.NewCA(t, "cluster"), tlstest.NewCA(t, "other")
	for what, cert := range map[string]tls.Certificate{
		"a client's certificate": ca.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: peer.ClientNamePrefix + "shop"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}),
		"another CA's":           other.Node(t, "a"),
		"no name":                ca.Issue(t, &x509.Certificate{ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}),
		"server use only":        ca.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: "a"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}),
		"no key":                 {Certificate: ca.Node(t, "a").Certificate},
		"nothing":                {},
	} {
		if _, _, err := peer.MutualTLS(ca.Pool, cert); err == nil {
			t.Errorf("MutualTLS with %s: no error", what)
		}
	}
	if _, _, err := peer.MutualTLS(nil, ca.Node(t, "a")); err == nil {
		t.Error("MutualTLS without a CA: no error")
	}
	if _, err := peer.ClientTLS(ca.Pool, other.Client(t, "shop")); err == nil {
		t.Error("ClientTLS with another CA's certificate: no error")
	}
	if _, err := peer.ClientTLS(ca.Pool, ca.Node(t, "a")); err != nil {
		t.Errorf("ClientTLS with a node's certificate: %v", err)
	}
}
