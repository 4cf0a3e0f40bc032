package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeResolver answers lookups from tables; names it does not know are
// not found. Safe for concurrent use; set replaces its answers.
type fakeResolver struct {
	mu    sync.Mutex
	hosts map[string][]string
	srvs  map[string][]*net.SRV
	calls int
}

// set replaces the resolver's answers.
func (f *fakeResolver) set(hosts map[string][]string, srvs map[string][]*net.SRV) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hosts, f.srvs = hosts, srvs
}

func (f *fakeResolver) LookupHost(ctx context.Context, host string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if a, ok := f.hosts[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (f *fakeResolver) LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if service != "" || proto != "" {
		return "", nil, fmt.Errorf("fake: want the record's full name, got service %q proto %q", service, proto)
	}
	if s, ok := f.srvs[name]; ok {
		return name, s, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func TestCheckSeed(t *testing.T) {
	for _, tc := range []struct {
		seed string
		ok   bool
	}{
		{"10.0.0.7:7946", true},
		{"[fd00::7]:7946", true},
		{"10.0.0.7", true},
		{"fd00::7", true},
		{"tandem-0.tandem.default.svc:7946", true},
		{"localhost", true},
		{"dns+srv://_gossip._tcp.tandem.default.svc.cluster.local", true},
		{"dns+srv://", false},
		{"dns+srv://_gossip._tcp.example.org:7946", false},
		{"dns+srv://_gossip._tcp.example.org/x", false},
		{"dnssrv+_gossip._tcp.example.org", true}, // a host name as far as the form goes; the lookup fails
		{"http://example.org:7946", false},
		{"", false},
		{":7946", false},
		{"example.org:http", false},
		{"example.org:70000", false},
	} {
		err := checkSeed(tc.seed)
		if (err == nil) != tc.ok {
			t.Errorf("checkSeed(%q) = %v, want ok %v", tc.seed, err, tc.ok)
		}
	}

	cfg := testConfig("x", &recorder{}, &syncBuffer{}, "http://example.org:7946")
	if _, err := Start(context.Background(), cfg); !errors.Is(err, errConfig) || !strings.Contains(err.Error(), "http://example.org:7946") {
		t.Fatalf("Start with a seed of an unknown scheme: %v, want a config error naming it", err)
	}
}

func TestResolveSeeds(t *testing.T) {
	res := &fakeResolver{
		hosts: map[string][]string{
			"two.test":    {"10.0.0.1", "fd00::1"},
			"self.test":   {"10.0.0.9"},
			"mapped.test": {"::ffff:10.0.0.3"},
			"zoned.test":  {"fe80::1%eth0"},
			"pod-0.test":  {"10.0.1.0"},
			"pod-1.test":  {"10.0.1.1"},
		},
		srvs: map[string][]*net.SRV{
			"_g._tcp.svc.test": {
				{Target: "pod-0.test.", Port: 7000},
				{Target: "pod-1.test.", Port: 7001},
				{Target: "gone.test.", Port: 7002},
			},
			"_g._tcp.empty.test": {},
			"_g._tcp.gone.test":  {{Target: "gone.test.", Port: 7002}},
		},
	}
	for _, tc := range []struct {
		name  string
		seeds []string
		want  []string // "seed=addr"
		errs  []string // texts the errors must hold, one per failed seed
	}{
		{"ip", []string{"10.0.0.2:7946"}, []string{"10.0.0.2:7946=10.0.0.2:7946"}, nil},
		{"ip without port takes ours", []string{"10.0.0.2"}, []string{"10.0.0.2=10.0.0.2:7946"}, nil},
		{"ipv6", []string{"[fd00::2]:7000", "fd00::3"}, []string{"[fd00::2]:7000=[fd00::2]:7000", "fd00::3=[fd00::3]:7946"}, nil},
		{"host, every address", []string{"two.test:7000"}, []string{"two.test:7000=10.0.0.1:7000", "two.test:7000=[fd00::1]:7000"}, nil},
		{"host without port", []string{"two.test"}, []string{"two.test=10.0.0.1:7946", "two.test=[fd00::1]:7946"}, nil},
		{"own address skipped", []string{"self.test:7946", "10.0.0.9:7946", "10.0.0.2:7946"}, []string{"10.0.0.2:7946=10.0.0.2:7946"}, nil},
		{"repeats dropped", []string{"two.test:7000", "10.0.0.1:7000"}, []string{"two.test:7000=10.0.0.1:7000", "two.test:7000=[fd00::1]:7000"}, nil},
		{"mapped IPv4 unmapped, zoned skipped", []string{"mapped.test:1", "zoned.test:1"}, []string{"mapped.test:1=10.0.0.3:1"}, []string{"seed zoned.test:1: look up zoned.test: no usable addresses"}},
		{"srv, each target's port", []string{"dns+srv://_g._tcp.svc.test"},
			[]string{"dns+srv://_g._tcp.svc.test=10.0.1.0:7000", "dns+srv://_g._tcp.svc.test=10.0.1.1:7001"}, nil},
		{"srv without targets", []string{"dns+srv://_g._tcp.empty.test"}, nil, []string{"seed dns+srv://_g._tcp.empty.test: SRV record lists no targets"}},
		{"srv whose targets do not resolve", []string{"dns+srv://_g._tcp.gone.test"}, nil, []string{"seed dns+srv://_g._tcp.gone.test: SRV targets: look up gone.test:"}},
		{"unknown names", []string{"nope.test:1", "dns+srv://_x._tcp.nope.test", "10.0.0.2:1"}, []string{"10.0.0.2:1=10.0.0.2:1"},
			[]string{"seed nope.test:1: look up nope.test:", "seed dns+srv://_x._tcp.nope.test: look up SRV record:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cluster{cfg: Config{Seeds: tc.seeds, Resolver: res}, addr: "10.0.0.9:7946", port: 7946}
			targets, errs := c.targets(context.Background())
			var got []string
			for _, tg := range targets {
				got = append(got, tg.seed+"="+tg.addr)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("targets = %q, want %q", got, tc.want)
			}
			if len(errs) != len(tc.errs) {
				t.Fatalf("errors = %v, want %d", errs, len(tc.errs))
			}
			for i, err := range errs {
				if !strings.Contains(err.Error(), tc.errs[i]) || strings.Contains(err.Error(), "\n") {
					t.Errorf("error %d = %q, want one line holding %q", i, err, tc.errs[i])
				}
			}
		})
	}
}

func TestOneLine(t *testing.T) {
	inner := errors.New("dial tcp 10.0.0.1:1: connect: connection refused")
	for _, err := range []error{
		errors.Join(inner, errors.New("second\nline")),
		fmt.Errorf("1 error occurred:\n\t* %w\n\n", inner),
		multi{inner, errors.New("other")},
	} {
		got := oneLine(err)
		if strings.ContainsAny(got.Error(), "\n\t") || !strings.Contains(got.Error(), inner.Error()) || !errors.Is(got, inner) {
			t.Errorf("oneLine(%q) = %q, want one line holding and wrapping %q", err, got, inner)
		}
	}
	if err := oneLine(inner); err != inner {
		t.Errorf("oneLine changed a one-line error: %v", err)
	}
}

// multi mimics hashicorp/go-multierror's error as memberlist's Join
// returns it.
type multi []error

func (m multi) Error() string {
	s := fmt.Sprintf("%d errors occurred:\n", len(m))
	for _, e := range m {
		s += "\t* " + e.Error() + "\n"
	}
	return s + "\n"
}
func (m multi) WrappedErrors() []error { return m }
func (m multi) Unwrap() error          { return m[0] }

// Seeds that do not answer or do not resolve give one error, on one line,
// that names each with its reason.
func TestJoinFailureIsOneLineNamingEverySeed(t *testing.T) {
	t.Parallel()
	var dead []string
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead = append(dead, ln.Addr().String())
		ln.Close()
	}
	res := &fakeResolver{hosts: map[string][]string{"dead.test": {"127.0.0.1"}}}
	_, port, _ := net.SplitHostPort(dead[2])
	seeds := []string{dead[0], dead[1], "nope.test:7946", "dead.test:" + port, "dns+srv://_g._tcp.nope.test"}
	start := time.Now()
	_, err := tryStart(t, "lonely", func(c *Config) { c.Resolver = res }, seeds...)
	if !errors.Is(err, ErrJoin) {
		t.Fatalf("err = %v, want ErrJoin", err)
	}
	t.Logf("after %v: %v", time.Since(start), err)
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n") {
		t.Fatalf("error is not one line: %q", msg)
	}
	for _, want := range []string{
		"seed " + dead[0] + ": ", "seed " + dead[1] + ": ", "connection refused",
		"seed nope.test:7946: look up nope.test", "seed dead.test:" + port + " (" + dead[2] + "): ",
		"seed dns+srv://_g._tcp.nope.test: look up SRV record",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not hold %q: %s", want, msg)
		}
	}
}

