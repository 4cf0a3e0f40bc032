package tandem_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/replica"
	"github.com/tandem-io/tandem/replica/peer"
	"github.com/tandem-io/tandem/replica/peer/tlstest"
)

// startTLSCluster starts n nodes on loopback that speak mutual TLS, each
// loading its material from PEM files issued by ca, as `tandem serve
// -certs-dir` will, and stops them when the test ends.
func startTLSCluster(t *testing.T, ca *tlstest.CA, n int) []*tandem.Node {
	t.Helper()
	dir := t.TempDir()
	caFile := ca.WriteCA(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, n, func(_ int, cfg *tandem.Config) {
		certFile, keyFile := tlstest.WriteCert(t, dir, cfg.Name, ca.Node(t, cfg.Name))
		material, err := tandem.LoadPeerTLS(caFile, certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.PeerTLS = material
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, node := range nodes {
			node.Kill()
		}
	})
	return nodes
}

// clientTLS returns a smart client's TLS configuration with a client
// certificate from ca.
func clientTLS(t *testing.T, ca *tlstest.CA, name string) *tls.Config {
	t.Helper()
	cfg, err := (&tandem.PeerTLS{CA: ca.Pool, Certificate: ca.Client(t, name)}).ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestMutualTLSClusterServesEverywhereAndFailsOver(t *testing.T) {
	nodes := startTLSCluster(t, tlstest.NewCA(t, "cluster"), 3)
	ctx := context.Background()
	victim := nodes[1]
	var ids []string // sessions whose primary is the victim
	for i := 0; len(ids) < 30; i++ {
		id := fmt.Sprintf("tls-session-%06d-abcd", i)
		if _, err := nodes[i%3].Put(ctx, id, "alice", map[string][]byte{"n": encode(t, i)}); err != nil {
			t.Fatalf("put %s via %s: %v", id, nodes[i%3].Name(), err)
		}
		for _, node := range nodes {
			if s, err := node.Peek(ctx, id); err != nil || s.Version != 1 {
				t.Fatalf("read %s via %s: %+v, %v", id, node.Name(), s, err)
			}
		}
		if p, _, _, _ := nodes[0].Owners(id); p.Name == victim.Name() {
			ids = append(ids, id)
		}
	}

	victim.Kill()
	survivors := []*tandem.Node{nodes[0], nodes[2]}
	for _, node := range survivors {
		for _, id := range ids {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			s, err := node.Peek(rctx, id)
			cancel()
			if err != nil || s.Version != 1 {
				t.Fatalf("read %s via %s after its primary died: %+v, %v", id, node.Name(), s, err)
			}
		}
	}
	for i, id := range ids {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		s, err := survivors[i%2].Patch(wctx, id, map[string][]byte{"after": encode(t, true)}, nil)
		cancel()
		if err != nil || s.Version != 2 {
			t.Fatalf("write %s after failover: %+v, %v", id, s, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := tandem.WaitConverged(wctx, survivors); err != nil {
		t.Fatal(err)
	}
	for _, node := range nodes {
		if n := node.Stats().IdentityRefusals; n != 0 {
			t.Errorf("%s refused %d requests of its own cluster", node.Name(), n)
		}
	}
}

func TestSmartClientsNeedAClientCertificate(t *testing.T) {
	ca := tlstest.NewCA(t, "cluster")
	nodes := startTLSCluster(t, ca, 3)
	ctx := context.Background()

	c := dial(t, nodes, tandem.ClientConfig{Peer: peer.ClientConfig{TLS: clientTLS(t, ca, "shop")}})
	id := "tls-client-session-0001"
	if s, err := c.Put(ctx, id, "alice", map[string][]byte{"n": encode(t, 1)}); err != nil || s.Version != 1 {
		t.Fatalf("put through a client with a certificate: %+v, %v", s, err)
	}
	if s, err := c.Get(ctx, id); err != nil || s.Principal != "alice" {
		t.Fatalf("get through a client with a certificate: %+v, %v", s, err)
	}

	other := tlstest.NewCA(t, "other")
	for what, cfg := range map[string]*tls.Config{
		"plain TCP":                nil,
		"another CA's certificate": clientTLS(t, other, "shop"),
	} {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := tandem.Dial(dctx, []string{nodes[0].PeerAddr()}, tandem.ClientConfig{Peer: peer.ClientConfig{TLS: cfg}})
		cancel()
		if err == nil {
			c.Close()
			t.Errorf("dial with %s: connected", what)
		}
	}

	// The client's certificate opens only the client's methods: the
	// node-only ones are refused and counted.
	pc := peer.NewClient(peer.ClientConfig{TLS: clientTLS(t, ca, "mallory")})
	defer pc.Close()
	for _, method := range []string{"replicate", "pull", "lease", "push"} {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := replica.FromWire(pc.Call(cctx, nodes[0].PeerAddr(), method, map[string]any{"f": "node-2", "p": 0}, nil))
		cancel()
		if !errors.Is(err, replica.ErrForbidden) {
			t.Errorf("client calling %s: %v; want ErrForbidden", method, err)
		}
	}
	if n := nodes[0].Stats().IdentityRefusals; n != 4 {
		t.Errorf("IdentityRefusals = %d, want 4", n)
	}
}

func TestStartChecksItsPeerTLSMaterial(t *testing.T) {
	ca := tlstest.NewCA(t, "cluster")
	dir := t.TempDir()
	caFile := ca.WriteCA(t, dir)
	certFile, keyFile := tlstest.WriteCert(t, dir, "a", ca.Node(t, "a"))
	material, err := tandem.LoadPeerTLS(caFile, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if name, err := material.Name(); err != nil || name != "a" {
		t.Fatalf("Name() = %q, %v; want a", name, err)
	}
	client := &tandem.PeerTLS{CA: ca.Pool, Certificate: ca.Client(t, "a")}
	for what, c := range map[string]struct {
		name     string
		material *tandem.PeerTLS
	}{
		"another node's certificate": {"b", material},
		"a client's certificate":     {"client:a", client},
		"no certificate":             {"a", &tandem.PeerTLS{CA: ca.Pool}},
		"no CA":                      {"a", &tandem.PeerTLS{Certificate: material.Certificate}},
	} {
		cfg := tandem.DefaultConfig(c.name)
		cfg.GossipAddr, cfg.PeerAddr, cfg.PeerTLS = "127.0.0.1:0", "127.0.0.1:0", c.material
		if n, err := tandem.Start(context.Background(), cfg); !errors.Is(err, tandem.ErrInvalid) {
			if n != nil {
				n.Kill()
			}
			t.Errorf("start with %s: %v; want ErrInvalid", what, err)
		}
	}

	bad := filepath.Join(dir, "bad.crt")
	if err := os.WriteFile(bad, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tandem.LoadPeerTLS(bad, certFile, keyFile); !errors.Is(err, tandem.ErrInvalid) {
		t.Errorf("load with a CA file without certificates: %v; want ErrInvalid", err)
	}
	if _, err := tandem.LoadPeerTLS(filepath.Join(dir, "missing.crt"), certFile, keyFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("load without a CA file: %v; want not exist", err)
	}
	if _, err := tandem.LoadPeerTLS(caFile, certFile, caFile); err == nil {
		t.Error("load with a certificate for a key: no error")
	}
}
