package peer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// allocated returns how many bytes f allocated on the heap, by the
// runtime's cumulative count (MemStats.TotalAlloc), which garbage
// collection does not lower. The count is process-wide, so another
// goroutine allocating meanwhile (a test's server winding down) adds to
// it; f is deterministic and runs allocatedRuns times, and the least
// count is f's own. Bounds built on it still carry a constant slack.
func allocated(f func()) uint64 {
	least := uint64(math.MaxUint64)
	for range allocatedRuns {
		least = min(least, allocatedOnce(f))
	}
	return least
}

// allocatedOnce returns how many bytes the process allocated while f ran
// once, for an f that cannot run twice.
func allocatedOnce(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// allocatedRuns is how many times allocated measures f.
const allocatedRuns = 3

// nested returns a value nested depth containers deep: depth one-element
// arrays around nil (depth 0 is nil itself).
func nested(depth int) []byte {
	return append(bytes.Repeat([]byte{0x91}, depth), 0xc0)
}

func TestCheckValue(t *testing.T) {
	ok := [][]byte{
		{0xc0}, mustMarshal(t, map[string]any{"a": []any{1, "x", nil}}), nested(5),
		append(bytes.Repeat([]byte{0x91}, 4), 0x90), // the empty array is the fifth level
	}
	for _, b := range ok {
		if err := CheckValue(b, 5); err != nil {
			t.Errorf("CheckValue(%x, 5) = %v, want nil", b, err)
		}
	}
	bad := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "unexpected EOF"},
		{"too deep", nested(6), "nesting deeper than 5"},
		{"empty container too deep", append(bytes.Repeat([]byte{0x91}, 5), 0x80), "nesting deeper than 5"},
		{"map claims 4e9 entries", []byte{0xdf, 0xff, 0xff, 0xff, 0xff}, "unexpected EOF"},
		{"array claims 4e9 elements", []byte{0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0}, "unexpected EOF"},
		{"string claims 4 GiB", []byte{0xdb, 0xff, 0xff, 0xff, 0xff, 'x'}, "unexpected EOF"},
		{"two values", []byte{0xc0, 0xc0}, "1 bytes after the value"},
		{"reserved code", []byte{0xc1}, "invalid msgpack code"},
	}
	for _, tc := range bad {
		err := CheckValue(tc.b, 5)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: CheckValue(%x) = %v, want an error with %q", tc.name, tc.b, err, tc.want)
		}
	}
}

func TestCheckValueAllocatesNothingForHostileLengths(t *testing.T) {
	for _, b := range [][]byte{{0xdf, 0xff, 0xff, 0xff, 0xff}, {0xdd, 0xff, 0xff, 0xff, 0xff}, nested(1 << 16)} {
		if n := allocated(func() { _ = CheckValue(b, MaxValueDepth) }); n > 64<<10 {
			t.Errorf("CheckValue(%.10x...) allocated %d bytes", b, n)
		}
	}
}

// TestMaxValueDepthFitsEveryFrame: a value MaxValueDepth deep fits in the
// deepest frame the wire wraps it in (ValueWrap containers), one level
// deeper does not.
func TestMaxValueDepthFitsEveryFrame(t *testing.T) {
	header := mustMarshal(t, &Header{ID: 1, Kind: KindResponse})
	wrap := func(v []byte) []byte {
		// {"s": [{"at": {"a": v}}]}, as a hand-off reply carries it.
		b := []byte{0x81, 0xa1, 's', 0x91, 0x81, 0xa2, 'a', 't', 0x81, 0xa1, 'a'}
		return append(b, v...)
	}
	if err := CheckValue(nested(MaxValueDepth), MaxValueDepth); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadFrame(bytes.NewReader(rawFrame(header, wrap(nested(MaxValueDepth)))), testMaxFrame); err != nil {
		t.Fatalf("a value %d deep in a hand-off reply: %v", MaxValueDepth, err)
	}
	if err := CheckValue(nested(MaxValueDepth+1), MaxValueDepth); err == nil {
		t.Fatalf("CheckValue accepted a value %d deep", MaxValueDepth+1)
	}
	if _, _, err := ReadFrame(bytes.NewReader(rawFrame(header, wrap(nested(MaxValueDepth+1)))), testMaxFrame); !errors.Is(err, errMalformed) {
		t.Fatalf("a value %d deep in a hand-off reply: %v, want a malformed frame", MaxValueDepth+1, err)
	}
}

