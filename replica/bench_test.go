package replica

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/replica/peer"

	"github.com/tandem-io/tandem/ring"
)

// membersNamed returns n members called m-0 … m-(n-1).
func membersNamed(n int) []ring.Member {
	out := make([]ring.Member, n)
	for i := range out {
		out[i] = ring.Member{Name: fmt.Sprintf("m-%d", i), Peer: fmt.Sprintf("m-%d:7947", i)}
	}
	return out
}

// BenchmarkInstallRing measures what a membership change costs a node's
// ownership: installing the ring after a join or a leave, with the
// hand-offs, fences and displaced owners it works out, at 3 and 100
// members. (Building the ring itself is ring.BenchmarkNew.)
func BenchmarkInstallRing(b *testing.B) {
	for _, n := range []int{3, 100} {
		all := membersNamed(n + 1)
		before, err := ring.New(ring.DefaultConfig(), 1, all[:n])
		if err != nil {
			b.Fatal(err)
		}
		joined, err := ring.New(ring.DefaultConfig(), 2, all)
		if err != nil {
			b.Fatal(err)
		}
		left, err := ring.New(ring.DefaultConfig(), 2, all[1:n])
		if err != nil {
			b.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			next *ring.Table
		}{{"join", joined}, {"leave", left}} {
			b.Run(fmt.Sprintf("%s/members=%d", tc.name, n), func(b *testing.B) {
				for b.Loop() {
					o := newOwnership(Config{Name: "m-1"}.withDefaults())
					if _, err := o.install(before, 0, nil); err != nil {
						b.Fatal(err)
					}
					if _, err := o.install(tc.next, time.Second, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkGate measures the admission check on the hot path: a primary
// read and write that hold their leases.
func BenchmarkGate(b *testing.B) {
	tab, err := ring.New(ring.DefaultConfig(), 1, membersNamed(3))
	if err != nil {
		b.Fatal(err)
	}
	o := newOwnership(Config{Name: "m-0"}.withDefaults())
	if _, err := o.install(tab, 0, nil); err != nil {
		b.Fatal(err)
	}
	for p := range tab.Partitions() {
		o.finishTransfer(tab, p, o.load().parts[p].transfer)
	}
	p := 0
	for tab.Owners(p).Primary != "m-0" {
		p++
	}
	now := time.Hour
	for _, m := range []string{"m-1", "m-2"} {
		o.recordLease(m, leaseReply{Fingerprint: tab.Fingerprint()}, now, now)
	}
	for _, tc := range []struct {
		name string
		e    entry
	}{{"read", entryRead}, {"write", entryWrite}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if v := o.admit(admission{entry: tc.e, tab: tab, p: p}, now); v.err != nil || len(v.leases) > 0 || v.fetch != nil {
					b.Fatalf("not admitted: %+v", v)
				}
			}
		})
	}
}

// BenchmarkStore measures the store's get and put of a 1 KiB session.
func BenchmarkStore(b *testing.B) {
	s := newStore(ring.DefaultPartitions)
	sess := &Session{ID: "0123456789abcdefghij", Version: 1, Attributes: EncodeAttributes(map[string]msgpack.RawMessage{"v": kibValue()})}
	s.putIfNewer(3, sess)
	b.Run("get", func(b *testing.B) {
		for b.Loop() {
			if s.get(3, sess.ID) == nil {
				b.Fatal("missing")
			}
		}
	})
	b.Run("put", func(b *testing.B) {
		for b.Loop() {
			s.putUnder(3, sess, false, nil)
		}
	})
}

// kibValue is a msgpack bin of 1 KiB: the benchmarks' attribute value.
func kibValue() msgpack.RawMessage {
	return append(msgpack.RawMessage{0xc5, 0x04, 0x00}, make([]byte, 1024)...)
}

// BenchmarkStoreMemory measures the live heap a stored copy of a session
// holding one 1 KiB attribute takes, made as a put makes it (apply, with
// a request id recorded) and stored in its partition, after a collection:
// the metric live-B/copy. VmRSS per copy (cmd/tandem-bench) adds the
// collector's headroom and the process's own.
func BenchmarkStoreMemory(b *testing.B) {
	const copies = 20000
	now := time.Now()
	for b.Loop() {
		s := newStore(ring.DefaultPartitions)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range copies {
			op := &Op{Kind: OpPut, ID: fmt.Sprintf("bench-session-%06d-%s", i, "0123456789"), RequestID: NewRequestID(),
				Attributes: map[string]msgpack.RawMessage{"v": kibValue()}}
			sess, err := apply(op, nil, now, uint64(i+1), "tandem-1", limits{})
			if err != nil {
				b.Fatal(err)
			}
			s.putIfNewer(i%ring.DefaultPartitions, sess)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/copies, "live-B/copy")
		runtime.KeepAlive(s)
	}
}

// BenchmarkReplicatedWrite measures a patch through the whole write path
// (routing, the gate, apply, replication to the buddy, store) on a 3-node
// cluster over the in-memory network, from the session's primary.
func BenchmarkReplicatedWrite(b *testing.B) {
	c := newTestCluster(b, 3, nil)
	id := sessionID(1)
	primary, _ := c.ownersOf(id)
	ctx := context.Background()
	if _, err := primary.Do(ctx, &Op{Kind: OpPut, ID: id, Attributes: map[string]msgpack.RawMessage{"v": {0x01}}}); err != nil {
		b.Fatal(err)
	}
	patch := &Op{Kind: OpPatch, ID: id, Set: map[string]msgpack.RawMessage{"v": make([]byte, 0)}}
	patch.Set["v"] = msgpack.RawMessage{0xc4, 0x00} // an empty bin
	for b.Loop() {
		if _, err := primary.Do(ctx, patch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSessionCodec measures a 1 KiB session's msgpack encoding and its
// bounded decoding, as the peer wire carries it.
func BenchmarkSessionCodec(b *testing.B) {
	sess := &Session{ID: "0123456789abcdefghij", Principal: "alice", Version: 7,
		Attributes: EncodeAttributes(map[string]msgpack.RawMessage{"cart": append([]byte{0xc5, 0x04, 0x00}, make([]byte, 1024)...)}),
		Created:    time.Unix(1, 0), LastAccess: time.Unix(2, 0), IdleTimeout: time.Hour}
	enc, err := msgpack.Marshal(sess)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encode", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		for b.Loop() {
			if _, err := msgpack.Marshal(sess); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		for b.Loop() {
			var s Session
			if err := decodeBounded(enc, &s); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The extension check alone, which decode includes (peer.CheckShape).
	b.Run("check-shape", func(b *testing.B) {
		b.SetBytes(int64(len(enc)))
		for b.Loop() {
			if err := peer.CheckShape(enc, &Session{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOpCodec measures an op's msgpack encoding and its bounded
// decoding, as the peer wire carries it: a read, and a put of a 1 KiB
// attribute.
func BenchmarkOpCodec(b *testing.B) {
	for _, op := range []*Op{
		{Kind: OpGet, ID: "0123456789abcdefghij", NotAfter: 1_700_000_000_000_000_000},
		{Kind: OpPut, ID: "0123456789abcdefghij", RequestID: NewRequestID(), FirstSent: 1_700_000_000_000_000_000,
			NotAfter: 1_700_000_000_000_000_000, Principal: "alice", Attributes: map[string]msgpack.RawMessage{"v": kibValue()}},
	} {
		enc, err := msgpack.Marshal(op)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(op.Kind.String()+"/encode", func(b *testing.B) {
			b.SetBytes(int64(len(enc)))
			for b.Loop() {
				if _, err := msgpack.Marshal(op); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(op.Kind.String()+"/decode", func(b *testing.B) {
			b.SetBytes(int64(len(enc)))
			for b.Loop() {
				var got Op
				if err := decodeBounded(enc, &got); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpReplyFrame measures what a primary's answer to a read costs
// to encode into its peer frame (header, OpReply, the session): a
// session of one 1 KiB attribute as a put makes it, and the same with the
// eight request records a session written eight times holds.
func BenchmarkOpReplyFrame(b *testing.B) {
	sess := &Session{ID: "0123456789abcdefghij", Principal: "alice", Version: 1,
		Attributes: EncodeAttributes(map[string]msgpack.RawMessage{"cart": kibValue()}),
		Created:    time.Unix(1_700_000_000, 1), LastAccess: time.Unix(1_700_000_001, 2), IdleTimeout: 30 * time.Minute,
		Stamp: 1_700_000_000_000_000_000, Writer: "tandem-1", Recent: []Applied{{Request: NewRequestID(), Version: 1, Hash: 1 << 60, At: 1_700_000_000_000_000_000}}}
	written := *sess
	written.Version = 8
	for i := range 7 {
		written.Recent = append(written.Recent, Applied{Request: NewRequestID(), Version: uint64(i + 2), Hash: 1 << 60, At: 1_700_000_000_000_000_000})
	}
	for _, c := range []struct {
		name string
		s    *Session
	}{{"put", sess}, {"eight-records", &written}} {
		b.Run(c.name, func(b *testing.B) {
			h := peer.Header{ID: 123_456, Kind: peer.KindResponse}
			b.ReportAllocs()
			for b.Loop() {
				if err := peer.WriteFrame(io.Discard, h, OpReply{Session: c.s}, 16<<20); err != nil {
					b.Fatal(err)
				}
			}
		})
		// What the same reply would cost were the copy stored as its
		// encoded bytes (copied into the frame whole), and how many bytes
		// that encoding holds beyond the attributes, which a copy would
		// hold besides its struct.
		b.Run(c.name+"/from-stored-bytes", func(b *testing.B) {
			h := peer.Header{ID: 123_456, Kind: peer.KindResponse}
			stored := storedReply(c.s.AppendMsgpack(nil))
			b.ReportAllocs()
			for b.Loop() {
				if err := peer.WriteFrame(io.Discard, h, stored, 16<<20); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(stored)-len(c.s.Attributes)), "B-beyond-attributes")
		})
	}
}

// BenchmarkReplicateFrame measures what a primary's replicated write
// costs to encode into its peer frame: a 1 KiB session with eight
// request records, and two confirmations riding on it.
func BenchmarkReplicateFrame(b *testing.B) {
	s := &Session{ID: "0123456789abcdefghij", Principal: "alice", Version: 8,
		Attributes: EncodeAttributes(map[string]msgpack.RawMessage{"cart": kibValue()}),
		Created:    time.Unix(1_700_000_000, 1), LastAccess: time.Unix(1_700_000_001, 2), IdleTimeout: 30 * time.Minute,
		Stamp: 1_700_000_000_000_000_000, Writer: "tandem-1"}
	for i := range 8 {
		s.Recent = append(s.Recent, Applied{Request: NewRequestID(), Version: uint64(i + 1), Hash: 1 << 60, At: 1_700_000_000_000_000_000})
	}
	req := replicateRequest{From: "tandem-1", Epoch: 12, Partition: 200, Session: s, Confirmed: []confirmItem{
		{Partition: 17, ID: "abcdefghij0123456789", Mark: copyMark{Version: 3, Stamp: 1_700_000_000_000_000_000, Writer: "tandem-1"}},
		{Partition: 250, ID: "klmnopqrst0123456789", Mark: copyMark{Version: 9, Stamp: 1_700_000_000_000_000_000, Writer: "tandem-1"}}}}
	h := peer.Header{ID: 123_456, Kind: peer.KindRequest, Method: methodReplicate}
	b.ReportAllocs()
	for b.Loop() {
		if err := peer.WriteFrame(io.Discard, h, req, 16<<20); err != nil {
			b.Fatal(err)
		}
	}
}

// storedReply is an OpReply whose session is held as its encoded bytes.
type storedReply []byte

func (r storedReply) AppendMsgpack(b []byte) []byte {
	return append(append(b, 0x81, 0xa1, 's'), r...)
}
