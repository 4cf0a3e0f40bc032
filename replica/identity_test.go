package replica

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/replica/peer"
	"github.com/tandem-io/tandem/replica/peer/tlstest"
)

// The peer wire's identity checks (methods.go, checkCaller), over real
// sockets with mutual TLS.

// newTLSCluster starts n nodes behind peer servers on loopback that speak
// mutual TLS, each with a certificate from ca naming it, and gives them
// one ring.
func newTLSCluster(t *testing.T, ca *tlstest.CA, n int) *testCluster {
	t.Helper()
	c := &testCluster{t: t, clock: newClock(nil), nodes: map[string]*testNode{}, ca: ca}
	return c.startAll(n, nil)
}

// peerConfigs returns the peer client and server settings of socket node
// name: mutual TLS with a certificate naming it when the cluster has a
// CA, plain TCP otherwise.
func (c *testCluster) peerConfigs(name string) (peer.ClientConfig, peer.ServerConfig) {
	cc, sc := peer.DefaultClientConfig(), peer.DefaultServerConfig()
	if c.ca != nil {
		var err error
		if sc.TLS, cc.TLS, err = peer.MutualTLS(c.ca.Pool, c.ca.Node(c.t, name)); err != nil {
			c.t.Fatal(err)
		}
	}
	return cc, sc
}

// dialAs returns a peer client presenting cert (none if cert is empty)
// and trusting ca, closed when the test ends; a nil ca dials plain TCP.
func dialAs(t *testing.T, ca *tlstest.CA, cert tls.Certificate) *peer.Client {
	t.Helper()
	cfg := peer.DefaultClientConfig()
	switch {
	case ca == nil:
	case cert.PrivateKey == nil:
		cfg.TLS = &tls.Config{RootCAs: ca.Pool, MinVersion: tls.VersionTLS13}
	default:
		var err error
		if cfg.TLS, err = peer.ClientTLS(ca.Pool, cert); err != nil {
			t.Fatal(err)
		}
	}
	c := peer.NewClient(cfg)
	t.Cleanup(func() { c.Close() })
	return c
}

// planted is the session an attacker would plant: a high version whose
// principal is root.
func planted(id string, now time.Time) *Session {
	return &Session{ID: id, Principal: "root", Version: 1000000, Created: now, LastAccess: now, IdleTimeout: time.Hour, Stamp: 1 << 40, Writer: "mallory"}
}

// triple returns a session id's primary and buddy in a 3-node cluster, and
// the third node, which owns nothing of it.
func (c *testCluster) triple(id string) (primary, buddy, third *testNode) {
	primary, buddy = c.ownersOf(id)
	for _, n := range c.list() {
		if n != primary && n != buddy {
			third = n
		}
	}
	return primary, buddy, third
}

// refusals sums the nodes' IdentityRefusals.
func (c *testCluster) refusals() map[string]uint64 {
	out := map[string]uint64{}
	for _, n := range c.list() {
		out[n.Name()] = n.Stats().IdentityRefusals.Load()
	}
	return out
}

func TestMutualTLSClusterWritesReadsAndFailsOver(t *testing.T) {
	c := newTLSCluster(t, tlstest.NewCA(t, "cluster"), 3)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 100 {
		put(t, c.any(rng), sessionID(i), "n", i)
	}
	for _, n := range c.list() {
		for i := range 100 {
			if s, err := n.Get(testCtx(t), sessionID(i), true); err != nil || asInt(t, s.Attributes.value("n")) != i {
				t.Fatalf("get %s via %s: %v, %v", sessionID(i), n.Name(), s, err)
			}
		}
	}
	c.kill("node-1")
	for _, n := range c.list() {
		for i := range 100 {
			if s, err := n.Get(testCtx(t), sessionID(i), true); err != nil || asInt(t, s.Attributes.value("n")) != i {
				t.Fatalf("after node-1 crashed, get %s via %s: %v, %v", sessionID(i), n.Name(), s, err)
			}
		}
		put(t, n, sessionID(1000), "by", n.Name())
	}
	for name, n := range c.refusals() {
		if n != 0 {
			t.Errorf("%s refused %d requests of its own cluster", name, n)
		}
	}
}

