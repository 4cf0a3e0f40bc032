package chaos

import (
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/replica"
	"github.com/tandem-io/tandem/ring"
)

func TestCopyAnswerReadsTheWorkloadsAttributes(t *testing.T) {
	enc := func(s string) msgpack.RawMessage {
		b, err := msgpack.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	op := copyAnswer(Op{Outcome: Indeterminate, Error: "earlier try"}, &replica.Session{Version: 7,
		Attributes: replica.EncodeAttributes(map[string]msgpack.RawMessage{"put": enc("c1-5"), "patch": enc("c2-9")})})
	if op.Outcome != OK || op.Version != 7 || op.Put != "c1-5" || op.Patch != "c2-9" || op.Error != "" {
		t.Fatalf("copy answered as %+v", op)
	}
	if op := copyAnswer(Op{}, nil); op.Outcome != NotFound {
		t.Fatalf("no copy answered as %+v", op)
	}
	if op := copyAnswer(Op{}, &replica.Session{Version: 1, Attributes: replica.EncodeAttributes(map[string]msgpack.RawMessage{"put": {0xc1}})}); op.Outcome != Invalid {
		t.Fatalf("an undecodable attribute answered as %+v", op)
	}
}

func TestRingsDifferComparesOwnersNotEpochs(t *testing.T) {
	members := func(names ...string) []ring.Member {
		var out []ring.Member
		for _, n := range names {
			out = append(out, ring.Member{Name: n, Peer: n + ":1"})
		}
		return out
	}
	table := func(epoch uint64, m []ring.Member) *ring.Table {
		tab, err := ring.New(ring.DefaultConfig(), epoch, m)
		if err != nil {
			t.Fatal(err)
		}
		return tab
	}
	nodes := []NodeInfo{{Name: "n1"}, {Name: "n2"}}
	all := members("n1", "n2", "n3")
	if why := ringsDiffer(nodes, []*ring.Table{table(58, all), table(26, all)}); why != "" {
		t.Fatalf("the same members under different epochs differ: %s", why)
	}
	if why := ringsDiffer(nodes, []*ring.Table{table(3, all), table(3, members("n1", "n2"))}); !strings.Contains(why, "members") {
		t.Fatalf("different members: %q", why)
	}
}
