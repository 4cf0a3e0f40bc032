package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// These tests drive the demo shop in a real browser (Debian's chromium,
// headless, through chromedp) behind a real balancer (HAProxy routing on
// the tandem_route cookie, nginx with ip_hash) in front of three demo
// processes: log in, fill the cart, kill -9 the user's instance, carry on,
// bring it back. They run only with TANDEM_E2E=1 (set by .ci/run, which
// installs chromium, haproxy and nginx-light); then a missing program
// fails them. Screenshots before and after each step go to
// $TANDEM_E2E_ARTIFACTS/demo-<balancer>/ (default /tmp/tandem-e2e/...).

func TestBrowserThroughHAProxy(t *testing.T) {
	requireE2E(t)
	haproxy := requireProgram(t, "haproxy")
	browserStory(t, "haproxy", func(ins []*instance) string {
		return startDemoBalancer(t, haproxy, "demo-haproxy.cfg.tmpl", ins, func(cfg string) []string { return []string{"-db", "-f", cfg} })
	})
}

func TestBrowserThroughNginx(t *testing.T) {
	requireE2E(t)
	nginx := requireProgram(t, "nginx")
	browserStory(t, "nginx", func(ins []*instance) string {
		return startDemoBalancer(t, nginx, "demo-nginx.conf.tmpl", ins, func(cfg string) []string {
			return []string{"-e", filepath.Join(filepath.Dir(cfg), "error.log"), "-c", cfg}
		})
	})
}

// requireE2E skips the test unless TANDEM_E2E=1.
func requireE2E(t *testing.T) {
	t.Helper()
	if os.Getenv("TANDEM_E2E") != "1" {
		t.Skip("browser end-to-end test: set TANDEM_E2E=1 (needs chromium, haproxy, nginx)")
	}
}

// requireProgram finds a program on PATH or in the sbin directories, and
// fails the test without it: TANDEM_E2E=1 promises it is installed.
func requireProgram(t *testing.T, name string) string {
	t.Helper()
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return filepath.Join(dir, name)
		}
	}
	t.Fatalf("%s is required with TANDEM_E2E=1 (apt-get install haproxy nginx-light chromium)", name)
	return ""
}

// startDemoBalancer renders a balancer config from testdata for the
// instances, starts the program and returns its URL once it answers.
func startDemoBalancer(t *testing.T, program, tmpl string, ins []*instance, args func(cfg string) []string) string {
	t.Helper()
	type server struct{ Name, Addr string }
	dir := t.TempDir()
	data := struct {
		Listen, Dir string
		Servers     []server
	}{Listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), Dir: dir}
	for _, in := range ins {
		data.Servers = append(data.Servers, server{in.name, strings.TrimPrefix(in.url, "http://")})
	}
	tp, err := template.ParseFiles(filepath.Join("..", "..", "testdata", tmpl))
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, strings.TrimSuffix(tmpl, ".tmpl"))
	f, err := os.Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.Execute(f, data); err != nil {
		t.Fatal(err)
	}
	f.Close()
	cmd := exec.Command(program, args(cfg)...)
	cmd.Stderr = &prefixWriter{t: t, prefix: filepath.Base(program)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	url := "http://" + data.Listen
	waitFor(t, 10*time.Second, filepath.Base(program)+" to answer", func() bool {
		resp, err := probe.Get(url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return url
}

// pageState is what the browser shows of the shop's page.
type pageState struct {
	Status                                  int64
	ServedBy, User, Primary, Buddy, Problem string
	Cart, Alive                             []string
	Route                                   string // the tandem_route cookie
}

// browser is a headless chromium with one tab, and where its screenshots
// go.
type browser struct {
	t     *testing.T
	ctx   context.Context
	base  string // the balancer's URL
	dir   string // screenshots
	steps int
	// loaded is when the latest step's page arrived.
	loaded time.Time
}

// newBrowser starts a fresh headless chromium.
func newBrowser(t *testing.T, base, artifacts string) *browser {
	t.Helper()
	exe := requireProgram(t, "chromium")
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // root on this machine and in CI
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 900),
	)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser; it has no timeout of its own, as
	// that would stop the browser (later actions get one each).
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("start the browser (%s): %v", exe, err)
	}
	if err := os.RemoveAll(artifacts); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots: %s", artifacts)
	return &browser{t: t, ctx: ctx, base: base, dir: artifacts}
}

// artifactsDir returns where a suite keeps its screenshots.
func artifactsDir(suite string) string {
	out := os.Getenv("TANDEM_E2E_ARTIFACTS")
	if out == "" {
		out = filepath.Join(os.TempDir(), "tandem-e2e")
	}
	return filepath.Join(out, suite)
}

