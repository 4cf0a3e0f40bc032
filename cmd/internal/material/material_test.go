package material

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Write makes every file the interface names, certificates that verify
// against the CA for the given hosts with the node's name as common name,
// a 32-byte gossip key and a token per scope; and it refuses to overwrite
// a CA.
func TestWriteMakesTheClustersMaterial(t *testing.T) {
	dir := t.TempDir()
	if err := Write(dir, Options{Nodes: []string{"a", "b"}, Hosts: []string{"10.0.0.7", "node.example"}}); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	for _, n := range []string{"a", "b"} {
		pair, err := tls.LoadX509KeyPair(CertFile(dir, n), KeyFile(dir, n))
		if err != nil {
			t.Fatalf("node %s: %v", n, err)
		}
		cert, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if cert.Subject.CommonName != n {
			t.Fatalf("node %s: common name %q", n, cert.Subject.CommonName)
		}
		for _, host := range []string{"10.0.0.7", "node.example", n} {
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
					t.Fatalf("node %s for %s (usage %v): %v", n, host, usage, err)
				}
			}
		}
		info, err := os.Stat(KeyFile(dir, n))
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("node %s key mode: %v %v", n, info.Mode(), err)
		}
	}
	gossip, err := os.ReadFile(filepath.Join(dir, GossipFile))
	if err != nil {
		t.Fatal(err)
	}
	if key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(gossip))); err != nil || len(key) != 32 {
		t.Fatalf("gossip.key: %d bytes, %v", len(key), err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, TokensFile))
	if err != nil {
		t.Fatal(err)
	}
	toks, err := ParseTokens(raw)
	if err != nil || toks[ScopeSessions] == "" || toks[ScopeAdmin] == "" || toks[ScopeSessions] == toks[ScopeAdmin] {
		t.Fatalf("tokens: %v %v", toks, err)
	}
	keyPEM, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "PRIVATE KEY" {
		t.Fatal("ca.key holds no private key")
	}

	if err := Write(dir, Options{Nodes: []string{"c"}}); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second Write into the same dir: %v, want a refusal", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, CACertFile)); string(after) != string(caPEM) {
		t.Fatal("the CA changed")
	}
	if _, err := os.Stat(CertFile(dir, "c")); err == nil {
		t.Fatal("a refused Write still issued a certificate")
	}
}

// Bad node names and bad token files get clear errors.
func TestBadInput(t *testing.T) {
	for _, name := range []string{"", "ca", "a/b", ".hidden", "two words"} {
		if err := Write(t.TempDir(), Options{Nodes: []string{name}}); err == nil {
			t.Errorf("node name %q accepted", name)
		}
	}
	long := strings.Repeat("x", 32)
	cases := []struct{ name, file, want string }{
		{"empty", "", "no token"},
		{"unknown scope", "root " + long, "unknown scope"},
		{"twice", "admin " + long + "\nadmin " + long, "given twice"},
		{"short", "admin short", "shorter than 16"},
		{"three fields", "admin " + long + " extra", "want \"scope token\""},
	}
	for _, tc := range cases {
		if _, err := ParseTokens([]byte(tc.file)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	toks, err := ParseTokens([]byte("# comment\n\nsessions " + long + "\n"))
	if err != nil || toks[ScopeSessions] != long || toks[ScopeAdmin] != "" {
		t.Errorf("comments and one scope: %v %v", toks, err)
	}
}
