package main

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/tandem-io/tandem"
)

// shop is the demo's web app. Everything it knows about a user lives in
// the session: the user's name and the cart.
type shop struct {
	node *tandem.Node
	log  *slog.Logger
	mux  *http.ServeMux
}

// newShop returns the app; serve it behind node.Middleware.
func newShop(node *tandem.Node, log *slog.Logger) *shop {
	s := &shop{node: node, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /{$}", s.page)
	s.mux.HandleFunc("POST /login", s.login)
	s.mux.HandleFunc("POST /logout", s.logout)
	s.mux.HandleFunc("POST /logout-everywhere", s.logoutEverywhere)
	s.mux.HandleFunc("GET /whoami", s.whoami)
	s.mux.HandleFunc("GET /cart", s.cart)
	s.mux.HandleFunc("POST /cart", s.addToCart)
	s.mux.HandleFunc("POST /cart/remove", s.removeFromCart)
	return s
}

// ServeHTTP implements http.Handler.
func (s *shop) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// style is the pages' CSS: inline, no build step.
const style = `body{font-family:system-ui,sans-serif;max-width:46em;margin:0 auto;padding:0 1em 2em;color:#1d2733;background:#f6f7f9}
header{background:#23303f;color:#fff;margin:0 -1em 1.5em;padding:.8em 1em;display:flex;justify-content:space-between;align-items:baseline;flex-wrap:wrap;gap:.5em}
header h1{font-size:1.3em;margin:0}header a{color:#fff;text-decoration:none}
.served{font-size:1.05em}.served b{background:#f2b705;color:#23303f;border-radius:.3em;padding:.1em .5em}
section{background:#fff;border:1px solid #dde2e8;border-radius:.5em;padding:.6em 1em;margin:1em 0}
h2{font-size:1.05em;margin:.3em 0 .6em;color:#44546a}
table{border-collapse:collapse}td,th{text-align:left;padding:.2em 1em .2em 0}
.badge{display:inline-block;border-radius:1em;padding:0 .6em;font-size:.85em;margin-left:.3em;background:#e5e9ef}
.badge.you{background:#f2b705}.badge.primary{background:#2e7d32;color:#fff}.badge.buddy{background:#1565c0;color:#fff}
.muted{color:#6b7a8c}.error{border-color:#c62828}.error h2{color:#c62828}
ul.cart{padding-left:1.2em}form{display:inline}input{padding:.3em}button{padding:.3em .7em;cursor:pointer}
code{font-size:.9em}`

// pageTemplate is the shop's page: where the request was served and the
// session lives, who is alive, who you are, your cart, and forms.
var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tandem demo shop ({{.Node}})</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>` + style + `</style></head>
<body>
<header><h1><a href="/">Tandem demo shop</a></h1>
<span class="served">Served by <b id="served-by">{{.Node}}</b></span></header>
<section id="account">
{{if .User}}
<p id="who">Logged in as <b>{{.User}}</b>.
<form method="post" action="/logout"><button>Log out</button></form>
<form method="post" action="/logout-everywhere"><button>Log out everywhere</button></form></p>
{{else}}
<form method="post" action="/login"><input name="user" placeholder="your name" maxlength="64" required> <button>Log in</button></form>
{{end}}
</section>
<section id="cart">
<h2>Cart</h2>
<ul class="cart">{{range .Cart}}<li class="item">{{.}} <form method="post" action="/cart/remove"><input type="hidden" name="item" value="{{.}}"><button>remove</button></form></li>
{{else}}<li class="empty">empty</li>{{end}}</ul>
<form method="post" action="/cart"><input name="item" placeholder="tea, bread…" maxlength="64" required> <button>Add</button></form>
</section>
<section id="session">
<h2>Where your session lives</h2>
{{if .Session}}<table>
<tr><th>Session</th><td><code id="session-id">{{.Session}}</code></td></tr>
<tr><th>Primary</th><td id="primary">{{.Primary}}</td></tr>
<tr><th>Buddy</th><td id="buddy">{{with .Buddy}}{{.}}{{else}}none (a single member holds one copy){{end}}</td></tr>
<tr><th>Ring epoch</th><td id="epoch">{{.Epoch}}</td></tr>
</table>
<p class="muted">Every write goes to the primary and its buddy before the page answers. Kill either one: the other serves your session, and a member that returns takes its sessions back before it reports ready.</p>
{{else}}<p class="muted">No session yet: log in or add something to your cart.</p>{{end}}
</section>
<section id="members">
<h2>Members alive ({{len .Members}})</h2>
<ul>{{range .Members}}<li class="member" data-name="{{.Name}}"><b>{{.Name}}</b> <span class="muted">{{.HTTP}} · {{.State}}</span>
{{- if .You}}<span class="badge you">serving you</span>{{end}}
{{- if .Primary}}<span class="badge primary">primary</span>{{end}}
{{- if .Buddy}}<span class="badge buddy">buddy</span>{{end}}</li>
{{end}}</ul>
</section>
</body></html>
`))

// problemTemplate is the page of a request the shop refuses or cannot
// serve.
var problemTemplate = template.Must(template.New("problem").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} – Tandem demo shop</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>` + style + `</style></head>
<body>
<header><h1><a href="/">Tandem demo shop</a></h1>{{with .Node}}<span class="served">Served by <b id="served-by">{{.}}</b></span>{{end}}</header>
<section class="error" id="problem"><h2>{{.Title}}</h2><p>{{.Message}}</p><p><a href="/">Back to the shop</a></p></section>
</body></html>
`))

