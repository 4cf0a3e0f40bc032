package tandem

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-io/tandem/cluster"
)

// lockedBuffer is a bytes.Buffer safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// noDNS is a resolver that knows no name.
type noDNS struct{}

func (noDNS) LookupHost(ctx context.Context, host string) ([]string, error) {
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (noDNS) LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error) {
	return "", nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// A second node under a live member's name fails Start within 10 s,
// naming the member and its address; the member, restarted under its
// name after a kill, is still taken back.
func TestNameOfALiveMemberFailsStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodes, err := StartLocal(ctx, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, n := range nodes {
			n.Kill()
		}
	}()
	live := nodes[0]

	cfg := LocalConfig(live.Name())
	cfg.GossipAddr, cfg.PeerAddr, cfg.Join = "127.0.0.1:0", "127.0.0.1:0", []string{nodes[1].GossipAddr()}
	start := time.Now()
	dup, err := Start(ctx, cfg)
	took := time.Since(start)
	if err == nil {
		dup.Kill()
		t.Fatalf("a second %s started", live.Name())
	}
	t.Logf("after %v: %v", took, err)
	if took > 10*time.Second {
		t.Fatalf("Start took %v to refuse the name", took)
	}
	if !errors.Is(err, ErrNameTaken) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrNameTaken and ErrInvalid", err)
	}
	for _, s := range []string{`"` + live.Name() + `"`, live.GossipAddr()} {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not name %s", err, s)
		}
	}
	if err := WaitConverged(ctx, nodes); err != nil {
		t.Fatalf("the cluster after the refused start: %v", err)
	}

	// The rightful owner, killed and restarted at once under its name on
	// new addresses, is not refused.
	live.Kill()
	cfg = LocalConfig(live.Name())
	cfg.GossipAddr, cfg.PeerAddr, cfg.Join = "127.0.0.1:0", "127.0.0.1:0", []string{nodes[1].GossipAddr()}
	back, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("restart under the same name after a kill: %v", err)
	}
	nodes[0] = back
	if err := WaitConverged(ctx, nodes); err != nil {
		t.Fatal(err)
	}
}

// While no seed answers, Start logs each retry on one line; when it gives
// up, its error is one line naming every seed and why it failed.
func TestSeedsNotAnsweringAreLoggedAndNamed(t *testing.T) {
	var dead []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead = append(dead, ln.Addr().String())
		ln.Close()
	}
	seeds := []string{dead[0], dead[1], "seeds.tandem.test:7946"}
	logs := &lockedBuffer{}
	cfg := LocalConfig("lonely")
	cfg.GossipAddr, cfg.PeerAddr, cfg.Join = "127.0.0.1:0", "127.0.0.1:0", seeds
	cfg.JoinTimeout = 1500 * time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.Cluster.Resolver = noDNS{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	n, err := Start(ctx, cfg)
	if err == nil {
		n.Kill()
		t.Fatal("started without any seed")
	}
	t.Logf("after %v: %v", time.Since(start), err)
	if !errors.Is(err, cluster.ErrJoin) {
		t.Fatalf("err = %v, want cluster.ErrJoin", err)
	}
	if strings.ContainsAny(err.Error(), "\r\n") {
		t.Fatalf("error is not one line: %q", err)
	}
	for _, s := range append(seeds, "connection refused", "no such host", "gave up joining after") {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not hold %q: %s", s, err)
		}
	}

	var retries int
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.Contains(line, "seeds not answering yet; retrying") {
			continue
		}
		retries++
		for _, s := range append(seeds, "attempt=", "connection refused") {
			if !strings.Contains(line, s) {
				t.Errorf("retry line does not hold %q: %s", s, line)
			}
		}
	}
	if retries < 2 {
		t.Fatalf("%d retries logged, want at least 2:\n%s", retries, logs)
	}
}