// A node that gets a live member's name fails Start at once, naming the
// member and its address; the member keeps its name and address.
func TestNameOfALiveMemberIsRefused(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a")
	b := startNode(t, "b", a.Addr())
	for _, n := range []*node{a, b} {
		waitFor(t, converge, n.Name()+" to see a and b", hasRing(n, "a", "b"))
	}

	start := time.Now()
	x, err := tryStart(t, "a", func(*Config) {}, b.Addr())
	took := time.Since(start)
	if err == nil {
		t.Fatalf("a second a started at %s", x.Addr())
	}
	t.Logf("after %v: %v", took, err)
	if took > 10*time.Second {
		t.Fatalf("Start took %v to refuse the name", took)
	}
	var taken *NameTakenError
	if !errors.Is(err, ErrNameTaken) || !errors.As(err, &taken) || errors.Is(err, ErrJoin) {
		t.Fatalf("err = %v, want a NameTakenError and not ErrJoin", err)
	}
	if taken.Name != "a" || taken.Addr != a.Addr() || taken.BootID != a.meta.BootID {
		t.Fatalf("error names %+v, want a at %s with boot id %s", taken, a.Addr(), a.meta.BootID)
	}
	for _, s := range []string{`"a"`, a.Addr()} {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not name %s", err, s)
		}
	}
	time.Sleep(time.Second) // let any gossip of the refused node arrive
	for _, n := range []*node{a, b} {
		m, ok := n.View().member("a")
		if !ok || m.Addr != a.Addr() || m.Meta.BootID != a.meta.BootID || m.Health != healthAlive {
			t.Fatalf("%s sees a as %+v (present %v), want it alive at %s", n.Name(), m, ok, a.Addr())
		}
	}
}