// problem answers status with a readable HTML page.
func problem(w http.ResponseWriter, node string, status int, title, message string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = problemTemplate.Execute(w, struct{ Node, Title, Message string }{node, title, message})
}

// member is one live member as the page shows it.
type member struct {
	Name, HTTP, State   string
	You, Primary, Buddy bool
}

// page renders the HTML page.
func (s *shop) page(w http.ResponseWriter, r *http.Request) {
	sess := tandem.FromContext(r.Context())
	cart, ok := s.loadCart(w, sess)
	if !ok {
		return
	}
	data := struct {
		Node, User, Session, Primary, Buddy string
		Epoch                               uint64
		Cart                                []string
		Members                             []member
	}{Node: s.node.Name(), User: sess.GetString("user"), Session: sess.ID(), Cart: cart}
	if data.Session != "" {
		if primary, buddy, epoch, err := s.node.Owners(data.Session); err == nil {
			data.Primary, data.Buddy, data.Epoch = primary.Name, buddy.Name, epoch
		} else {
			s.log.Warn("owners", "err", err)
		}
	}
	for _, m := range s.node.Status().Members {
		if m.Health != "alive" {
			continue
		}
		data.Members = append(data.Members, member{Name: m.Name, HTTP: m.Meta.HTTP, State: m.Meta.State,
			You: m.Name == data.Node, Primary: m.Name == data.Primary, Buddy: m.Name == data.Buddy})
	}
	slices.SortFunc(data.Members, func(a, b member) int { return strings.Compare(a.Name, b.Name) })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := pageTemplate.Execute(w, data); err != nil {
		s.log.Warn("render page", "err", err)
	}
}

// formValue returns a trimmed form field, or answers 400 with a page that
// says what is wrong when it is empty or longer than 64 characters.
func (s *shop) formValue(w http.ResponseWriter, r *http.Request, name string) (string, bool) {
	v := strings.TrimSpace(r.FormValue(name))
	switch n := utf8.RuneCountInString(v); {
	case n == 0:
		problem(w, s.node.Name(), http.StatusBadRequest, "Nothing to "+verb(name), "The "+name+" field is empty: type 1 to 64 characters.")
		return "", false
	case n > 64:
		problem(w, s.node.Name(), http.StatusBadRequest, "That "+name+" is too long", fmt.Sprintf("The %s field holds at most 64 characters; this one has %d.", name, n))
		return "", false
	}
	return v, true
}

// verb names what a form field is for.
func verb(field string) string {
	if field == "user" {
		return "log in with"
	}
	return "add"
}

