package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// serveLimited serves h within lim on a fresh loopback listener, as
// startServer does, until the test ends, and returns its address.
func serveLimited(t *testing.T, lim httpLimits, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := lim.server(h)
	go hs.Serve(lim.listener(ln))
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// readsBody is a handler that reads the whole body, as the API does.
var readsBody = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if _, err := io.ReadAll(r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
})

// closedWithin reads nc until the server closes it, and reports how long
// that took, failing the test if it is still open after limit.
func closedWithin(t *testing.T, nc net.Conn, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	nc.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open %v after it stalled", limit)
	}
	return time.Since(start)
}

// Clients that send their headers and part of a body, then stall, lose
// their connections when the read timeout runs out; so do clients that
// stall in their headers. Real sockets, real timeouts.
func TestStalledRequestsLoseTheirConnections(t *testing.T) {
	lim := defaultHTTPLimits()
	lim.ReadHeaderTimeout, lim.ReadTimeout = 500*time.Millisecond, time.Second
	addr := serveLimited(t, lim, readsBody)
	const conns = 20
	stalled := func(partial string) []net.Conn {
		var ncs []net.Conn
		for range conns {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { nc.Close() })
			if _, err := io.WriteString(nc, partial); err != nil {
				t.Fatal(err)
			}
			ncs = append(ncs, nc)
		}
		return ncs
	}
	for _, tc := range []struct {
		name, partial string
		timeout       time.Duration
	}{
		{"stalled body", "PUT /v1/sessions/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n0123456789", lim.ReadTimeout},
		{"stalled headers", "PUT /v1/sessions/x HTTP/1.1\r\nHost: a\r\nContent-Le", lim.ReadHeaderTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			ncs := stalled(tc.partial)
			// Closed within the timeout, give or take scheduling on a
			// busy machine; never long after it (25s before the limits).
			for _, nc := range ncs {
				if took := closedWithin(t, nc, start, tc.timeout+2*time.Second); took < tc.timeout/2 {
					t.Fatalf("closed after %v, before the %v timeout", took, tc.timeout)
				}
			}
		})
	}
}

// Headers past MaxHeaderBytes get 431; the connections a listener holds
// are capped, and a slot frees when one closes.
func TestHeaderAndConnectionLimits(t *testing.T) {
	lim := defaultHTTPLimits()
	lim.MaxConns = 2
	addr := serveLimited(t, lim, readsBody)

	// request sends one request on nc and reads the status, waiting up to wait.
	request := func(nc net.Conn, header string, wait time.Duration) (int, error) {
		if _, err := fmt.Fprintf(nc, "PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n%s\r\nhi", header); err != nil {
			return 0, err
		}
		nc.SetReadDeadline(time.Now().Add(wait))
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	dial := func() net.Conn {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return nc
	}

	big := dial()
	if status, err := request(big, "X-Big: "+strings.Repeat("x", lim.MaxHeaderBytes+4096)+"\r\n", 5*time.Second); err != nil || status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("%d-byte header: %d %v, want 431", lim.MaxHeaderBytes+4096, status, err)
	}
	big.Close()

	first, second, third := dial(), dial(), dial()
	for i, nc := range []net.Conn{first, second} {
		if status, err := request(nc, "", 5*time.Second); err != nil || status != http.StatusNoContent {
			t.Fatalf("connection %d: %d %v", i+1, status, err)
		}
	}
	var ne net.Error
	if _, err := request(third, "", 300*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("a third connection was served past the cap of 2: %v", err)
	}
	first.Close()
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(third), nil)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("third connection once the first closed: %v %v", resp, err)
	}
	resp.Body.Close()
}

// vmRSS reads a process's resident memory, in bytes, from /proc.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// Against a real `tandem serve`: the five bytes that used to take a node
// down (a msgpack map header claiming 4·10⁹ entries) and a 2 KB JSON
// attribute nested 1,100 deep get 400, the process stays up, its resident
// memory stays flat and the session is unchanged.
func TestHostileBodiesAgainstARealNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	p := startProc(t, "hostile-1", "")
	waitFor(t, 20*time.Second, "the node to be ready", func() bool { return len(ringOf(p)) == 1 })
	url := "http://" + p.http + "/v1/sessions/hostile-session-00000001"
	if _, err := do("PUT", url, `{"principal":"erin","attributes":{"k":"v"}}`, nil); err != nil {
		t.Fatal(err)
	}
	send := func(body, contentType string) (int, string) {
		req, err := http.NewRequest("PATCH", url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatalf("the node did not answer: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deep := `{"a":` + strings.Repeat("[", 1100) + strings.Repeat("]", 1100) + `}`
	before := vmRSS(t, p.cmd.Process.Pid)
	for range 20 {
		if status, body := send("\xdf\xff\xff\xff\xff", "application/msgpack"); status != 400 || !strings.Contains(body, `"code":"invalid_body"`) {
			t.Fatalf("five-byte msgpack body: %d %s, want 400", status, body)
		}
		if status, body := send(deep, "application/merge-patch+json"); status != 400 || !strings.Contains(body, `"code":"invalid_body"`) {
			t.Fatalf("JSON nested 1,100 deep: %d %s, want 400", status, body)
		}
	}
	after := vmRSS(t, p.cmd.Process.Pid)
	t.Logf("resident memory %d KiB before, %d KiB after", before>>10, after>>10)
	if after-before > 20<<20 {
		t.Fatalf("resident memory grew by %d MiB", (after-before)>>20)
	}
	if status, err := do("GET", "http://"+p.http+"/livez", "", nil); status != 200 || err != nil {
		t.Fatalf("/livez after: %d %v", status, err)
	}
	var s sessionAnswer
	if _, err := do("GET", url, "", &s); err != nil || s.Version != 1 || s.Attributes["k"] != "v" {
		t.Fatalf("session after: %+v %v, want v1 unchanged", s, err)
	}
}