// TestReadFrameAllocatesWhatArrives: a frame claiming 16 MiB of which 10
// bytes arrive costs a chunk, not 16 MiB.
func TestReadFrameAllocatesWhatArrives(t *testing.T) {
	in := append(binary.BigEndian.AppendUint32(nil, 16<<20), make([]byte, 10)...)
	var err error
	n := allocated(func() { _, _, err = ReadFrame(bytes.NewReader(in), 16<<20) })
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v, want unexpected EOF", err)
	}
	if n > 2*payloadChunk {
		t.Fatalf("reading 10 bytes of a claimed 16 MiB frame allocated %d bytes", n)
	}
	// A whole large frame still reads back intact.
	big := strings.Repeat("x", 3<<20)
	var frame bytes.Buffer
	if err := WriteFrame(&frame, Header{ID: 2, Kind: KindRequest, Method: "m"}, big, 16<<20); err != nil {
		t.Fatal(err)
	}
	h, body, err := ReadFrame(&frame, 16<<20)
	var got string
	if err == nil {
		err = msgpack.Unmarshal(body, &got)
	}
	if err != nil || h.ID != 2 || got != big {
		t.Fatalf("3 MiB frame: id %d, %d bytes, %v", h.ID, len(got), err)
	}
}

// TestServerAllocatesWhatArrives: peers that each claim a 16 MiB frame and
// send 10 bytes before hanging up cost the server about nothing.
func TestServerAllocatesWhatArrives(t *testing.T) {
	ts := startServer(t, testHandler, ServerConfig{}, "127.0.0.1:0")
	const conns = 8
	n := allocatedOnce(func() {
		for range conns {
			nc, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			frame := append(binary.BigEndian.AppendUint32(nil, 16<<20), make([]byte, 10)...)
			if _, err := nc.Write(frame); err != nil {
				t.Fatal(err)
			}
			nc.(*net.TCPConn).CloseWrite() // the server reads 10 bytes, then EOF
			defer nc.Close()
		}
		eventually(t, 10*time.Second, "the server to drop the connections", func() bool {
			ts.mu.Lock()
			defer ts.mu.Unlock()
			return ts.ln.accepts.Load() == conns && len(ts.conns) == 0
		})
	})
	if n > conns*(1<<20) {
		t.Fatalf("%d truncated 16 MiB frames cost the server %d bytes", conns, n)
	}
}

func TestServerCapsConnectionsPerListener(t *testing.T) {
	ts := startServer(t, testHandler, ServerConfig{MaxConns: 2}, "127.0.0.1:0")
	// call sends one echo request on nc and waits up to wait for the answer.
	call := func(nc net.Conn, id uint64, wait time.Duration) error {
		if err := WriteFrame(nc, Header{ID: id, Kind: KindRequest, Method: "echo"}, "hi", testMaxFrame); err != nil {
			return err
		}
		nc.SetReadDeadline(time.Now().Add(wait))
		_, _, err := ReadFrame(nc, testMaxFrame)
		return err
	}
	var ncs []net.Conn
	for i := range 3 {
		nc, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		ncs = append(ncs, nc)
		if i < 2 {
			if err := call(nc, 1, 5*time.Second); err != nil {
				t.Fatalf("connection %d: %v", i+1, err)
			}
		}
	}
	// The third waits in the backlog: no answer while two are open.
	var ne net.Error
	if err := call(ncs[2], 1, 300*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("third connection answered past the cap of 2: %v", err)
	}
	ncs[0].Close()
	// Its request was sent; once a slot frees the server reads and answers it.
	ncs[2].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ReadFrame(ncs[2], testMaxFrame); err != nil {
		t.Fatalf("third connection after the first closed: %v", err)
	}
}