func TestANodeCannotActAsAnother(t *testing.T) {
	id := sessionID(7)
	ask := func(c *testCluster, from *testNode, to *testNode, method string, args any) error {
		return FromWire(from.caller.Call(testCtx(t), to.member.Peer, method, args, nil))
	}
	replicate := func(c *testCluster, from, to, claimed *testNode) error {
		tab := to.Table()
		return ask(c, from, to, methodReplicate, replicateRequest{From: claimed.Name(), Epoch: tab.Epoch(), Partition: tab.Partition(id), Session: planted(id, c.clock.Now())})
	}
	held := func(n *testNode) *Session { return n.store.get(n.Table().Partition(id), id) }

	// Without mutual TLS, the third node plants a session on the buddy by
	// claiming to be the primary: the attack the certificates stop.
	plain := newSocketCluster(t, 3, nil)
	primary, buddy, third := plain.triple(id)
	if err := replicate(plain, third, buddy, primary); err != nil {
		t.Fatalf("plain TCP: %s posing as %s: %v; want it stored, as before TLS", third.Name(), primary.Name(), err)
	}
	if s := held(buddy); s == nil || s.Principal != "root" {
		t.Fatalf("plain TCP: the buddy holds %+v", s)
	}

	c := newTLSCluster(t, tlstest.NewCA(t, "cluster"), 3)
	primary, buddy, third = c.triple(id)
	p := buddy.Table().Partition(id)
	posing := map[string]any{
		methodReplicate: "replicate",
		methodLease:     leaseRequest{From: primary.Name()},
		"lease release": leaseRequest{From: primary.Name(), Release: true},
		methodReconcile: reconcileRequest{From: primary.Name()},
		methodPush:      pushRequest{From: primary.Name(), Partition: p, Sessions: []*Session{planted(id, c.clock.Now())}},
		methodLost:      lostNotice{From: primary.Name(), Partition: p, Ring: buddy.Table().Fingerprint()},
	}
	for what, args := range posing {
		var err error
		switch what {
		case methodReplicate:
			err = replicate(c, third, buddy, primary)
		case "lease release":
			err = ask(c, third, buddy, methodLease, args)
		default:
			err = ask(c, third, buddy, what, args)
		}
		if !errors.Is(err, ErrForbidden) {
			t.Errorf("%s sending %s as %s: %v; want ErrForbidden", third.Name(), what, primary.Name(), err)
		}
	}
	if s := held(buddy); s != nil {
		t.Fatalf("the buddy stored a copy sent by an impostor: %+v", s)
	}
	want := map[string]uint64{primary.Name(): 0, buddy.Name(): uint64(len(posing)), third.Name(): 0}
	if got := c.refusals(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("IdentityRefusals = %v, want %v", got, want)
	}

	// Under its own name the third node is a member like any other: it
	// gets a lease; its replica is refused by the gate (it is not the
	// primary), not by its certificate.
	if err := ask(c, third, buddy, methodLease, leaseRequest{From: third.Name()}); err != nil {
		t.Errorf("%s asking for a lease as itself: %v", third.Name(), err)
	}
	if err := replicate(c, third, buddy, third); err == nil || errors.Is(err, ErrForbidden) {
		t.Errorf("%s replicating as itself: %v; want the gate's refusal", third.Name(), err)
	}
	// The primary's own writes go through.
	put(t, third, id, "n", 1)
	if s := held(buddy); s == nil || s.Principal == "root" {
		t.Fatalf("after a write, the buddy holds %+v", s)
	}
	if got := c.refusals(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after lawful requests, IdentityRefusals = %v, want %v", got, want)
	}
}

