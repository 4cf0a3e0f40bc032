package tandem_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/cluster"
)

// gossipLog counts memberlist's state exchanges in a node's debug log and
// keeps the error lines that say gossip could not be read or exchanged.
type gossipLog struct {
	pushPulls atomic.Int64
	mu        sync.Mutex
	trouble   []string
}

// Write takes one log line.
func (g *gossipLog) Write(p []byte) (int, error) {
	line := string(p)
	if strings.Contains(line, "Initiating push/pull sync") {
		g.pushPulls.Add(1)
	}
	if strings.Contains(line, "level=ERROR") && strings.Contains(line, "component=memberlist") {
		for _, s := range []string{"crypt", "Push/Pull", "remote state", "push local state"} {
			if strings.Contains(line, s) {
				g.mu.Lock()
				g.trouble = append(g.trouble, line)
				g.mu.Unlock()
				break
			}
		}
	}
	return len(p), nil
}

// troubles returns the error lines kept so far.
func (g *gossipLog) troubles() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.trouble...)
}

// poll calls cond every 10ms until it holds, failing the test after
// timeout.
func poll(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// aliveMembers returns how many of names node sees alive.
func aliveMembers(node *tandem.Node, names ...string) int {
	alive := 0
	for _, m := range node.Status().Members {
		for _, name := range names {
			if m.Name == name && m.Health == "alive" {
				alive++
			}
		}
	}
	return alive
}

// The gossip key rotates across a running 3-node cluster — the new key
// installed on every node, made primary on every node, the old one
// removed from every node — while sessions are written and read through
// every node: no request fails and no node ever loses sight of another.
// Afterwards a node with only the old key cannot join; one with the new
// key can.
func TestGossipKeyRotationUnderLoad(t *testing.T) {
	oldKey, newKey := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 16)
	logs := make([]*gossipLog, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, 3, func(i int, cfg *tandem.Config) {
		logs[i] = &gossipLog{}
		cfg.Logger = slog.New(slog.NewTextHandler(logs[i], &slog.HandlerOptions{Level: slog.LevelDebug}))
		cfg.GossipKeys = [][]byte{oldKey}
		cfg.Cluster.PushPullInterval = 200 * time.Millisecond // each step is proven quickly
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, node := range nodes {
			node.Kill()
		}
	})
	names := []string{nodes[0].Name(), nodes[1].Name(), nodes[2].Name()}

	// Load: a write through one node and a read through the next, over
	// and over, until the rotation is done (at most maxOps of them).
	const maxOps = 200000
	var ops atomic.Int64
	var failure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < maxOps; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := writeThenRead(nodes, i); err != nil {
				failure.CompareAndSwap(nil, err.Error())
				return
			}
			ops.Add(1)
		}
	}()
	// Membership: every node sees the three alive, at every poll.
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, node := range nodes {
				if n := aliveMembers(node, names...); n != 3 {
					failure.CompareAndSwap(nil, fmt.Sprintf("%s saw %d of the 3 nodes alive", node.Name(), n))
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}
	t.Cleanup(stopLoad)
	checkLoad := func(when string) {
		t.Helper()
		if f := failure.Load(); f != nil {
			t.Fatalf("%s: %v", when, f)
		}
	}

	// Each step runs on every node; then every node completes two state
	// exchanges under it (the second start follows a whole exchange) and
	// the load makes progress.
	step := func(what string, op func(*tandem.Node) error) {
		t.Helper()
		for _, node := range nodes {
			if err := op(node); err != nil {
				t.Fatalf("%s on %s: %v", what, node.Name(), err)
			}
		}
		before := ops.Load()
		for i, node := range nodes {
			from := logs[i].pushPulls.Load()
			poll(t, 20*time.Second, node.Name()+" to exchange state after: "+what, func() bool {
				return logs[i].pushPulls.Load() >= from+2
			})
		}
		poll(t, 20*time.Second, "requests after: "+what, func() bool { return ops.Load() >= before+20 || failure.Load() != nil })
		checkLoad("after " + what)
	}
	step("install the new key", func(n *tandem.Node) error { return n.InstallGossipKey(newKey) })
	step("use the new key", func(n *tandem.Node) error { return n.UseGossipKey(newKey) })
	step("remove the old key", func(n *tandem.Node) error { return n.RemoveGossipKey(oldKey) })
	for i, node := range nodes {
		if lines := logs[i].troubles(); len(lines) > 0 {
			t.Fatalf("%s could not read gossip during the rotation: %s", node.Name(), lines[0])
		}
		primary, all := node.GossipKeys()
		if !bytes.Equal(primary, newKey) || len(all) != 1 {
			t.Fatalf("%s holds %d keys, primary %s", node.Name(), len(all), tandem.GossipKeyFingerprint(primary))
		}
	}

	// A node with only the old key cannot get in, while the load goes on.
	oldCfg := tandem.LocalConfig("node-old")
	oldCfg.GossipAddr, oldCfg.PeerAddr = "127.0.0.1:0", "127.0.0.1:0"
	oldCfg.Join = []string{nodes[0].GossipAddr()}
	oldCfg.GossipKeys = [][]byte{oldKey}
	oldCfg.JoinTimeout = time.Second
	if n, err := tandem.Start(ctx, oldCfg); err == nil {
		n.Kill()
		t.Fatal("a node with the old key joined")
	} else if !errors.Is(err, cluster.ErrJoin) {
		t.Fatalf("a node with the old key: %v, want a join failure", err)
	}
	stopLoad()
	checkLoad("during the rotation")
	if ops.Load() == maxOps {
		t.Fatalf("the load ran out (%d requests) before the rotation ended", maxOps)
	}
	t.Logf("%d writes and reads during the rotation", ops.Load())
	for _, node := range nodes {
		if n := aliveMembers(node, "node-old"); n != 0 {
			t.Fatalf("%s sees node-old alive", node.Name())
		}
	}

	// A node with the new key joins, and the four agree on the ring.
	newCfg := oldCfg
	newCfg.Name, newCfg.GossipKeys, newCfg.JoinTimeout = "node-new", [][]byte{newKey}, 10*time.Second
	joined, err := tandem.Start(ctx, newCfg)
	if err != nil {
		t.Fatalf("a node with the new key: %v", err)
	}
	t.Cleanup(joined.Kill)
	if err := tandem.WaitConverged(ctx, append(nodes[:3:3], joined)); err != nil {
		t.Fatal(err)
	}
	for _, node := range nodes {
		if n := aliveMembers(node, append(names, "node-new")...); n != 4 {
			t.Fatalf("%s sees %d of 4 nodes alive", node.Name(), n)
		}
	}

	// Rotation errors say what went wrong.
	for what, tc := range map[string]struct {
		err  error
		want error
	}{
		"remove the primary":   {nodes[0].RemoveGossipKey(newKey), tandem.ErrGossipKeyPrimary},
		"use a removed key":    {nodes[0].UseGossipKey(oldKey), tandem.ErrGossipKeyUnknown},
		"remove a removed key": {nodes[0].RemoveGossipKey(oldKey), tandem.ErrGossipKeyUnknown},
		"install a short key":  {nodes[0].InstallGossipKey([]byte("short")), tandem.ErrInvalid},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", what, tc.err, tc.want)
		}
	}
}