// crossOriginProtection refuses cross-origin form posts (CSRF) with a
// readable page.
func crossOriginProtection(node string) *http.CrossOriginProtection {
	c := http.NewCrossOriginProtection()
	c.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem(w, node, http.StatusForbidden, "Cross-origin request refused",
			"This form was posted from another site. The shop accepts forms from its own pages only.")
	}))
	return c
}

// fail answers a session error.
func (s *shop) fail(w http.ResponseWriter, err error) {
	s.log.Warn("session unavailable", "err", err)
	problem(w, s.node.Name(), http.StatusServiceUnavailable, "Session store unavailable", "Your session could not be read or saved just now. Please retry in a moment.")
}

// back redirects a form post to the page.
func back(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// login handles POST /login: a new session id (against fixation), then the
// user as the session's principal.
func (s *shop) login(w http.ResponseWriter, r *http.Request) {
	user, ok := s.formValue(w, r, "user")
	if !ok {
		return
	}
	sess := tandem.FromContext(r.Context())
	if err := sess.RenewID(r.Context()); err != nil {
		s.fail(w, err)
		return
	}
	sess.SetPrincipal(user)
	if err := sess.Set("user", user); err != nil {
		s.fail(w, err)
		return
	}
	back(w, r)
}

// logout handles POST /logout: the session ends.
func (s *shop) logout(w http.ResponseWriter, r *http.Request) {
	if err := tandem.FromContext(r.Context()).Destroy(r.Context()); err != nil {
		s.fail(w, err)
		return
	}
	back(w, r)
}

// logoutEverywhere handles POST /logout-everywhere: every session of the
// user ends, on every instance.
func (s *shop) logoutEverywhere(w http.ResponseWriter, r *http.Request) {
	sess := tandem.FromContext(r.Context())
	if user := sess.GetString("user"); user != "" {
		if _, err := s.node.InvalidatePrincipal(r.Context(), user); err != nil {
			s.fail(w, err)
			return
		}
	}
	if err := sess.Destroy(r.Context()); err != nil {
		s.fail(w, err)
		return
	}
	back(w, r)
}

// whoami handles GET /whoami: the user's name, or 401.
func (s *shop) whoami(w http.ResponseWriter, r *http.Request) {
	sess := tandem.FromContext(r.Context())
	if err := sess.Load(); err != nil {
		s.fail(w, err)
		return
	}
	user := sess.GetString("user")
	if user == "" {
		http.Error(w, "not logged in", http.StatusUnauthorized)
		return
	}
	io.WriteString(w, user+"\n")
}

// loadCart returns the session's cart, or answers 503.
func (s *shop) loadCart(w http.ResponseWriter, sess *tandem.SessionHandle) ([]string, bool) {
	var cart []string
	if err := sess.Unmarshal("cart", &cart); err != nil {
		s.fail(w, err)
		return nil, false
	}
	return cart, true
}

// cart handles GET /cart: the cart as a JSON list.
func (s *shop) cart(w http.ResponseWriter, r *http.Request) {
	cart, ok := s.loadCart(w, tandem.FromContext(r.Context()))
	if !ok {
		return
	}
	if cart == nil {
		cart = []string{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(cart)
}

// addToCart handles POST /cart: one more item.
func (s *shop) addToCart(w http.ResponseWriter, r *http.Request) {
	s.editCart(w, r, func(cart []string, item string) []string { return append(cart, item) })
}

// removeFromCart handles POST /cart/remove: one item fewer.
func (s *shop) removeFromCart(w http.ResponseWriter, r *http.Request) {
	s.editCart(w, r, func(cart []string, item string) []string {
		if i := slices.Index(cart, item); i >= 0 {
			return slices.Delete(cart, i, i+1)
		}
		return cart
	})
}

// editCart applies edit to the cart with the form's item.
func (s *shop) editCart(w http.ResponseWriter, r *http.Request, edit func([]string, string) []string) {
	item, ok := s.formValue(w, r, "item")
	if !ok {
		return
	}
	sess := tandem.FromContext(r.Context())
	cart, ok := s.loadCart(w, sess)
	if !ok {
		return
	}
	if err := sess.Set("cart", edit(cart, item)); err != nil {
		s.fail(w, err)
		return
	}
	back(w, r)
}
