package main

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/tandem-io/tandem/cmd/internal/material"
)

// chromium returns the headless browser the end-to-end suite drives, or
// skips the test outside it. CI installs it (.ci/run); with TANDEM_E2E=1
// a missing browser fails the test, as a missing balancer does.
func chromium(t *testing.T) string {
	t.Helper()
	if os.Getenv("TANDEM_E2E") != "1" {
		t.Skip("the browser test runs with TANDEM_E2E=1")
	}
	for _, path := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if _, err := os.Stat(path); err == nil {
			return path
		}
	}
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is required for the end-to-end suite (apt-get install chromium): %v", err)
	}
	return path
}

// spkiHash is the base64 SHA-256 of a PEM certificate's public key, as
// Chromium's --ignore-certificate-errors-spki-list takes it: the browser
// trusts exactly that key, not every certificate.
func spkiHash(t *testing.T, certFile string) string {
	t.Helper()
	raw, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		t.Fatalf("%s: no PEM certificate", certFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// The status page in a real browser: three `tandem serve` processes with
// the cluster's material (HTTPS, tokens), headless Chromium opening / on
// one of them with the admin token as a browser sends it after the Basic
// challenge (the password of Basic auth). The page draws the ring as an
// SVG of 271 partitions, lists the three members, applies its inline
// style under its Content-Security-Policy, and runs no script. The
// screenshot goes to $TANDEM_E2E_ARTIFACTS (default $TMPDIR/tandem-e2e)
// and, with TANDEM_UPDATE_SCREENSHOT=1, to docs/status-page.png.
func TestStatusPageInBrowser(t *testing.T) {
	browser := chromium(t)
	dir := t.TempDir()
	names := []string{"tandem-1", "tandem-2", "tandem-3"}
	if err := material.Write(dir, material.Options{Nodes: names}); err != nil {
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
	var procs []*secureProc
	for i, name := range names {
		join := ""
		if i > 0 {
			join = procs[0].gossip
		}
		procs = append(procs, startSecureProc(t, dir, name, join))
	}
	c := secureClient(t, dir)
	first := "https://" + procs[0].http
	waitFor(t, 60*time.Second, "three ready members in one ring", func() bool {
		for _, p := range procs {
			if status, _ := call(t, c, http.MethodGet, "https://"+p.http+"/readyz", "", ""); status != http.StatusOK {
				return false
			}
		}
		status, body := call(t, c, http.MethodGet, first+"/v1/cluster", admin, "")
		return status == http.StatusOK && strings.Count(body, `"health":"alive"`) == 3 && strings.Count(body, `"primary":`) == 3
	})
	for i := range 60 {
		url := fmt.Sprintf("https://%s/v1/sessions/status-page-session-%03d", procs[i%3].http, i)
		waitFor(t, 10*time.Second, "a write", func() bool {
			status, _ := call(t, c, http.MethodPut, url, sessions, `{"principal":"alice","attributes":{"cart":["tea"]}}`)
			return status == http.StatusCreated || status == http.StatusOK // 200: a retry after a create that was applied
		})
	}

	// A fresh browser: its own profile, nothing from the network but the
	// node, and trust in the first node's certificate key only.
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(browser),
		chromedp.Headless,
		chromedp.NoSandbox, // root on this machine and in CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", spkiHash(t, material.CertFile(dir, names[0]))),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("operator:"+admin))
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("start the browser (%s): %v", browser, err)
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Authorization": basic}}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 1000)); err != nil {
		t.Fatal(err)
	}
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(first+"/"))
	if err != nil {
		t.Fatalf("open %s/: %v", first, err)
	}
	if resp.Status != http.StatusOK {
		t.Fatalf("GET / in the browser: %d %s", resp.Status, resp.StatusText)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#ring`))); err != nil {
		t.Fatalf("wait for the ring: %v", err)
	}

	// What the browser made of it (read through DevTools, not by the page,
	// which runs no script).
	type seen struct {
		Primaries, Buddies, Scripts int
		Members, Legend             []string
		Refresh, HeaderBackground   string
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[seen](`({
		Primaries: document.querySelectorAll('#ring path.primary').length,
		Buddies: document.querySelectorAll('#ring path.buddy').length,
		Scripts: document.scripts.length,
		Members: [...document.querySelectorAll('#members tr.member td.name')].map(td => td.textContent.trim()),
		Legend: [...document.querySelectorAll('#legend tbody tr')].map(tr => tr.textContent.trim()),
		Refresh: document.querySelector('meta[http-equiv="refresh"]').content,
		HeaderBackground: getComputedStyle(document.querySelector('header')).backgroundColor,
	})`))
	if err != nil {
		t.Fatal(err)
	}
	if got.Primaries != 271 || got.Buddies != 271 {
		t.Errorf("the SVG draws %d primary and %d buddy arcs, want 271 each", got.Primaries, got.Buddies)
	}
	for _, name := range names {
		if !slices.ContainsFunc(got.Members, func(s string) bool { return strings.HasPrefix(s, name) }) {
			t.Errorf("member %s not listed: %q", name, got.Members)
		}
	}
	if len(got.Members) != 3 || len(got.Legend) != 3 {
		t.Errorf("members %q, legend %q: want 3 of each", got.Members, got.Legend)
	}
	if got.Scripts != 0 || got.Refresh != "2" {
		t.Errorf("%d scripts, refresh %q", got.Scripts, got.Refresh)
	}
	if got.HeaderBackground != "rgb(35, 48, 63)" {
		t.Errorf("the inline style was not applied under the CSP: header background %q", got.HeaderBackground)
	}
	csp := ""
	for k, v := range resp.Headers { // HTTP/2 names headers in lower case
		if strings.EqualFold(k, "Content-Security-Policy") {
			csp, _ = v.(string)
		}
	}
	if csp != "default-src 'none'; style-src 'unsafe-inline'; img-src data:" {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	body, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`body`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if !strings.Contains(body, p.http) {
			t.Errorf("the page does not show %s's HTTP address %s", p.name, p.http)
		}
	}

	// The page refreshes itself: kill -9 a member and restart it on its
	// addresses, and the open page (never navigated again) shows the ring
	// changes, then three alive members again.
	type state struct {
		Removed, Added []string // the newest ring change's
		Alive          int
		Ready          bool
	}
	read := func() (state, error) {
		return chromedp.Run(ctx, chromedp.Evaluate[state](`(() => {
			const row = document.querySelector('#events tbody tr');
			const names = i => row && row.cells.length > 3 ? row.cells[i].textContent.split(', ').filter(s => s) : [];
			return {
				Removed: names(3), Added: names(2),
				Alive: document.querySelectorAll('#members .badge.ok').length,
				Ready: !!document.querySelector('header .badge.ok'),
			};
		})()`))
	}
	waitPage := func(what string, cond func(state) bool) {
		t.Helper()
		var last state
		var lastErr error
		deadline := time.Now().Add(45 * time.Second)
		for time.Now().Before(deadline) {
			s, err := read() // fails while the page reloads
			if err == nil && cond(s) {
				return
			}
			last, lastErr = s, err
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("the open page never showed %s: last %+v (%v)", what, last, lastErr)
	}
	old := procs[2]
	_ = old.cmd.Process.Kill()
	_ = old.cmd.Wait()
	waitPage(old.name+" out of the ring", func(s state) bool { return slices.Equal(s.Removed, []string{old.name}) && s.Alive == 2 })
	procs[2] = startSecureProc(t, dir, old.name, procs[0].gossip, "-http", old.http, "-gossip", old.gossip) // the last -http, -gossip win
	procs[2].http, procs[2].gossip = old.http, old.gossip
	waitPage(old.name+" back in the ring", func(s state) bool { return slices.Equal(s.Added, []string{old.name}) && s.Alive == 3 && s.Ready })
	waitFor(t, 60*time.Second, "three ready members again", func() bool {
		for _, p := range procs {
			if status, _ := call(t, c, http.MethodGet, "https://"+p.http+"/readyz", "", ""); status != http.StatusOK {
				return false
			}
		}
		return true
	})
	waitPage("no under-replicated partition", func(state) bool {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('under-replicated').textContent`))
		return err == nil && v == "0"
	})

	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("the screenshot is not a PNG (%d bytes)", len(png))
	}
	out := os.Getenv("TANDEM_E2E_ARTIFACTS")
	if out == "" {
		out = filepath.Join(os.TempDir(), "tandem-e2e")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(out, "status-page.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	if os.Getenv("TANDEM_UPDATE_SCREENSHOT") == "1" {
		docs := filepath.Join("..", "..", "docs", "status-page.png")
		if err := os.WriteFile(docs, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("updated %s", docs)
	}
}