// writeThenRead writes session i%100 through one node and reads it back
// through the next, checking it reads what was written.
func writeThenRead(nodes []*tandem.Node, i int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id := fmt.Sprintf("rotate-%04d-abcdefghijk", i%100)
	val, err := msgpack.Marshal(i)
	if err != nil {
		return err
	}
	w, r := nodes[i%len(nodes)], nodes[(i+1)%len(nodes)]
	s, err := w.Put(ctx, id, "", map[string][]byte{"i": val})
	if err != nil {
		return fmt.Errorf("request %d: put %s via %s: %w", i, id, w.Name(), err)
	}
	got, err := r.Get(ctx, id)
	if err != nil {
		return fmt.Errorf("request %d: get %s via %s: %w", i, id, r.Name(), err)
	}
	if got.Version < s.Version || !bytes.Equal(got.Attributes["i"], val) {
		return fmt.Errorf("request %d: get %s via %s: version %d, i %x; wrote version %d, i %x", i, id, r.Name(), got.Version, got.Attributes["i"], s.Version, val)
	}
	return nil
}

// A node without gossip keys has nothing to rotate; Start refuses bad
// keys, and SecretKey with GossipKeys.
func TestGossipKeyConfigAndUnencryptedNode(t *testing.T) {
	nodes := startCluster(t, 1)
	if err := nodes[0].InstallGossipKey(bytes.Repeat([]byte{1}, 16)); !errors.Is(err, tandem.ErrGossipUnencrypted) {
		t.Fatalf("install on a node in the clear: %v, want ErrGossipUnencrypted", err)
	}
	if p, all := nodes[0].GossipKeys(); p != nil || all != nil {
		t.Fatalf("keys of a node in the clear: %x %x", p, all)
	}
	k := bytes.Repeat([]byte{3}, 24)
	for what, set := range map[string]func(*tandem.Config){
		"secret key and gossip keys": func(c *tandem.Config) { c.SecretKey, c.GossipKeys = k, [][]byte{k} },
		"a key of 20 bytes":          func(c *tandem.Config) { c.GossipKeys = [][]byte{k, make([]byte, 20)} },
		"a repeated key":             func(c *tandem.Config) { c.GossipKeys = [][]byte{k, k} },
		"a secret key of 8 bytes":    func(c *tandem.Config) { c.SecretKey = make([]byte, 8) },
	} {
		cfg := tandem.DefaultConfig("bad-keys")
		cfg.GossipAddr, cfg.PeerAddr = "127.0.0.1:0", "127.0.0.1:0"
		set(&cfg)
		if n, err := tandem.Start(context.Background(), cfg); err == nil {
			n.Kill()
			t.Errorf("%s: Start succeeded", what)
		} else if !errors.Is(err, tandem.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", what, err)
		}
	}
}

