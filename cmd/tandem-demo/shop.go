package main

import (
	"encoding/json"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

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

// pageTemplate is the one HTML page: who you are, your cart, and forms.
var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tandem demo shop</title>
<style>body{font-family:sans-serif;max-width:36em;margin:2em auto}form{display:inline}</style></head>
<body>
<h1>Tandem demo shop</h1>
<p>Served by <b>{{.Node}}</b>. Kill this instance and reload on another one: you stay logged in and keep your cart.</p>
{{if .User}}
<p>Logged in as <b>{{.User}}</b>.
<form method="post" action="/logout"><button>Log out</button></form>
<form method="post" action="/logout-everywhere"><button>Log out everywhere</button></form></p>
{{else}}
<form method="post" action="/login"><input name="user" placeholder="your name" required> <button>Log in</button></form>
{{end}}
<h2>Cart</h2>
<ul>{{range .Cart}}<li>{{.}} <form method="post" action="/cart/remove"><input type="hidden" name="item" value="{{.}}"><button>remove</button></form></li>
{{else}}<li>empty</li>{{end}}</ul>
<form method="post" action="/cart"><input name="item" placeholder="tea, bread…" required> <button>Add</button></form>
</body></html>
`))

// page renders the HTML page.
func (s *shop) page(w http.ResponseWriter, r *http.Request) {
	sess := tandem.FromContext(r.Context())
	cart, ok := s.loadCart(w, sess)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	data := struct {
		Node, User string
		Cart       []string
	}{s.node.Name(), sess.GetString("user"), cart}
	if err := pageTemplate.Execute(w, data); err != nil {
		s.log.Warn("render page", "err", err)
	}
}

// formValue returns a trimmed form field, or answers 400 when it is empty
// or longer than 64 bytes.
func formValue(w http.ResponseWriter, r *http.Request, name string) (string, bool) {
	v := strings.TrimSpace(r.FormValue(name))
	if v == "" || len(v) > 64 {
		http.Error(w, "form field "+name+" must be 1–64 characters", http.StatusBadRequest)
		return "", false
	}
	return v, true
}

// fail answers a session error.
func (s *shop) fail(w http.ResponseWriter, err error) {
	s.log.Warn("session unavailable", "err", err)
	http.Error(w, "session store unavailable, please retry", http.StatusServiceUnavailable)
}

// back redirects a form post to the page.
func back(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// login handles POST /login: a new session id (against fixation), then the
// user as the session's principal.
func (s *shop) login(w http.ResponseWriter, r *http.Request) {
	user, ok := formValue(w, r, "user")
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
	item, ok := formValue(w, r, "item")
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