func TestAClientCertificateCallsOnlyClientMethods(t *testing.T) {
	ca := tlstest.NewCA(t, "cluster")
	c := newTLSCluster(t, ca, 3)
	id := sessionID(9)
	primary, buddy, _ := c.triple(id)
	p := primary.Table().Partition(id)
	client := dialAs(t, ca, ca.Client(t, "shop"))
	call := func(to *testNode, method string, args, reply any) error {
		return FromWire(client.Call(testCtx(t), to.member.Peer, method, args, reply))
	}

	// What smart clients do: learn the ring, write through the primary,
	// read from the buddy.
	var info RingInfo
	if err := call(buddy, MethodRing, empty{}, &info); err != nil {
		t.Fatalf("ring: %v", err)
	}
	var reply OpReply
	if err := call(primary, MethodOp, &Op{Kind: OpPut, ID: id, RequestID: "req-1", Attributes: map[string]msgpack.RawMessage{"n": value(t, 1)}}, &reply); err != nil || reply.Session == nil {
		t.Fatalf("op: %+v, %v", reply, err)
	}
	var read ReadReply
	if err := call(buddy, MethodRead, ReadRequest{Partition: p, ID: id}, &read); err != nil || read.Session == nil {
		t.Fatalf("read from the buddy: %+v, %v", read, err)
	}

	name := peer.ClientNamePrefix + "shop" // even naming itself
	nodeOnly := map[string]any{
		methodReplicate: replicateRequest{From: name, Epoch: buddy.Table().Epoch(), Partition: p, Session: planted(id, c.clock.Now())},
		methodPull:      pullRequest{Partition: p, MaxBytes: 1 << 20},
		methodLease:     leaseRequest{From: name},
		methodPush:      pushRequest{From: name, Partition: p, Sessions: []*Session{planted(id, c.clock.Now())}},
		methodReconcile: reconcileRequest{From: name},
		methodLost:      lostNotice{From: name, Partition: p},
		methodTouch:     touchRequest{},
		methodExpire:    expireRequest{},
		methodPrincipal: principalRequest{Principal: "root"},
	}
	for method, args := range nodeOnly {
		if err := call(buddy, method, args, nil); !errors.Is(err, ErrForbidden) {
			t.Errorf("client calling %s: %v; want ErrForbidden", method, err)
		}
	}
	if got := buddy.Stats().IdentityRefusals.Load(); got != uint64(len(nodeOnly)) {
		t.Errorf("the buddy counted %d refusals, want %d", got, len(nodeOnly))
	}
	if s, err := primary.Get(testCtx(t), id, true); err != nil || s.Version != 1 || s.Principal == "root" {
		t.Fatalf("after the client's refused calls: %+v, %v", s, err)
	}
}

func TestAPeerWithoutAClusterCertificateGetsNothing(t *testing.T) {
	ca, other := tlstest.NewCA(t, "cluster"), tlstest.NewCA(t, "other")
	c := newTLSCluster(t, ca, 3)
	id := sessionID(11)
	primary, buddy, _ := c.triple(id)
	put(t, primary, id, "n", 1)
	p := buddy.Table().Partition(id)

	otherCA := peer.DefaultClientConfig()
	var err error
	if _, otherCA.TLS, err = peer.MutualTLS(other.Pool, other.Node(t, primary.Name())); err != nil {
		t.Fatal(err)
	}
	otherCA.TLS.RootCAs, otherCA.TLS.InsecureSkipVerify, otherCA.TLS.VerifyConnection = ca.Pool, false, nil // it trusts the cluster; the cluster does not trust it
	outsiders := map[string]*peer.Client{
		"plain TCP":                     dialAs(t, nil, tls.Certificate{}),
		"TLS without a certificate":     dialAs(t, ca, tls.Certificate{}),
		"another CA's node certificate": peer.NewClient(otherCA),
	}
	requests := map[string]any{
		methodReplicate: replicateRequest{From: primary.Name(), Epoch: buddy.Table().Epoch(), Partition: p, Session: planted(id, c.clock.Now())},
		methodPull:      pullRequest{Partition: p, MaxBytes: 1 << 20},
		methodRead:      ReadRequest{Partition: p, ID: id},
	}
	for who, client := range outsiders {
		defer client.Close()
		for method, args := range requests {
			var reply any
			if err := client.Call(testCtx(t), buddy.member.Peer, method, args, &reply); !errors.Is(err, peer.ErrUnreachable) || reply != nil {
				t.Errorf("%s calling %s: %v, %v; want the handshake refused (unreachable)", who, method, reply, err)
			}
		}
	}
	if s, err := buddy.Get(testCtx(t), id, true); err != nil || s.Version != 1 || s.Principal == "root" {
		t.Fatalf("after the outsiders' calls: %+v, %v", s, err)
	}
	for name, n := range c.refusals() {
		if n != 0 {
			t.Errorf("%s counted %d refusals; outsiders never reach a handler", name, n)
		}
	}
}