// shoot saves a full-page screenshot as NN-name-when.png.
func (b *browser) shoot(name, when string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG; below, JPEG
	if err != nil {
		b.t.Fatalf("screenshot %s %s: %v", name, when, err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		b.t.Fatalf("screenshot %s %s is not a PNG (%d bytes)", name, when, len(png))
	}
	file := filepath.Join(b.dir, fmt.Sprintf("%02d-%s-%s.png", b.steps, name, when))
	if err := os.WriteFile(file, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// step runs one user action that loads a page, with screenshots before
// and after, and returns the page it led to.
func (b *browser) step(name string, actions ...chromedp.Action[chromedp.Void]) pageState {
	b.t.Helper()
	b.steps++
	if b.steps > 1 {
		b.shoot(name, "before")
	}
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, actions...)
	b.loaded = time.Now()
	if err != nil {
		b.shoot(name, "failed")
		b.t.Fatalf("step %d %s: %v", b.steps, name, err)
	}
	s := b.read()
	s.Status = resp.Status
	b.shoot(name, "after")
	b.t.Logf("step %d %s: %d served by %s, user %q, cart %q, primary %s, buddy %s, alive %q, route %s", b.steps, name, s.Status, s.ServedBy, s.User, s.Cart, s.Primary, s.Buddy, s.Alive, s.Route)
	return s
}

// read returns what the page shows, and the route cookie.
func (b *browser) read() pageState {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[pageState](`(() => {
		const text = sel => { const e = document.querySelector(sel); return e ? e.textContent.trim() : ''; };
		return {
			ServedBy: text('#served-by'), User: text('#who b'), Primary: text('#primary'), Buddy: text('#buddy'), Problem: text('#problem'),
			Cart: [...document.querySelectorAll('#cart li.item')].map(li => li.firstChild.textContent.trim()),
			Alive: [...document.querySelectorAll('#members li.member')].map(li => li.dataset.name),
		};
	})()`))
	if err != nil {
		b.t.Fatalf("read the page: %v", err)
	}
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.base + "/"}})
	if err != nil {
		b.t.Fatalf("read the cookies: %v", err)
	}
	for _, c := range cookies.Cookies {
		if c.Name == "tandem_route" {
			s.Route = c.Value
		}
	}
	return s
}

// open loads the shop's page.
func (b *browser) open() pageState { return b.step("open", navigate(b.base+"/")) }

// reload reloads the page, as the user's F5.
func (b *browser) reload(name string) pageState {
	return b.step(name, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, page.Reload, page.ReloadParams{})
		return err
	}))
}

// navigate sends Page.navigate without waiting (RunResponse waits).
func navigate(url string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		res, err := cdp.Call(ctx, t, page.Navigate, page.NavigateParams{URL: url})
		if err == nil && res.ErrorText != "" {
			err = fmt.Errorf("navigate to %s: %s", url, res.ErrorText)
		}
		return err
	})
}

// fill types into a form's field and presses its button.
func (b *browser) fill(name, form, field, value string) pageState {
	return b.step(name,
		chromedp.SendKeys(chromedp.CSS(form+` input[name="`+field+`"]`), value),
		chromedp.Click(chromedp.CSS(form+` button`)),
	)
}

// expect fails the test unless the page is a 200 showing the user and
// the cart.
func (b *browser) expect(s pageState, user string, cart ...string) {
	b.t.Helper()
	if s.Status != 200 || s.User != user || !slices.Equal(s.Cart, cart) || s.Problem != "" {
		b.t.Fatalf("step %d: page %d for user %q cart %q (problem %q), want 200 for %q cart %q", b.steps, s.Status, s.User, s.Cart, s.Problem, user, cart)
	}
}

