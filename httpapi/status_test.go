package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/httpapi"
)

// basicHeader returns the header pair for HTTP Basic auth.
func basicHeader(user, password string) []string {
	return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))}
}

// The status page at / renders one node's view of a 3-node cluster: every
// member with its addresses, the ring as an SVG of 271 arcs by primary and
// 271 by buddy, a legend whose counts add up, the sessions held and the
// ring changes. It needs the admin token, as a bearer or as the Basic auth
// password a browser sends after a Basic challenge; /<anything else> stays
// a JSON 404.
func TestStatusPage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, 3, func(i int, cfg *tandem.Config) {
		cfg.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", 17170+i) // advertised only: nothing listens
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, n := range nodes {
			n.Kill()
		}
	}()
	const sessions, admin = "sessions-token-0123456789", "admin-token-0123456789abc"
	srv := httptest.NewServer(httpapi.New(nodes[0], httpapi.Config{Tokens: []httpapi.Token{
		{Scope: httpapi.ScopeSessions, Value: sessions},
		{Scope: httpapi.ScopeAdmin, Value: admin},
	}}))
	defer srv.Close()
	for i := range 20 {
		if _, err := nodes[0].Put(ctx, fmt.Sprintf("status-page-session-%02d", i), "alice", nil); err != nil {
			t.Fatal(err)
		}
	}

	// Who may see it.
	status, h, body := call(t, http.MethodGet, srv.URL+"/", "")
	if status != http.StatusUnauthorized || h.Get("WWW-Authenticate") != `Basic realm="tandem"` {
		t.Fatalf("no credentials: %d %q %s, want 401 with a Basic challenge", status, h.Get("WWW-Authenticate"), body)
	}
	if strings.Contains(string(body), "node-2") {
		t.Fatalf("the 401 shows the cluster: %s", body)
	}
	for _, tc := range []struct {
		name   string
		header []string
		want   int
	}{
		{"basic with the admin token", basicHeader("anyone", admin), http.StatusOK},
		{"basic with the admin token and no user", basicHeader("", admin), http.StatusOK},
		{"bearer admin token", authHeader(admin), http.StatusOK},
		{"basic with the sessions token", basicHeader("ops", sessions), http.StatusForbidden},
		{"bearer sessions token", authHeader(sessions), http.StatusForbidden},
		{"basic with a wrong password", basicHeader("ops", "not-a-token-of-this-node"), http.StatusUnauthorized},
		{"basic with the token as user name", basicHeader(admin, ""), http.StatusUnauthorized},
	} {
		status, h, body := call(t, http.MethodGet, srv.URL+"/", "", tc.header...)
		if status != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, status, body, tc.want)
		}
		if status == http.StatusUnauthorized && h.Get("WWW-Authenticate") != `Basic realm="tandem"` {
			t.Errorf("%s: 401 with challenge %q", tc.name, h.Get("WWW-Authenticate"))
		}
	}
	// Basic auth is for the page only.
	if status, _, body := call(t, http.MethodGet, srv.URL+"/v1/cluster", "", basicHeader("ops", admin)...); status != http.StatusUnauthorized {
		t.Errorf("/v1/cluster with Basic auth: %d %s, want 401", status, body)
	}
	// Exactly "/": anything else is still a JSON 404, and / takes GET and HEAD only.
	for _, path := range []string{"/index.html", "/status", "/v2/"} {
		status, h, _ := call(t, http.MethodGet, srv.URL+path, "", basicHeader("ops", admin)...)
		if status != http.StatusNotFound || h.Get("Content-Type") != "application/json" {
			t.Errorf("GET %s: %d %s, want a JSON 404", path, status, h.Get("Content-Type"))
		}
	}
	if status, h, _ := call(t, http.MethodPost, srv.URL+"/", "", basicHeader("ops", admin)...); status != http.StatusMethodNotAllowed || h.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d, Allow %q", status, h.Get("Allow"))
	}

	// What it shows.
	status, h, page := call(t, http.MethodGet, srv.URL+"/", "", basicHeader("ops", admin)...)
	if status != http.StatusOK {
		t.Fatalf("GET /: %d %s", status, page)
	}
	if ct := h.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if csp := h.Get("Content-Security-Policy"); csp != "default-src 'none'; style-src 'unsafe-inline'; img-src data:" {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", h)
	}
	html := string(page)
	for _, want := range []string{`<meta http-equiv="refresh" content="2">`, "<svg", "</svg>", "</html>", "first ring: node-1"} {
		if !strings.Contains(html, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// The others joined after node-1's first ring, or were in it already
	// (on a loaded machine node-1 may form its ring late).
	for _, name := range []string{"node-2", "node-3"} {
		if !strings.Contains(html, name+" joined") && !regexp.MustCompile(`first ring: [^<]*`+name).MatchString(html) {
			t.Errorf("the page shows neither %s joining nor in the first ring", name)
		}
	}
	if strings.Contains(strings.ToLower(html), "<script") {
		t.Errorf("the page has a script")
	}
	for _, m := range nodes[0].Status().Members {
		for _, want := range []string{m.Name, m.Gossip, m.Meta.Peer, m.Meta.HTTP} {
			if want == "" || !strings.Contains(html, want) {
				t.Errorf("the page lacks member %s's %q", m.Name, want)
			}
		}
	}
	if got := len(nodes[0].Status().Members); got != 3 {
		t.Fatalf("%d members", got)
	}
	for _, role := range []string{"primary", "buddy"} {
		arcs := regexp.MustCompile(`<path class="`+role+`" data-partition="(\d+)" d="M[-0-9. A-Z]+Z" fill="#[0-9a-f]{6}">`).FindAllStringSubmatch(html, -1)
		seen := map[string]bool{}
		for _, a := range arcs {
			seen[a[1]] = true
		}
		if len(arcs) != 271 || len(seen) != 271 {
			t.Errorf("%d %s arcs for %d partitions, want 271", len(arcs), role, len(seen))
		}
	}
	// The legend counts each role's 271 partitions once, as the ring does.
	var st struct {
		Partitions map[string]struct{ Primary, Buddy int } `json:"partitions"`
	}
	_, _, b := call(t, http.MethodGet, srv.URL+"/v1/cluster", "", authHeader(admin)...)
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	legend := regexp.MustCompile(`(node-\d)(?: <span class="muted">\(this node\)</span>)?</td><td class="num">(\d+)</td><td class="num">(\d+)</td>`).FindAllStringSubmatch(html, -1)
	sumP, sumB := 0, 0
	for _, l := range legend {
		p, _ := strconv.Atoi(l[2])
		bd, _ := strconv.Atoi(l[3])
		sumP, sumB = sumP+p, sumB+bd
		if want := st.Partitions[l[1]]; want.Primary != p || want.Buddy != bd {
			t.Errorf("legend %s: %d primary, %d buddy; /v1/cluster says %+v", l[1], p, bd, want)
		}
	}
	if len(legend) != 3 || sumP != 271 || sumB != 271 {
		t.Errorf("legend %v: %d rows, %d primaries, %d buddies", legend, len(legend), sumP, sumB)
	}
	primary, buddy := nodes[0].Count()
	if primary+buddy == 0 || !strings.Contains(html, fmt.Sprintf(`id="sessions-primary">%d<`, primary)) || !strings.Contains(html, fmt.Sprintf(`id="sessions-buddy">%d<`, buddy)) {
		t.Errorf("the page does not show the %d+%d sessions held", primary, buddy)
	}
	if !strings.Contains(html, `id="under-replicated">0<`) {
		t.Errorf("the page does not show 0 under-replicated partitions")
	}
	if status, _, body := call(t, http.MethodHead, srv.URL+"/", "", basicHeader("ops", admin)...); status != http.StatusOK || len(body) != 0 {
		t.Errorf("HEAD /: %d, %d bytes", status, len(body))
	}

	// A member that goes away shows in the events and in the ring.
	nodes[2].Kill()
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, page = call(t, http.MethodGet, srv.URL+"/", "", basicHeader("ops", admin)...)
		// The event is logged as the ring is installed; the drawing
		// follows the installed ring: wait for both.
		drawn := strings.Contains(string(page), "primary node-3") || strings.Contains(string(page), "buddy node-3")
		if strings.Contains(string(page), "<td>node-3</td><td>node-3 ") && !drawn {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ring change removing node-3, drawn without it, within 30s: events %+v", nodes[0].Events())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Newest first; a ring change that keeps the members (a member's
	// address or state settling) may follow the removal.
	evs := nodes[0].Events()
	removal := -1
	for i, ev := range evs {
		if len(ev.Removed) == 1 && ev.Removed[0] == "node-3" {
			removal = i
			break
		}
	}
	if removal < 0 || strings.Join(evs[removal].Members, ",") != "node-1,node-2" || evs[0].Epoch <= evs[len(evs)-1].Epoch {
		t.Fatalf("no event removing node-3 and leaving node-1,node-2, newest first: %+v", evs)
	}
	for _, ev := range evs[:removal] {
		if len(ev.Added) != 0 || len(ev.Removed) != 0 {
			t.Fatalf("a membership change after node-3's removal: %+v", evs)
		}
	}
}

// Config.Insecure opens the page as it opens every endpoint.
func TestStatusPageInsecure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nodes[0].Kill()
	srv := httptest.NewServer(httpapi.New(nodes[0], httpapi.Config{Insecure: true}))
	defer srv.Close()
	status, _, page := call(t, http.MethodGet, srv.URL+"/", "")
	if status != http.StatusOK || !strings.Contains(string(page), "node-1") || strings.Count(string(page), `<path class="primary"`) != 271 {
		t.Fatalf("GET / insecure: %d", status)
	}
	// One member: no buddies, every partition under-replicated.
	if !strings.Contains(string(page), `id="under-replicated">271<`) || strings.Count(string(page), "buddy none (under-replicated)") != 2*271 {
		t.Errorf("a one-node ring does not show its partitions under-replicated")
	}
	// Without tokens and without Insecure only the probes answer.
	closed := httptest.NewServer(httpapi.New(nodes[0], httpapi.Config{}))
	defer closed.Close()
	if status, _, _ := call(t, http.MethodGet, closed.URL+"/", "", basicHeader("ops", "anything")...); status != http.StatusUnauthorized {
		t.Errorf("GET / with no tokens: %d, want 401", status)
	}
}
