package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/httpapi"
)

// startKeyed starts n nodes with the given gossip keys (none: gossip in
// the clear), each with its HTTP API, and returns the APIs' base URLs.
func startKeyed(t *testing.T, n int, keys ...[]byte) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, n, func(i int, cfg *tandem.Config) { cfg.GossipKeys = keys })
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for _, node := range nodes {
		srv := httptest.NewServer(httpapi.New(node, httpapi.Config{Insecure: true}))
		t.Cleanup(func() {
			srv.Close()
			node.Kill()
		})
		urls = append(urls, srv.URL)
	}
	return urls
}

// keysAnswer decodes the key endpoints' answer.
type keysAnswer struct {
	Node      string   `json:"node"`
	Encrypted bool     `json:"encrypted"`
	Primary   string   `json:"primary"`
	Keys      []string `json:"keys"`
}

// errorAnswer decodes an error.
type errorAnswer struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// keyCall makes a request that should answer status; it decodes a 200
// answer into keys and any other into an error, whose code must be code.
func keyCall(t *testing.T, method, url, body string, status int, code string, header ...string) keysAnswer {
	t.Helper()
	got, h, b := call(t, method, url, body, header...)
	if got != status || h.Get("Content-Type") != "application/json" {
		t.Fatalf("%s %s %s: %d %s %s, want %d", method, url, body, got, h.Get("Content-Type"), b, status)
	}
	var k keysAnswer
	if status == 200 {
		if err := json.Unmarshal(b, &k); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, url, b, err)
		}
		return k
	}
	var e errorAnswer
	if err := json.Unmarshal(b, &e); err != nil || e.Code != code || e.Error == "" {
		t.Fatalf("%s %s %s: %d %s, want code %q", method, url, body, got, b, code)
	}
	return k
}

// A rotation through the HTTP API of a 2-node cluster: keys are listed by
// fingerprint only, installed, made primary (by value or by fingerprint)
// and removed; the cluster stays whole.
func TestGossipKeyRotationOverHTTP(t *testing.T) {
	oldKey, newKey := bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{8}, 32)
	oldB64, newB64 := base64.StdEncoding.EncodeToString(oldKey), base64.StdEncoding.EncodeToString(newKey)
	oldFP, newFP := tandem.GossipKeyFingerprint(oldKey), tandem.GossipKeyFingerprint(newKey)
	urls := startKeyed(t, 2, oldKey)
	want := func(got keysAnswer, primary string, keys ...string) {
		t.Helper()
		if !got.Encrypted || got.Primary != primary || !slices.Equal(got.Keys, keys) || got.Node == "" {
			t.Fatalf("keys = %+v, want primary %s, keys %v", got, primary, keys)
		}
	}

	status, _, body := call(t, "GET", urls[0]+"/v1/cluster/keys", "")
	if status != 200 || strings.Contains(string(body), oldB64) || strings.Contains(string(body), oldB64[:12]) {
		t.Fatalf("GET keys: %d %s", status, body)
	}
	want(keyCall(t, "GET", urls[0]+"/v1/cluster/keys", "", 200, ""), oldFP, oldFP)

	// 1. Install the new key everywhere (twice is harmless).
	for _, u := range urls {
		want(keyCall(t, "POST", u+"/v1/cluster/keys", `{"key":"`+newB64+`"}`, 200, "", "Content-Type", "application/json"), oldFP, oldFP, newFP)
		want(keyCall(t, "POST", u+"/v1/cluster/keys", `{"key":"`+newB64+`"}`, 200, ""), oldFP, oldFP, newFP)
	}
	// 2. Make it primary everywhere: by value on one, by fingerprint on
	// the other.
	want(keyCall(t, "PUT", urls[0]+"/v1/cluster/keys/primary", `{"key":"`+newB64+`"}`, 200, ""), newFP, newFP, oldFP)
	want(keyCall(t, "PUT", urls[1]+"/v1/cluster/keys/primary", `{"fingerprint":"`+strings.ToUpper(newFP)+`"}`, 200, ""), newFP, newFP, oldFP)
	// The primary cannot go.
	keyCall(t, "DELETE", urls[0]+"/v1/cluster/keys/"+newFP, "", 409, "primary_key")
	// 3. Remove the old key everywhere.
	for _, u := range urls {
		want(keyCall(t, "DELETE", u+"/v1/cluster/keys/"+oldFP, "", 200, ""), newFP, newFP)
	}
	keyCall(t, "DELETE", urls[0]+"/v1/cluster/keys/"+oldFP, "", 404, "unknown_key")
	keyCall(t, "PUT", urls[0]+"/v1/cluster/keys/primary", `{"key":"`+oldB64+`"}`, 404, "unknown_key")
	keyCall(t, "PUT", urls[0]+"/v1/cluster/keys/primary", `{"fingerprint":"`+oldFP+`"}`, 404, "unknown_key")

	// Both nodes still see each other alive.
	for _, u := range urls {
		_, _, body := call(t, "GET", u+"/v1/cluster", "")
		var st tandem.ClusterStatus
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Members) != 2 || st.Members[0].Health != "alive" || st.Members[1].Health != "alive" {
			t.Fatalf("cluster after the rotation: %s", body)
		}
	}
}