// browserStory is the seeds' story in a browser behind a balancer: log
// in, add items, kill -9 the user's instance, reload (still logged in,
// whole cart), add an item while it is down, restart it, and once the
// balancer sends the browser back to it, the latest cart there.
func browserStory(t *testing.T, balancer string, start func([]*instance) string) {
	a := startInstance(t, "a", "")
	waitFor(t, 20*time.Second, "a to be ready", a.ready)
	ins := []*instance{a, startInstance(t, "b", a.gossip), startInstance(t, "c", a.gossip)}
	for _, in := range ins {
		waitFor(t, 30*time.Second, in.name+" to see a ready ring of three", func() bool { return len(in.ring()) == 3 })
	}
	byName := map[string]*instance{}
	for _, in := range ins {
		byName[in.name] = in
	}
	b := newBrowser(t, start(ins), artifactsDir("demo-"+balancer))
	t.Logf("%s at %s in front of a %s, b %s, c %s", balancer, b.base, a.url, ins[1].url, ins[2].url)

	s := b.open()
	if s.Status != 200 || s.User != "" || len(s.Alive) != 3 {
		t.Fatalf("first page: %+v", s)
	}
	s = b.fill("login", `form[action="/login"]`, "user", "alice")
	b.expect(s, "alice")
	s = b.fill("add-tea", `form[action="/cart"]`, "item", "tea")
	b.expect(s, "alice", "tea")
	s = b.fill("add-milk", `form[action="/cart"]`, "item", "milk")
	b.expect(s, "alice", "tea", "milk")
	if s.Primary == "" || s.Buddy == "" || s.Primary == s.Buddy || !slices.Equal(s.Alive, []string{"a", "b", "c"}) {
		t.Fatalf("the page does not show where the session lives: %+v", s)
	}
	if s.Route != s.Primary {
		t.Fatalf("route cookie %q, primary %q", s.Route, s.Primary)
	}
	before := s

	// The instance to kill: for HAProxy the one the cookie names (and
	// HAProxy sends the browser to it); for nginx the one ip_hash sends
	// the browser to.
	victimName := s.ServedBy
	if balancer == "haproxy" {
		victimName = s.Route
		if s.ServedBy != s.Route {
			t.Fatalf("HAProxy served the page from %s, the route cookie names %s", s.ServedBy, s.Route)
		}
	}
	victim := byName[victimName]
	if victim == nil {
		t.Fatalf("no instance named %q", victimName)
	}
	var others []*instance
	for _, in := range ins {
		if in != victim {
			others = append(others, in)
		}
	}

	b.steps++
	b.shoot("kill-"+victim.name, "before")
	killed := time.Now()
	victim.kill9(t)
	t.Logf("killed %s (kill -9)", victim.name)
	s = b.reload("reload-after-kill")
	t.Logf("first page after the kill: %v after it", b.loaded.Sub(killed).Round(time.Millisecond))
	b.expect(s, "alice", "tea", "milk")
	if s.ServedBy == victim.name {
		t.Fatalf("served by the killed instance %s", victim.name)
	}

	// While it is down: once the others have taken it out of their ring,
	// the user adds an item.
	for _, in := range others {
		waitFor(t, 30*time.Second, in.name+" to drop "+victim.name+" from its ring", func() bool { return len(in.ring()) == 2 })
	}
	s = b.fill("add-bread-while-"+victim.name+"-is-down", `form[action="/cart"]`, "item", "bread")
	b.expect(s, "alice", "tea", "milk", "bread")
	if s.ServedBy == victim.name || s.Primary == victim.name || s.Buddy == victim.name {
		t.Fatalf("page names the dead instance %s: %+v", victim.name, s)
	}
	if balancer == "haproxy" && s.Route != s.Primary {
		t.Fatalf("route cookie %q after the failover, primary %q", s.Route, s.Primary)
	}
	for deadline := time.Now().Add(30 * time.Second); slices.Contains(s.Alive, victim.name); {
		if time.Now().After(deadline) {
			t.Fatalf("the page still lists %s alive 30s after the kill: %q", victim.name, s.Alive)
		}
		time.Sleep(500 * time.Millisecond)
		s = b.reload("reload-until-" + victim.name + "-is-dead")
		b.expect(s, "alice", "tea", "milk", "bread")
	}

	// It returns, under its name on its addresses; the balancer sends the
	// browser back to it once it is up (HAProxy: ready, and the route
	// cookie names it again; nginx: after fail_timeout).
	b.steps++
	b.shoot("restart-"+victim.name, "before")
	victim.start(t, others[0].gossip)
	waitFor(t, 30*time.Second, victim.name+" to be ready again", victim.ready)
	b.shoot("restart-"+victim.name, "after")
	for deadline, n := time.Now().Add(60*time.Second), 0; s.ServedBy != victim.name; n++ {
		if time.Now().After(deadline) {
			t.Fatalf("the balancer never sent the browser back to %s within 60s (%d reloads; last page %+v)", victim.name, n, s)
		}
		time.Sleep(500 * time.Millisecond)
		s = b.reload("reload-until-back-on-" + victim.name)
		b.expect(s, "alice", "tea", "milk", "bread")
	}
	// The ring is the one before the kill: the returned instance holds
	// the session in the role it had.
	if s.Primary != before.Primary || s.Buddy != before.Buddy || !slices.Equal(s.Alive, []string{"a", "b", "c"}) {
		t.Fatalf("back on %s: primary %s, buddy %s, alive %q; before the kill primary %s, buddy %s", victim.name, s.Primary, s.Buddy, s.Alive, before.Primary, before.Buddy)
	}
	if balancer == "haproxy" && s.Route != victim.name {
		t.Fatalf("back on %s with the route cookie naming %q", victim.name, s.Route)
	}
	s = b.fill("add-jam-back-on-"+victim.name, `form[action="/cart"]`, "item", "jam")
	b.expect(s, "alice", "tea", "milk", "bread", "jam")
	if s.ServedBy != victim.name {
		t.Fatalf("the write after the return was served by %s, not %s", s.ServedBy, victim.name)
	}
	t.Logf("screenshots of %d steps in %s", b.steps, b.dir)
}
