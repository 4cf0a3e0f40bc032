// Package material makes and loads a cluster's security material: a
// certificate authority, one certificate per node (usable as server and
// client certificate on the peer wire and as the HTTP API's server
// certificate), a gossip key and the HTTP API's bearer tokens. `tandem
// certs` writes it to a directory; `tandem serve -certs-dir` reads a node's
// share of it; `tandem dev` makes it in memory.
package material

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Scopes of the HTTP API's bearer tokens.
const (
	// ScopeSessions lets a token read and write sessions.
	ScopeSessions = "sessions"
	// ScopeAdmin lets a token do everything else: log a principal out
	// everywhere, rotate gossip keys, cluster operations.
	ScopeAdmin = "admin"
)

// File names in a material directory.
const (
	CACertFile   = "ca.crt"
	CAKeyFile    = "ca.key"
	GossipFile   = "gossip.key"
	TokensFile   = "tokens"
	certSuffix   = ".crt"
	keySuffix    = ".key"
	validFor     = 5 * 365 * 24 * time.Hour
	caValidFor   = 10 * 365 * 24 * time.Hour
	gossipKeyLen = 32
)

// CA is a certificate authority that signs a cluster's certificates.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// CertPEM and KeyPEM are the encoded certificate and key.
	CertPEM, KeyPEM []byte
}

// Pair is a certificate and its key, PEM-encoded.
type Pair struct {
	CertPEM, KeyPEM []byte
}

// NewCA makes a certificate authority named name.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("make CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Tandem"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caValidFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// Issue signs a certificate for node name, valid for hosts (IP addresses
// and DNS names) as a server and usable as a client certificate. Its
// common name is the node's name: the peer wire takes a caller's name
// from it.
func (ca *CA) Issue(name string, hosts []string) (Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("make key for %s: %w", name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Tandem"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validFor),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return Pair{}, fmt.Errorf("sign certificate for %s: %w", name, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return Pair{}, err
	}
	return Pair{CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// serial returns a random 128-bit serial number.
func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128)) // crypto/rand does not fail
	return n
}

// encodeCert PEM-encodes a DER certificate.
func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// encodeKey PEM-encodes a private key.
func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// NewGossipKey returns a fresh 32-byte gossip key (AES-256-GCM).
func NewGossipKey() []byte {
	k := make([]byte, gossipKeyLen)
	_, _ = rand.Read(k) // crypto/rand does not fail
	return k
}

// NewToken returns a fresh bearer token: 256 random bits, hex.
func NewToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Tokens maps each scope to its token.
type Tokens map[string]string

// NewTokens returns fresh tokens for both scopes.
func NewTokens() Tokens {
	return Tokens{ScopeSessions: NewToken(), ScopeAdmin: NewToken()}
}

// Format writes the tokens file: one line per scope, "scope token".
func (t Tokens) Format() []byte {
	var b strings.Builder
	for _, scope := range []string{ScopeSessions, ScopeAdmin} {
		if tok := t[scope]; tok != "" {
			fmt.Fprintf(&b, "%s %s\n", scope, tok)
		}
	}
	return []byte(b.String())
}

// ParseTokens reads a tokens file: lines "scope token", blank lines and
// lines starting with # ignored. Unknown scopes, repeated scopes and empty
// or short tokens are errors naming the line.
func ParseTokens(data []byte) (Tokens, error) {
	out := Tokens{}
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		switch {
		case len(fields) != 2:
			return nil, fmt.Errorf("tokens line %d: want \"scope token\"", line)
		case fields[0] != ScopeSessions && fields[0] != ScopeAdmin:
			return nil, fmt.Errorf("tokens line %d: unknown scope %q (want %s or %s)", line, fields[0], ScopeSessions, ScopeAdmin)
		case out[fields[0]] != "":
			return nil, fmt.Errorf("tokens line %d: scope %s given twice", line, fields[0])
		case len(fields[1]) < 16:
			return nil, fmt.Errorf("tokens line %d: the %s token is shorter than 16 characters", line, fields[0])
		}
		out[fields[0]] = fields[1]
	}
	if len(out) == 0 {
		return nil, errors.New("tokens: no token in the file")
	}
	return out, nil
}

// FormatGossipKeys writes a gossip key file: one base64 key per line, the
// first the primary.
func FormatGossipKeys(keys ...[]byte) []byte {
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k))
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// Options say what Write makes.
type Options struct {
	// Nodes names the nodes to issue certificates for.
	Nodes []string
	// Hosts are the IP addresses and DNS names every node certificate is
	// valid for (default 127.0.0.1, ::1 and localhost).
	Hosts []string
}

// Write makes a cluster's material in dir: ca.crt, ca.key, <node>.crt and
// <node>.key for each node, gossip.key and tokens. It refuses to overwrite
// an existing CA, so material in use is never replaced by accident.
func Write(dir string, opt Options) error {
	if len(opt.Nodes) == 0 {
		return errors.New("no nodes named")
	}
	for _, n := range opt.Nodes {
		if err := validName(n); err != nil {
			return err
		}
	}
	if len(opt.Hosts) == 0 {
		opt.Hosts = []string{"127.0.0.1", "::1", "localhost"}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("make %s: %w", dir, err)
	}
	for _, f := range []string{CACertFile, CAKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%s already exists: refusing to overwrite a CA (remove it, or use another -dir)", filepath.Join(dir, f))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check %s: %w", f, err)
		}
	}
	ca, err := NewCA("Tandem cluster CA")
	if err != nil {
		return err
	}
	files := map[string][]byte{CACertFile: ca.CertPEM, CAKeyFile: ca.KeyPEM, GossipFile: FormatGossipKeys(NewGossipKey()), TokensFile: NewTokens().Format()}
	for _, n := range opt.Nodes {
		p, err := ca.Issue(n, slices.Concat([]string{n}, opt.Hosts))
		if err != nil {
			return err
		}
		files[n+certSuffix], files[n+keySuffix] = p.CertPEM, p.KeyPEM
	}
	// The CA last: a failed run leaves no CA behind to refuse the next.
	order := slices.Sorted(func(yield func(string) bool) {
		for name := range files {
			if name != CACertFile && name != CAKeyFile && !yield(name) {
				return
			}
		}
	})
	for _, name := range append(order, CAKeyFile, CACertFile) {
		mode := os.FileMode(0o600)
		if strings.HasSuffix(name, certSuffix) {
			mode = 0o644
		}
		if err := os.WriteFile(filepath.Join(dir, name), files[name], mode); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// validName reports whether name can name a node's files.
func validName(name string) error {
	if name == "" || name == "ca" || strings.ContainsAny(name, "/\\ \t\n") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("node name %q cannot name certificate files", name)
	}
	return nil
}

// CertFile returns the path of node name's certificate in dir.
func CertFile(dir, name string) string { return filepath.Join(dir, name+certSuffix) }

// KeyFile returns the path of node name's key in dir.
func KeyFile(dir, name string) string { return filepath.Join(dir, name+keySuffix) }