// Bad requests get a clear JSON error and change nothing.
func TestGossipKeyBadRequests(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 16)
	fp := tandem.GossipKeyFingerprint(key)
	urls := startKeyed(t, 1, key)
	keys := urls[0] + "/v1/cluster/keys"
	other := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 24))
	for _, tc := range []struct {
		method, url, body string
		status            int
		code              string
		header            []string
	}{
		{"POST", keys, `{"key":"not*base64"}`, 400, "invalid_key", nil},
		{"POST", keys, `{"key":"` + base64.StdEncoding.EncodeToString(make([]byte, 20)) + `"}`, 400, "invalid_key", nil},
		{"POST", keys, `{}`, 400, "invalid_body", nil},
		{"POST", keys, `{"fingerprint":"` + fp + `"}`, 400, "invalid_body", nil},
		{"POST", keys, `{"key":"` + other + `","extra":1}`, 400, "invalid_body", nil},
		{"POST", keys, `{"key":"` + other + `"} {}`, 400, "invalid_body", nil},
		{"POST", keys, `{"key":`, 400, "invalid_body", nil},
		{"POST", keys, `{"key":"` + strings.Repeat("A", 5000) + `"}`, 413, "too_large", nil},
		{"POST", keys, `{"key":"` + other + `"}`, 415, "unsupported_media_type", []string{"Content-Type", "application/msgpack"}},
		{"PUT", keys + "/primary", `{"key":"` + other + `","fingerprint":"` + fp + `"}`, 400, "invalid_body", nil},
		{"PUT", keys + "/primary", `{}`, 400, "invalid_body", nil},
		{"PUT", keys + "/primary", `{"key":"` + other + `"}`, 404, "unknown_key", nil},
		{"PUT", keys + "/primary", `{"fingerprint":"xyz"}`, 400, "invalid_fingerprint", nil},
		{"DELETE", keys + "/0123", "", 400, "invalid_fingerprint", nil},
		{"DELETE", keys + "/" + fp, "", 409, "primary_key", nil},
		{"DELETE", keys + "/0123456789abcdef", "", 404, "unknown_key", nil},
		{"GET", keys + "/primary", "", 405, "method_not_allowed", nil},
		{"PATCH", keys, "", 405, "method_not_allowed", nil},
	} {
		keyCall(t, tc.method, tc.url, tc.body, tc.status, tc.code, tc.header...)
	}
	got := keyCall(t, "GET", keys, "", 200, "")
	if got.Primary != fp || !slices.Equal(got.Keys, []string{fp}) {
		t.Fatalf("keys after bad requests: %+v", got)
	}
}

// A node whose gossip is in the clear says so, and has nothing to rotate.
func TestGossipKeysOfANodeInTheClear(t *testing.T) {
	urls := startKeyed(t, 1)
	got := keyCall(t, "GET", urls[0]+"/v1/cluster/keys", "", 200, "")
	if got.Encrypted || got.Primary != "" || got.Keys == nil || len(got.Keys) != 0 {
		t.Fatalf("keys of a node in the clear: %+v", got)
	}
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	keyCall(t, "POST", urls[0]+"/v1/cluster/keys", `{"key":"`+key+`"}`, 409, "gossip_unencrypted")
	keyCall(t, "PUT", urls[0]+"/v1/cluster/keys/primary", `{"key":"`+key+`"}`, 409, "gossip_unencrypted")
	keyCall(t, "DELETE", urls[0]+"/v1/cluster/keys/0123456789abcdef", "", 409, "gossip_unencrypted")
}
