package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Go's transport sends a request with an Idempotency-Key again, on a new
// connection, when the connection it reused breaks before the answer; the
// error it returns is then the new dial's. A node that read the first
// attempt may have carried it out, so the write is indeterminate, never
// unsent. CHAOS.md F17: a conditional put recorded as unsent (a refused
// dial, the node restarting) had been carried out, and the checker found
// a version no write it knew of explained.
func TestARequestWrittenBeforeAFailedRedialIsNotUnsent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var carriedOut atomic.Int32
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		// The first request is answered, and its connection kept.
		req, err := http.ReadRequest(r)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		_, _ = io.WriteString(conn, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
		// The second is read whole, carried out, and its connection
		// dropped before the answer, as a node killed then would; the
		// node's port refuses connections from then on.
		req, err = http.ReadRequest(r)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		carriedOut.Add(1)
		ln.Close()
	}()
	nodes := []NodeInfo{{Name: "n1", HTTP: ln.Addr().String()}}
	w := NewWorkload(nodes, NewHistory(), WorkloadConfig{Seed: 1})
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if op := w.do(ctx, 0, Op{Kind: OpGet, Session: sessionID(1, 0, 0)}); op.Outcome != NotFound {
		t.Fatalf("first request: %s (%s); want not-found", op.Outcome, op.Error)
	}
	op := w.do(ctx, 0, Op{Kind: OpPut, Session: sessionID(1, 0, 0), Value: "c0-1", Key: "chaos-1-c0-1"})
	if carriedOut.Load() != 1 {
		t.Fatalf("the put reached the node %d times; want once", carriedOut.Load())
	}
	if op.Outcome != Indeterminate {
		t.Fatalf("a put the node read, then a refused redial: %s (%s); want indeterminate", op.Outcome, op.Error)
	}
}

// A write sent again with its Idempotency-Key is the same request, byte
// for byte: same format, same body. Drawing JSON or msgpack per attempt,
// or writing a nested map in Go's random order, made a retry of the same
// patch look like another request under the key (the long run of
// 2026-11-29: two "request id reused with other content").
func TestARetryIsTheSameRequest(t *testing.T) {
	type attempt struct{ contentType, body string }
	var mu sync.Mutex
	seen := map[string][]attempt{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		key := r.Header.Get("Idempotency-Key")
		mu.Lock()
		seen[key] = append(seen[key], attempt{r.Header.Get("Content-Type"), string(body)})
		mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable) // every answer lost: every write is sent again
	}))
	defer srv.Close()
	nodes := []NodeInfo{{Name: "n1", HTTP: strings.TrimPrefix(srv.URL, "http://")}}
	w := NewWorkload(nodes, NewHistory(), WorkloadConfig{Seed: 5, Msgpack: 0.5})
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ops := 0
	for i := range 16 {
		op := Op{Kind: OpPatch, Session: sessionID(5, 0, 0), Attr: attrAll, Value: fmt.Sprintf("c0-%d", i), Key: fmt.Sprintf("chaos-5-c0-%d", i)}
		if got := w.send(ctx, choice{Retry: [2]int{0, 0}}, op); got.Attempts != maxAttempts {
			t.Fatalf("patch %d: %d attempts, want %d", i, got.Attempts, maxAttempts)
		}
		ops++
	}
	formats := map[string]bool{}
	for key, as := range seen {
		for _, a := range as[1:] {
			if a != as[0] {
				t.Fatalf("%s: attempts differ: %q %q, then %q %q", key, as[0].contentType, as[0].body, a.contentType, a.body)
			}
		}
		formats[as[0].contentType] = true
	}
	if len(seen) != ops || len(formats) != 2 {
		t.Fatalf("%d keys seen for %d patches, formats %v: want every patch, in both formats", len(seen), ops, formats)
	}
}