// A node closed (as if crashed) and started again at once under its name
// on another address is taken back: the cluster still lists it at the old
// address, where nothing answers.
func TestRestartBeforeDeathIsNotANameConflict(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a")
	b := startNode(t, "b", a.Addr())
	for _, n := range []*node{a, b} {
		waitFor(t, converge, n.Name()+" to see a and b", hasRing(n, "a", "b"))
	}
	old := b.Addr()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := startNode(t, "b", a.Addr())
	if !strings.Contains(b2.logs.String(), "taken for an earlier incarnation") || !strings.Contains(b2.logs.String(), old) {
		t.Fatalf("b2 did not meet its old incarnation at %s as a conflict:\n%s", old, b2.logs)
	}
	waitFor(t, 20*time.Second, "a to take b back at its new address", func() bool {
		m, ok := a.View().member("b")
		return ok && m.Health == healthAlive && m.Addr == b2.Addr() && m.Meta.BootID == b2.meta.BootID
	})
}

// Seeds given as a DNS SRV record are resolved again at every re-join, so
// a node that appears in the record later is joined.
func TestSRVSeedsAreResolvedAgainAtRejoin(t *testing.T) {
	t.Parallel()
	fastRejoin := func(c *Config) { c.RejoinInterval = 200 * time.Millisecond }
	a := startWith(t, "a", fastRejoin)
	c := startWith(t, "c", fastRejoin) // a cluster of its own, not in the record yet
	hostPort := func(addr string) (string, uint16) {
		ap, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		return ap.IP.String(), uint16(ap.Port)
	}
	aHost, aPort := hostPort(a.Addr())
	cHost, cPort := hostPort(c.Addr())
	res := &fakeResolver{}
	res.set(map[string][]string{"a.test": {aHost}, "c.test": {cHost}},
		map[string][]*net.SRV{"_gossip._tcp.tandem.test": {{Target: "a.test.", Port: aPort}}})
	b := startWith(t, "b", func(cfg *Config) { fastRejoin(cfg); cfg.Resolver = res }, "dns+srv://_gossip._tcp.tandem.test")
	waitFor(t, converge, "a and b to meet", func() bool { return hasRing(a, "a", "b")() && hasRing(b, "a", "b")() })
	time.Sleep(500 * time.Millisecond) // re-joins run meanwhile; c is not in the record
	if _, ok := b.View().member("c"); ok {
		t.Fatal("b met c before the record listed it")
	}

	res.set(map[string][]string{"a.test": {aHost}, "c.test": {cHost}},
		map[string][]*net.SRV{"_gossip._tcp.tandem.test": {{Target: "a.test.", Port: aPort}, {Target: "c.test.", Port: cPort}}})
	for _, n := range []*node{a, b, c} {
		waitFor(t, converge, n.Name()+" to see a, b and c", hasRing(n, "a", "b", "c"))
	}
}

// A seed named by a real host name (localhost) is looked up by the
// system's resolver.
func TestSeedByHostName(t *testing.T) {
	t.Parallel()
	a := startNode(t, "a")
	_, port, err := net.SplitHostPort(a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	b := startNode(t, "b", "localhost:"+port)
	waitFor(t, converge, "a and b to meet", func() bool { return hasRing(a, "a", "b")() && hasRing(b, "a", "b")() })
}