func TestLoadGossipKeys(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 16)
	b64 := base64.StdEncoding.EncodeToString
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keys, err := tandem.LoadGossipKeys(write("gossip.key", "# primary first\n"+b64(k1)+"\n\n"+b64(k2)+"\n"))
	if err != nil || len(keys) != 2 || !bytes.Equal(keys[0], k1) || !bytes.Equal(keys[1], k2) {
		t.Fatalf("LoadGossipKeys: %x, %v", keys, err)
	}
	short := b64(make([]byte, 10))
	_, err = tandem.LoadGossipKeys(write("short.key", b64(k1)+"\n"+short+"\n"))
	if !errors.Is(err, tandem.ErrInvalid) || !strings.Contains(err.Error(), "short.key") ||
		!strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "got 10") || strings.Contains(err.Error(), short) {
		t.Fatalf("a short key: %v; want ErrInvalid naming the file, the line and the length, not the key", err)
	}
	if _, err := tandem.LoadGossipKeys(write("empty.key", "\n# nothing\n")); !errors.Is(err, tandem.ErrInvalid) {
		t.Fatalf("a file without keys: %v, want ErrInvalid", err)
	}
	if _, err := tandem.LoadGossipKeys(filepath.Join(dir, "missing.key")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing file: %v, want ErrNotExist", err)
	}
	if _, err := tandem.LoadGossipKeys(write("big.key", strings.Repeat("#\n", 40<<10))); !errors.Is(err, tandem.ErrInvalid) {
		t.Fatalf("an 80 KiB file: %v, want ErrInvalid", err)
	}
}
