//go:build chaos

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/replica/peer"
)

// passCaller answers every call at once.
type passCaller struct{}

// Call succeeds.
func (passCaller) Call(context.Context, string, string, any, any) error { return nil }

// hookedNode builds fault hooks as serve would, with the Caller hook already
// applied to a pass-through caller, and returns them with the wrapped caller.
func hookedNode(t *testing.T) (*faultHooks, peer.Caller, *tandem.Config) {
	t.Helper()
	fs := flag.NewFlagSet("tandem serve", flag.ContinueOnError)
	h := addFaultFlags(fs)
	if err := fs.Parse([]string{"-chaos-control", "127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg := tandem.DefaultConfig("x")
	if err := h.wire(ctx, &cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	cfg.Cluster.WrapTransport(&countingTransport{})
	return h, cfg.Caller(passCaller{}), &cfg
}

// countingTransport is a gossip transport that counts the packets and
// dials that reach it.
type countingTransport struct {
	memberlist.NodeAwareTransport // unused methods panic
	packets, dials                atomic.Int64
}

// WriteTo counts a packet.
func (c *countingTransport) WriteTo([]byte, string) (time.Time, error) {
	c.packets.Add(1)
	return time.Now(), nil
}

// DialTimeout counts a dial and fails it.
func (c *countingTransport) DialTimeout(string, time.Duration) (net.Conn, error) {
	c.dials.Add(1)
	return nil, errors.New("no network in this test")
}

// post sends a control request and returns its status.
func post(t *testing.T, h http.Handler, target string) int {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, target, nil))
	return rec.Code
}

func TestFaultControlCutsAndHealsPeerLinks(t *testing.T) {
	h, caller, _ := hookedNode(t)
	ctrl := h.handler()
	call := func(addr string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		return caller.Call(ctx, addr, "op", nil, nil)
	}
	if code := post(t, ctrl, "/cut?addr=127.0.0.1:9001"); code != http.StatusNoContent {
		t.Fatalf("cut: %d", code)
	}
	if err := call("127.0.0.1:9001"); !errors.Is(err, peer.ErrUnreachable) {
		t.Fatalf("call over a cut link: %v, want ErrUnreachable", err)
	}
	if err := call("127.0.0.1:9002"); err != nil {
		t.Fatalf("a cut touches only its own link: %v", err)
	}
	if code := post(t, ctrl, "/drop?addr=127.0.0.1:9002&p=1"); code != http.StatusNoContent {
		t.Fatalf("drop: %d", code)
	}
	if err := call("127.0.0.1:9002"); !errors.Is(err, peer.ErrUnreachable) {
		t.Fatalf("call with every request dropped: %v", err)
	}
	if code := post(t, ctrl, "/heal?addr=127.0.0.1:9001"); code != http.StatusNoContent {
		t.Fatalf("heal one: %d", code)
	}
	if err := call("127.0.0.1:9001"); err != nil {
		t.Fatalf("healed link: %v", err)
	}
	if code := post(t, ctrl, "/delay?addr=127.0.0.1:9001&ms=20"); code != http.StatusNoContent {
		t.Fatalf("delay: %d", code)
	}
	start := time.Now()
	if err := call("127.0.0.1:9001"); err != nil || time.Since(start) < 20*time.Millisecond {
		t.Fatalf("delayed call: %v after %v", err, time.Since(start))
	}
	if code := post(t, ctrl, "/heal"); code != http.StatusNoContent {
		t.Fatalf("heal all: %d", code)
	}
	if err := call("127.0.0.1:9002"); err != nil {
		t.Fatalf("after heal all: %v", err)
	}
}

func TestFaultControlCutsAndHealsGossip(t *testing.T) {
	h, _, _ := hookedNode(t)
	ctrl := h.handler()
	gossip := h.gossip.Load()
	inner := gossip.NodeAwareTransport.(*countingTransport)
	send := func(addr string) (packets, dials int64) {
		p, d := inner.packets.Load(), inner.dials.Load()
		_, _ = gossip.WriteTo([]byte("ping"), addr)
		_, _ = gossip.DialTimeout(addr, time.Second)
		return inner.packets.Load() - p, inner.dials.Load() - d
	}
	if code := post(t, ctrl, "/cut?gossip=127.0.0.1:7001"); code != http.StatusNoContent {
		t.Fatalf("cut gossip: %d", code)
	}
	if p, d := send("127.0.0.1:7001"); p != 0 || d != 0 {
		t.Fatalf("over a cut gossip link %d packets and %d dials got through", p, d)
	}
	if p, d := send("127.0.0.1:7002"); p != 1 || d != 1 {
		t.Fatalf("a gossip cut touches only its own link: %d packets, %d dials", p, d)
	}
	if code := post(t, ctrl, "/heal?gossip=127.0.0.1:7001"); code != http.StatusNoContent {
		t.Fatalf("heal gossip: %d", code)
	}
	if p, d := send("127.0.0.1:7001"); p != 1 || d != 1 {
		t.Fatalf("healed gossip link: %d packets, %d dials", p, d)
	}
	if code := post(t, ctrl, "/cut?addr=127.0.0.1:9001&gossip=127.0.0.1:7001"); code != http.StatusNoContent {
		t.Fatalf("cut both: %d", code)
	}
	if code := post(t, ctrl, "/heal"); code != http.StatusNoContent {
		t.Fatalf("heal all: %d", code)
	}
	if p, d := send("127.0.0.1:7001"); p != 1 || d != 1 {
		t.Fatalf("after heal all: %d packets, %d dials", p, d)
	}
}

func TestFaultControlShiftsTheReplicaClock(t *testing.T) {
	h, _, cfg := hookedNode(t)
	ctrl := h.handler()
	if code := post(t, ctrl, "/clock?offset=-90s"); code != http.StatusNoContent {
		t.Fatalf("clock: %d", code)
	}
	if skew := time.Until(cfg.Replica.Now()); skew > -89*time.Second || skew < -91*time.Second {
		t.Fatalf("replica clock is %v off, want -90s", skew)
	}
	if code := post(t, ctrl, "/clock?offset=0s"); code != http.StatusNoContent {
		t.Fatalf("clock reset: %d", code)
	}
	if skew := time.Until(cfg.Replica.Now()); skew < -time.Second || skew > time.Second {
		t.Fatalf("replica clock is %v off after reset", skew)
	}
}

func TestFaultControlRefusesBadRequests(t *testing.T) {
	h, _, _ := hookedNode(t)
	ctrl := h.handler()
	for _, target := range []string{"/cut", "/cut?addr=nonsense", "/cut?gossip=nonsense", "/cut?addr=127.0.0.1:1&gossip=x", "/delay?addr=127.0.0.1:1&ms=-1", "/drop?addr=127.0.0.1:1&p=2", "/clock?offset=soon"} {
		if code := post(t, ctrl, target); code != http.StatusBadRequest {
			t.Errorf("POST %s: %d, want 400", target, code)
		}
	}
	rec := httptest.NewRecorder()
	ctrl.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/cut?addr=127.0.0.1:1", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET /cut: %d, want 405", rec.Code)
	}
}

