package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-io/tandem/cmd/internal/material"
)

// secureProc is a `tandem serve -certs-dir` process.
type secureProc struct {
	name, http, gossip, peer string
	cmd                      *exec.Cmd
}

// startSecureProc starts node name with the material in dir, joining join.
func startSecureProc(t *testing.T, dir, name, join string, extra ...string) *secureProc {
	t.Helper()
	p := &secureProc{name: name, http: fmt.Sprintf("127.0.0.1:%d", freePort(t)), gossip: fmt.Sprintf("127.0.0.1:%d", freePort(t)), peer: "127.0.0.1:0"}
	args := append([]string{"serve", "-certs-dir", dir, "-name", name, "-http", p.http, "-gossip", p.gossip, "-peer", p.peer, "-profile", "local", "-log-level", "warn"}, extra...)
	if join != "" {
		args = append(args, "-join", join)
	}
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(os.Environ(), "TANDEM_TEST_AS_COMMAND=1")
	p.cmd.Stderr = &prefixWriter{t: t, prefix: name}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	})
	return p
}

// secureClient is an HTTPS client trusting the cluster CA in dir.
func secureClient(t *testing.T, dir string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(filepath.Join(dir, material.CACertFile))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// call sends a request with an optional bearer token and returns the
// status and body.
func call(t *testing.T, c *http.Client, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Two real nodes started with the material `tandem certs` wrote: the HTTP
// API speaks TLS and wants tokens of the right scope, probes stay open,
// and sessions written through one node read back through the other, over
// mutual TLS and encrypted gossip.
func TestServeWithCertsDir(t *testing.T) {
	dir := t.TempDir()
	if err := material.Write(dir, material.Options{Nodes: []string{"a", "b"}}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, material.TokensFile))
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := material.ParseTokens(raw)
	if err != nil {
		t.Fatal(err)
	}
	sessions, admin := tokens[material.ScopeSessions], tokens[material.ScopeAdmin]
	a := startSecureProc(t, dir, "a", "")
	b := startSecureProc(t, dir, "b", a.gossip)
	c := secureClient(t, dir)
	for _, p := range []*secureProc{a, b} {
		waitFor(t, 30*time.Second, p.name+" ready", func() bool {
			status, _ := call(t, c, http.MethodGet, "https://"+p.http+"/readyz", "", "")
			return status == http.StatusOK
		})
	}
	waitFor(t, 30*time.Second, "both nodes in one ring", func() bool {
		status, body := call(t, c, http.MethodGet, "https://"+a.http+"/v1/cluster", admin, "")
		return status == http.StatusOK && strings.Count(body, `"health":"alive"`) == 2
	})

	id := "secure-session-0001"
	url := "https://" + a.http + "/v1/sessions/" + id
	checks := []struct {
		name, method, url, token string
		want                     int
	}{
		{"no token", http.MethodPut, url, "", http.StatusUnauthorized},
		{"a wrong token", http.MethodPut, url, strings.Repeat("0", 64), http.StatusUnauthorized},
		{"the admin token on sessions", http.MethodPut, url, admin, http.StatusForbidden},
		{"the sessions token on a principal", http.MethodDelete, "https://" + a.http + "/v1/principals/alice/sessions", sessions, http.StatusForbidden},
		{"the sessions token on the cluster view", http.MethodGet, "https://" + a.http + "/v1/cluster", sessions, http.StatusForbidden},
		{"liveness without a token", http.MethodGet, "https://" + a.http + "/livez", "", http.StatusOK},
		{"metrics without a token", http.MethodGet, "https://" + a.http + "/metrics", "", http.StatusOK},
	}
	for _, tc := range checks {
		if status, body := call(t, c, tc.method, tc.url, tc.token, `{"principal":"alice"}`); status != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, status, body, tc.want)
		} else if status >= 400 && !strings.Contains(body, `"code"`) {
			t.Errorf("%s: %d without a JSON error: %s", tc.name, status, body)
		}
	}
	waitFor(t, 10*time.Second, "a write through a", func() bool {
		status, _ := call(t, c, http.MethodPut, url, sessions, `{"principal":"alice","attributes":{"cart":["tea"]}}`)
		return status == http.StatusOK || status == http.StatusCreated
	})
	status, body := call(t, c, http.MethodGet, "https://"+b.http+"/v1/sessions/"+id, sessions, "")
	if status != http.StatusOK || !strings.Contains(body, "tea") {
		t.Fatalf("read through b: %d %s", status, body)
	}
	if status, body := call(t, c, http.MethodDelete, "https://"+b.http+"/v1/principals/alice/sessions", admin, ""); status != http.StatusOK {
		t.Fatalf("log alice out with the admin token: %d %s", status, body)
	}
	// Plain HTTP to a TLS port is refused, not served.
	if status, _ := call(t, httpClient, http.MethodGet, "http://"+a.http+"/v1/sessions/"+id, sessions, ""); status == http.StatusOK {
		t.Fatal("the HTTP API answered plain HTTP")
	}
}

// A node made with another cluster's material (another gossip key, another
// CA) cannot join: Start gives up and the process exits non-zero.
func TestServeRefusesStrangers(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	for _, d := range []string{dir, other} {
		if err := material.Write(d, material.Options{Nodes: []string{"a", "b"}}); err != nil {
			t.Fatal(err)
		}
	}
	a := startSecureProc(t, dir, "a", "")
	c := secureClient(t, dir)
	waitFor(t, 30*time.Second, "a ready", func() bool {
		status, _ := call(t, c, http.MethodGet, "https://"+a.http+"/readyz", "", "")
		return status == http.StatusOK
	})
	// b of the other cluster: its gossip key differs, so it cannot join.
	b := startSecureProc(t, other, "b", a.gossip)
	done := make(chan error, 1)
	go func() { done <- b.cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a node with another gossip key started")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("a node with another gossip key is still trying to join after 60s")
	}
}
