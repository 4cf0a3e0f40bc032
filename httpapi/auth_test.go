package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/httpapi"
)

// Every endpoint needs a token of its scope: none or an unknown one gets
// 401, one of the other scope 403, both JSON errors; probes and metrics
// stay open. Without tokens (and without Insecure) nothing but the probes
// answers.
func TestTokensAndScopes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nodes[0].Kill() })
	const sessions, admin = "sessions-token-0123456789", "admin-token-0123456789abc"
	srv := httptest.NewServer(httpapi.New(nodes[0], httpapi.Config{Tokens: []httpapi.Token{
		{Scope: httpapi.ScopeSessions, Value: sessions},
		{Scope: httpapi.ScopeAdmin, Value: admin},
	}}))
	defer srv.Close()
	closed := httptest.NewServer(httpapi.New(nodes[0], httpapi.Config{}))
	defer closed.Close()

	id := "/v1/sessions/auth-session-000001"
	cases := []struct {
		name, method, path, token string
		want                      int
	}{
		{"put with the sessions token", http.MethodPut, id, sessions, http.StatusCreated},
		{"get with the sessions token", http.MethodGet, id, sessions, http.StatusOK},
		{"owners with the sessions token", http.MethodGet, id + "/owners", sessions, http.StatusOK},
		{"get without a token", http.MethodGet, id, "", http.StatusUnauthorized},
		{"get with an unknown token", http.MethodGet, id, "not-a-token-of-this-node", http.StatusUnauthorized},
		{"get with the admin token", http.MethodGet, id, admin, http.StatusForbidden},
		{"logout everywhere with the sessions token", http.MethodDelete, "/v1/principals/alice/sessions", sessions, http.StatusForbidden},
		{"logout everywhere with the admin token", http.MethodDelete, "/v1/principals/alice/sessions", admin, http.StatusOK},
		{"cluster view with the sessions token", http.MethodGet, "/v1/cluster", sessions, http.StatusForbidden},
		{"cluster view with the admin token", http.MethodGet, "/v1/cluster", admin, http.StatusOK},
		{"gossip keys with the sessions token", http.MethodGet, "/v1/cluster/keys", sessions, http.StatusForbidden},
		{"a wrong method is still 401 first", http.MethodPost, "/v1/cluster", "", http.StatusUnauthorized},
		{"livez without a token", http.MethodGet, "/livez", "", http.StatusOK},
		{"readyz without a token", http.MethodGet, "/readyz", "", http.StatusOK},
		{"metrics without a token", http.MethodGet, "/metrics", "", http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, header, body := call(t, tc.method, srv.URL+tc.path, `{"principal":"alice"}`, authHeader(tc.token)...)
			if status != tc.want {
				t.Fatalf("%d %s, want %d", status, body, tc.want)
			}
			if status == http.StatusUnauthorized && !strings.HasPrefix(header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("401 without a Bearer challenge: %q", header.Get("WWW-Authenticate"))
			}
			if status >= 400 {
				var e struct{ Error, Code string }
				if err := json.Unmarshal(body, &e); err != nil || e.Code == "" || strings.Contains(string(body), sessions) || strings.Contains(string(body), admin) {
					t.Fatalf("error body %s: %v", body, err)
				}
			}
		})
	}
	for _, path := range []string{id, "/v1/cluster"} {
		if status, _, _ := call(t, http.MethodGet, closed.URL+path, "", authHeader(admin)...); status != http.StatusUnauthorized {
			t.Errorf("%s on a handler with no tokens: %d, want 401", path, status)
		}
	}
	if status, _, _ := call(t, http.MethodGet, closed.URL+"/livez", ""); status != http.StatusOK {
		t.Errorf("livez on a handler with no tokens: %d", status)
	}
}

// authHeader returns the header pair for a bearer token, or none.
func authHeader(token string) []string {
	if token == "" {
		return nil
	}
	return []string{"Authorization", "Bearer " + token}
}
