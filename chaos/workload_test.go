package chaos

import (
	"bytes"
	"testing"
)

// The smart client's ops are encoded again on every retry: the same op
// must make the same bytes, or the node refuses the retry as another
// request under the same id (session 307 of the 30-minute run at
// 803bf8d: a patch of all three attributes, whose nested map was encoded
// in Go's random map order).
func TestARetriedClientOpIsTheSameRequest(t *testing.T) {
	w := &Workload{cfg: WorkloadConfig{ValueSize: 16}}
	op := Op{Kind: OpPatch, Session: "s", Key: "k", Value: "c1-7", Attr: attrAll}
	first := w.clientOp(op)
	if len(first.Merge) == 0 {
		t.Fatalf("a patch of all three attributes merges nothing: %+v", first)
	}
	for range 50 {
		again := w.clientOp(op)
		for name, v := range first.Merge {
			if !bytes.Equal(again.Merge[name], v) {
				t.Fatalf("attribute %q encoded as %x, then %x", name, v, again.Merge[name])
			}
		}
		for name, v := range first.Set {
			if !bytes.Equal(again.Set[name], v) {
				t.Fatalf("attribute %q encoded as %x, then %x", name, v, again.Set[name])
			}
		}
	}
}
