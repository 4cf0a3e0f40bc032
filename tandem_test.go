package tandem_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/ring"
)

// startCluster starts n nodes on loopback and stops them when the test ends.
func startCluster(t *testing.T, n int) []*tandem.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, n, nil)
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

// encode encodes an attribute value.
func encode(t *testing.T, v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSessionsWrittenAnywhereReadIdenticallyEverywhere(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 1))
	want := map[string]*tandem.Session{}
	for i := range 500 {
		id := fmt.Sprintf("sess-%04d-abcdefghijkl", i)
		node := nodes[rng.IntN(len(nodes))]
		s, err := node.Put(ctx, id, fmt.Sprintf("user-%d", i%50), map[string][]byte{"i": encode(t, i), "name": encode(t, id)})
		if err != nil {
			t.Fatalf("put %s via %s: %v", id, node.Name(), err)
		}
		want[id] = s
	}
	for _, node := range nodes {
		for id, w := range want {
			got, err := node.Peek(ctx, id)
			if err != nil {
				t.Fatalf("get %s via %s: %v", id, node.Name(), err)
			}
			if got.Version != w.Version || got.Principal != w.Principal || len(got.Attributes) != 2 ||
				string(got.Attributes["i"]) != string(w.Attributes["i"]) || string(got.Attributes["name"]) != string(w.Attributes["name"]) {
				t.Fatalf("get %s via %s: %+v, want %+v", id, node.Name(), got, w)
			}
		}
	}
}

func TestNodeAPI(t *testing.T) {
	nodes := startCluster(t, 2)
	ctx := context.Background()
	id := "node-api-session-0001"
	if _, err := nodes[0].Get(ctx, id); !errors.Is(err, tandem.ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
	if _, err := nodes[0].Get(ctx, "bad id"); !errors.Is(err, tandem.ErrInvalid) {
		t.Fatalf("get bad id: %v", err)
	}
	if _, err := nodes[0].Put(ctx, id, "alice", map[string][]byte{"big": encode(t, make([]byte, 2<<20))}); !errors.Is(err, tandem.ErrTooLarge) {
		t.Fatalf("put 2 MiB: %v", err)
	}
	s, err := nodes[1].Put(ctx, id, "alice", nil)
	if err != nil || s.Version != 1 {
		t.Fatalf("put: %+v %v", s, err)
	}
	if err := nodes[0].Touch(ctx, id); err != nil {
		t.Fatalf("touch: %v", err)
	}
	if _, err := nodes[0].Do(ctx, &tandem.Op{Kind: 2 /* put */, ID: id, IfVersion: 7}); !errors.Is(err, tandem.ErrConflict) {
		t.Fatalf("conditional put: %v", err)
	}
	if err := nodes[1].Delete(ctx, id); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := nodes[0].Peek(ctx, id); !errors.Is(err, tandem.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	primary, buddy, epoch, err := nodes[0].Owners(id)
	if err != nil || primary.Name == buddy.Name || buddy.Name == "" || epoch == 0 {
		t.Fatalf("owners: %+v %+v %d %v", primary, buddy, epoch, err)
	}
	st := nodes[0].Status()
	if len(st.Members) != 2 || st.UnderReplicated != 0 || !st.Ready {
		t.Fatalf("status: %+v", st)
	}
}

// A node that leaves gracefully takes nothing with it: its buddies serve.
func TestGracefulLeaveLosesNothing(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx := context.Background()
	for i := range 200 {
		if _, err := nodes[i%3].Put(ctx, fmt.Sprintf("leave-%04d-abcdefghijk", i), "", nil); err != nil {
			t.Fatal(err)
		}
	}
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := nodes[0].Close(closeCtx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := tandem.WaitConverged(closeCtx, nodes[1:]); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		if _, err := nodes[1+i%2].Peek(ctx, fmt.Sprintf("leave-%04d-abcdefghijk", i)); err != nil {
			t.Fatalf("after leave: %v", err)
		}
	}
}

func TestStartRefusesBadConfig(t *testing.T) {
	ctx := context.Background()
	if _, err := tandem.Start(ctx, tandem.Config{}); !errors.Is(err, tandem.ErrInvalid) {
		t.Fatalf("start without name: %v", err)
	}
	cfg := tandem.DefaultConfig("x")
	cfg.Ring = ring.Config{Partitions: 100, VirtualNodes: 1, Load: 1.5}
	if _, err := tandem.Start(ctx, cfg); !errors.Is(err, ring.ErrInvalidConfig) {
		t.Fatalf("start with 100 partitions: %v", err)
	}
}

// Config.Cluster.WrapTransport reaches membership, whatever else of
// Config.Cluster is left zero: the chaos harness cuts gossip through it.
func TestClusterTransportHookIsInstalled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wrapped atomic.Int32
	nodes, err := tandem.StartLocal(ctx, 1, func(_ int, cfg *tandem.Config) {
		cfg.Cluster.WrapTransport = func(inner memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
			wrapped.Add(1)
			return inner
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer nodes[0].Kill()
	if wrapped.Load() != 1 {
		t.Fatalf("gossip transport wrapped %d times, want once", wrapped.Load())
	}
}
