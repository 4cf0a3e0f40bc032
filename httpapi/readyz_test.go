package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/httpapi"
)

// /readyz says in its body why the node is not ready, and that it is.
func TestReadyzSaysWhy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := tandem.LocalConfig("alone")
	cfg.GossipAddr, cfg.PeerAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Replica.MinMembers = 2
	node, err := tandem.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Kill()
	srv := httptest.NewServer(httpapi.New(node, httpapi.Config{}))
	defer srv.Close()

	type readiness struct {
		Ready      *bool  `json:"ready"`
		Reason     string `json:"reason"`
		Detail     string `json:"detail"`
		Members    int    `json:"members"`
		MinMembers int    `json:"min_members"`
	}
	get := func() (int, string, readiness) {
		status, h, body := call(t, "GET", srv.URL+"/readyz", "")
		var r readiness
		if err := json.Unmarshal(body, &r); err != nil || r.Ready == nil {
			t.Fatalf("/readyz: %d %s: not a readiness (%v)", status, body, err)
		}
		return status, h.Get("Content-Type"), r
	}
	status, ctype, r := get()
	if status != 503 || ctype != "application/json" || *r.Ready || r.Reason != "too_few_members" || r.Members != 1 || r.MinMembers != 2 || r.Detail == "" {
		t.Fatalf("alone below -min-members: %d %s %+v", status, ctype, r)
	}

	node2cfg := tandem.LocalConfig("company")
	node2cfg.GossipAddr, node2cfg.PeerAddr, node2cfg.Join = "127.0.0.1:0", "127.0.0.1:0", []string{node.GossipAddr()}
	node2cfg.Replica.MinMembers = 2
	node2, err := tandem.Start(ctx, node2cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer node2.Kill()
	if err := tandem.WaitConverged(ctx, []*tandem.Node{node, node2}); err != nil {
		t.Fatal(err)
	}
	if status, _, r := get(); status != 200 || !*r.Ready || r.Reason != "" || r.Members != 2 {
		t.Fatalf("with company: %d %+v", status, r)
	}

	if err := node2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := node.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if status, _, r := get(); status != 503 || *r.Ready || r.Reason != "draining" {
		t.Fatalf("closed: %d %+v", status, r)
	}
}
