package tandem

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/tandem-io/tandem/replica/peer"
)

// PeerTLS is the material for mutual TLS on the peer wire, where nodes
// replicate to and forward to each other and smart clients reach nodes:
// the cluster's CA and the holder's certificate. Set it as
// Config.PeerTLS to make a node speak mutual TLS, or turn it into a smart
// client's ClientConfig.Peer.TLS with ClientTLS. LoadPeerTLS reads it from
// PEM files.
//
// A certificate names its holder in its Subject CommonName: a node's
// certificate names the node (CN=<Config.Name>), for use as server and
// client (extended key usages ServerAuth and ClientAuth), with DNS and IP
// SANs for its hosts; a smart client's names a client,
// CN=client:<name> (peer.ClientNamePrefix), for use as a client. Nodes
// take a caller's identity from its certificate, never from a message:
// a caller without a certificate from the CA fails the handshake, a
// client may call only the methods smart clients use, and a node may not
// send a request in another node's name. The peer package's
// documentation ("Mutual TLS") has the details.
type PeerTLS struct {
	// CA holds the cluster CA's certificates: every peer's certificate
	// must chain to one of them.
	CA *x509.CertPool
	// Certificate is the holder's certificate, with its private key (and
	// any intermediate certificates after it), signed by the CA.
	Certificate tls.Certificate
}

// LoadPeerTLS reads mutual TLS material from PEM files: caFile holds the
// cluster CA's certificates, certFile and keyFile the holder's
// certificate (any intermediates after it) and private key. As `tandem
// certs` writes them: DIR/ca.crt, DIR/<node>.crt and DIR/<node>.key.
func LoadPeerTLS(caFile, certFile, keyFile string) (*PeerTLS, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tandem: load peer TLS: read the CA: %w", err)
	}
	ca := x509.NewCertPool()
	if !ca.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tandem: load peer TLS: %w: %s holds no PEM certificate", ErrInvalid, caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tandem: load peer TLS: %w", err)
	}
	return &PeerTLS{CA: ca, Certificate: cert}, nil
}

// Name returns the name the certificate gives its holder: a node's name,
// or client:<name> for a smart client.
func (p *PeerTLS) Name() (string, error) {
	leaf := p.Certificate.Leaf
	if leaf == nil {
		if len(p.Certificate.Certificate) == 0 {
			return "", fmt.Errorf("%w: no peer certificate", ErrInvalid)
		}
		var err error
		if leaf, err = x509.ParseCertificate(p.Certificate.Certificate[0]); err != nil {
			return "", fmt.Errorf("%w: parse the peer certificate: %v", ErrInvalid, err)
		}
	}
	name, err := peer.CertName(leaf)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return name, nil
}

// ClientTLS returns the TLS configuration of a smart client holding this
// material, for ClientConfig.Peer.TLS: it presents the certificate (a
// client's, CN=client:<name>) to the nodes it dials and accepts only
// nodes whose certificates come from the CA.
func (p *PeerTLS) ClientTLS() (*tls.Config, error) {
	cfg, err := peer.ClientTLS(p.CA, p.Certificate)
	if err != nil {
		return nil, fmt.Errorf("tandem: %w: %w", ErrInvalid, err)
	}
	return cfg, nil
}

// nodeTLS returns the peer server's and client's TLS configurations of
// the node called name; both nil without material. The certificate must
// name the node: the other nodes take its name from it.
func (p *PeerTLS) nodeTLS(name string) (server, client *tls.Config, err error) {
	if p == nil {
		return nil, nil, nil
	}
	certName, err := p.Name()
	if err != nil {
		return nil, nil, fmt.Errorf("Config.PeerTLS: %w", err)
	}
	if certName != name {
		return nil, nil, fmt.Errorf("%w: Config.PeerTLS: the certificate names %q, not this node (%q); the other nodes would refuse its requests", ErrInvalid, certName, name)
	}
	if server, client, err = peer.MutualTLS(p.CA, p.Certificate); err != nil {
		return nil, nil, fmt.Errorf("%w: Config.PeerTLS: %w", ErrInvalid, err)
	}
	return server, client, nil
}
