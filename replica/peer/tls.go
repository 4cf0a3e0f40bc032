package peer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// The conventions of mutual TLS in a cluster (names in certificates,
// clients told from nodes, what a dialler verifies) are described in the
// package documentation, "Mutual TLS".

// ClientNamePrefix begins the certificate name (Subject CommonName) of a
// smart client, such as "client:shop-frontend". A caller whose name has
// the prefix is a client: it may call only the methods open to clients.
// Node names never have it; [MutualTLS] refuses such a certificate for a
// node.
const ClientNamePrefix = "client:"

// IsClientName reports whether a certificate name is a smart client's
// (it begins with [ClientNamePrefix]) rather than a node's.
func IsClientName(name string) bool { return strings.HasPrefix(name, ClientNamePrefix) }

// CertName returns the name a certificate gives its holder: its Subject
// CommonName. It fails if the certificate names nobody.
func CertName(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", errors.New("no certificate")
	}
	name := cert.Subject.CommonName
	if name == "" {
		return "", fmt.Errorf("certificate (serial %s, issuer %q) has no Subject CommonName to name its holder", cert.SerialNumber, cert.Issuer.CommonName)
	}
	return name, nil
}

// MutualTLS returns the TLS configurations of a cluster node holding cert,
// signed by the cluster CA whose certificates are ca: server for its
// [ServerConfig.TLS] and client for its [ClientConfig.TLS]. Both speak
// TLS 1.3 only and present cert.
//
// The server requires every caller to present a certificate that chains
// to ca with extended key usage ClientAuth and names its holder (Subject
// CommonName); the name reaches the handler through [CallerName]. The
// client verifies each node it dials against ca (extended key usage
// ServerAuth) and requires a node's certificate, not a client's, without
// matching it to the address dialled (the package documentation, "Mutual
// TLS", says why).
//
// MutualTLS fails if cert does not chain to ca for both uses, names nobody,
// or names a client ([IsClientName]).
func MutualTLS(ca *x509.CertPool, cert tls.Certificate) (server, client *tls.Config, err error) {
	if ca == nil {
		return nil, nil, errors.New("peer: mutual TLS: no CA certificates")
	}
	name, err := checkCert(ca, cert, x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, nil, fmt.Errorf("peer: mutual TLS: node certificate: %w", err)
	}
	if IsClientName(name) {
		return nil, nil, fmt.Errorf("peer: mutual TLS: the certificate names %q, a client (prefix %q); a node needs a node certificate", name, ClientNamePrefix)
	}
	server = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca,
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, err := verifiedCaller(cs)
			return err
		},
	}
	return server, dialConfig(ca, cert), nil
}

// ClientTLS returns the [ClientConfig.TLS] of a smart client holding cert,
// signed by the cluster CA whose certificates are ca: it presents cert to
// the nodes it dials and verifies them as [MutualTLS]'s client does. cert
// should be a client's certificate (CN=[ClientNamePrefix]<name>), which
// lets it call only the methods open to clients; a node's certificate
// works too, with a node's rights.
//
// ClientTLS fails if cert does not chain to ca for use as a client
// certificate or names nobody.
func ClientTLS(ca *x509.CertPool, cert tls.Certificate) (*tls.Config, error) {
	if ca == nil {
		return nil, errors.New("peer: client TLS: no CA certificates")
	}
	if _, err := checkCert(ca, cert, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, fmt.Errorf("peer: client TLS: client certificate: %w", err)
	}
	return dialConfig(ca, cert), nil
}

// dialConfig is the configuration of a caller presenting cert that
// verifies the nodes it dials against ca.
func dialConfig(ca *x509.CertPool, cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      ca,
		// The chain is verified below, against ca, and the certificate
		// must be a node's; the address dialled is not matched (see the
		// package documentation, "Mutual TLS").
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyNode(ca, cs)
		},
	}
}

// verifyNode checks that the server of a connection presented a node's
// certificate that chains to ca for use as a server.
func verifyNode(ca *x509.CertPool, cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("peer: the server presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	opts := x509.VerifyOptions{Roots: ca, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err != nil {
		return fmt.Errorf("peer: the server's certificate is not from the cluster CA: %w", err)
	}
	name, err := CertName(leaf)
	if err != nil {
		return fmt.Errorf("peer: the server's certificate: %w", err)
	}
	if IsClientName(name) {
		return fmt.Errorf("peer: the server's certificate names %q, a client, not a node", name)
	}
	return nil
}

// verifiedCaller returns the name in the verified certificate a TLS
// client presented; it fails if there is none.
func verifiedCaller(cs tls.ConnectionState) (string, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", errors.New("peer: the caller presented no verified certificate")
	}
	name, err := CertName(cs.VerifiedChains[0][0])
	if err != nil {
		return "", fmt.Errorf("peer: the caller's certificate: %w", err)
	}
	return name, nil
}

// checkCert checks that cert holds a key and a leaf that chains to ca for
// every one of uses, and returns the leaf's name.
func checkCert(ca *x509.CertPool, cert tls.Certificate, uses ...x509.ExtKeyUsage) (string, error) {
	if len(cert.Certificate) == 0 || cert.PrivateKey == nil {
		return "", errors.New("no certificate or no private key")
	}
	leaf := cert.Leaf
	if leaf == nil {
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return "", fmt.Errorf("parse: %w", err)
		}
	}
	name, err := CertName(leaf)
	if err != nil {
		return "", err
	}
	opts := x509.VerifyOptions{Roots: ca, Intermediates: x509.NewCertPool()}
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return "", fmt.Errorf("%s: parse intermediate: %w", name, err)
		}
		opts.Intermediates.AddCert(c)
	}
	for _, use := range uses {
		opts.KeyUsages = []x509.ExtKeyUsage{use}
		if _, err := leaf.Verify(opts); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
	}
	return name, nil
}

// callerKey is the context key of the caller's certificate name.
type callerKey struct{}

// CallerName returns the name in the certificate the caller of a request
// presented (a node's name, or a client's, see [IsClientName]), from the
// context a [Server] gives its [Handler]. ok is false when the connection
// carried no verified client certificate: plain TCP, or a TLS
// configuration that does not require one. [MutualTLS] servers always set
// it.
func CallerName(ctx context.Context) (name string, ok bool) {
	name, ok = ctx.Value(callerKey{}).(string)
	return name, ok
}

// withCaller returns ctx carrying the caller's certificate name.
func withCaller(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, callerKey{}, name)
}
