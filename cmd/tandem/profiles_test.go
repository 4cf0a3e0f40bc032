package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// With -pprof a node serves Go's runtime profiles on a listener of its
// own, and never on the HTTP API.
func TestProfilesOnTheirOwnListener(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a process")
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startProc(t, "node-1", "", "-pprof", addr)
	waitFor(t, 20*time.Second, "node-1 to be ready", func() bool { return len(ringOf(p)) == 1 })

	resp, err := httpClient.Get("http://" + addr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "-pprof") {
		t.Fatalf("GET /debug/pprof/cmdline on %s: %d %q; want 200 and the command line", addr, resp.StatusCode, body)
	}
	resp, err = httpClient.Get("http://" + addr + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "heap profile") {
		t.Fatalf("GET /debug/pprof/heap: %d, %.80q; want a heap profile", resp.StatusCode, body)
	}
	if status, _ := do("GET", "http://"+p.http+"/debug/pprof/cmdline", "", nil); status == http.StatusOK {
		t.Fatalf("the HTTP API answered /debug/pprof/cmdline with %d: profiles must stay off the API", status)
	}
}

func TestLoopbackAddr(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:6060": true,
		"127.0.0.2:0":    true,
		"[::1]:6060":     true,
		"localhost:6060": true,
		"0.0.0.0:6060":   false,
		":6060":          false,
		"10.0.0.1:6060":  false,
		"6060":           false,
	} {
		if got := loopbackAddr(addr); got != want {
			t.Errorf("loopbackAddr(%q) = %v, want %v", addr, got, want)
		}
	}
}