func TestFaultControlIsHiddenAndLoopbackOnly(t *testing.T) {
	var usage bytes.Buffer
	err := run(context.Background(), []string{"serve", "-h"}, io.Discard, &usage)
	if !isUsageError(err) || !strings.Contains(err.Error(), flag.ErrHelp.Error()) {
		t.Fatalf("serve -h: %v", err)
	}
	if strings.Contains(usage.String(), chaosControlFlag) || !strings.Contains(usage.String(), "-gossip") {
		t.Fatalf("usage should list the node flags but not the chaos hook:\n%s", usage.String())
	}
	err = run(context.Background(), []string{"serve", "-insecure", "-chaos-control", "0.0.0.0:7999"}, io.Discard, io.Discard)
	if !isUsageError(err) || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("a non-loopback control address: %v, want a usage error", err)
	}
	var off faultHooks
	cfg := tandem.DefaultConfig("x")
	if err := off.wire(context.Background(), &cfg, slog.New(slog.DiscardHandler)); err != nil || cfg.Caller != nil || cfg.Replica.Now != nil {
		t.Fatalf("without the flag the hooks must leave the config alone: %v", err)
	}
}

// The chaos app reaches sessions only through the node's session
// middleware: it reads the session its cookie names, patches it with the
// version the save made, answers 404 for a session that does not exist
// (never adopting its id), and leaves every other path to the HTTP API.
func TestFaultControlAppGoesThroughTheMiddleware(t *testing.T) {
	h, _, _ := hookedNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	node := nodes[0]
	t.Cleanup(node.Kill)
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	app := h.app(node, api)
	put := func(v string) []byte {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const id = "chaos-app-session-0001"
	if _, err := node.Put(ctx, id, "", map[string][]byte{"put": put("first")}); err != nil {
		t.Fatal(err)
	}
	send := func(method, id, body string) (int, map[string]any) {
		t.Helper()
		req := httptest.NewRequest(method, "/chaos/app/"+id, strings.NewReader(body))
		req.AddCookie(&http.Cookie{Name: "tandem_session", Value: id})
		rec := httptest.NewRecorder()
		app.ServeHTTP(rec, req)
		var answer map[string]any
		if rec.Code == http.StatusOK {
			if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
				t.Fatalf("%s %s: %v in %q", method, id, err, rec.Body.String())
			}
		}
		return rec.Code, answer
	}
	code, got := send(http.MethodGet, id, "")
	if code != http.StatusOK || got["id"] != id || got["version"] != float64(1) || got["attributes"].(map[string]any)["put"] != "first" {
		t.Fatalf("GET: %d %v; want 200, version 1, put first", code, got)
	}
	code, got = send(http.MethodPatch, id, `{"patch": "second"}`)
	attrs, _ := got["attributes"].(map[string]any)
	if code != http.StatusOK || got["version"] != float64(2) || attrs["patch"] != "second" || attrs["put"] != "first" {
		t.Fatalf("PATCH: %d %v; want 200, version 2, both attributes", code, got)
	}
	if s, err := node.Get(ctx, id); err != nil || s.Version != 2 || string(s.Attributes["patch"]) != string(put("second")) {
		t.Fatalf("stored after the patch: %+v %v", s, err)
	}
	if code, _ := send(http.MethodPatch, "chaos-app-session-none", `{"patch": "x"}`); code != http.StatusNotFound {
		t.Fatalf("PATCH of a session that does not exist: %d, want 404", code)
	}
	if ids, err := node.SessionIDs(ctx); err != nil || len(ids) != 1 {
		t.Fatalf("sessions after patching one that does not exist: %v %v; want only %s", ids, err, id)
	}
	if code, _ := send(http.MethodPatch, id, `{"other": 1}`); code != http.StatusBadRequest {
		t.Fatalf("PATCH without a value: %d, want 400", code)
	}
	rec := httptest.NewRecorder()
	app.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/sessions/"+id, nil))
	if rec.Code != http.StatusTeapot {
		t.Fatalf("the HTTP API's path answered %d; want it passed to the API", rec.Code)
	}
}
