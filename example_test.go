package tandem_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem"
)

// A node of a new cluster, on loopback. Every further node names a running
// one in Config.Join.
func ExampleStart() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := tandem.DefaultConfig("app-1")
	cfg.GossipAddr, cfg.PeerAddr = "127.0.0.1:0", "127.0.0.1:0"
	node, err := tandem.Start(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close(ctx)

	cart, _ := msgpack.Marshal([]string{"tea"})
	if _, err := node.Put(ctx, "example-session-0001", "alice", map[string][]byte{"cart": cart}); err != nil {
		log.Fatal(err)
	}
	s, err := node.Get(ctx, "example-session-0001")
	if err != nil {
		log.Fatal(err)
	}
	var items []string
	_ = msgpack.Unmarshal(s.Attributes["cart"], &items)
	fmt.Println(s.Principal, items, s.Version)
	// Output: alice [tea] 1
}

// Sessions for a web app: each app instance embeds a node, and the
// middleware gives every request its session.
func ExampleNode_Middleware() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := tandem.DefaultConfig("app-1")
	cfg.GossipAddr, cfg.PeerAddr = "127.0.0.1:0", "127.0.0.1:0"
	node, err := tandem.Start(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close(ctx)

	mux := http.NewServeMux()
	mux.HandleFunc("/visit", func(w http.ResponseWriter, r *http.Request) {
		s := tandem.FromContext(r.Context())
		var visits int
		if err := s.Unmarshal("visits", &visits); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		visits++
		_ = s.Set("visits", visits) // saved, as a patch, before the response begins
		fmt.Fprintf(w, "visit %d", visits)
	})
	srv := httptest.NewServer(node.Middleware(mux))
	defer srv.Close()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	for range 3 {
		resp, err := browser.Get(srv.URL + "/visit")
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(string(body))
	}
	// Output:
	// visit 1
	// visit 2
	// visit 3
}

// A program that is not a node reaches the cluster through a client,
// which sends each request straight to the session's primary.
func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, 3, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		for _, n := range nodes {
			n.Close(ctx)
		}
	}()

	client, err := tandem.Dial(ctx, []string{nodes[0].PeerAddr()}, tandem.ClientConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	theme, _ := msgpack.Marshal("dark")
	if _, err := client.Put(ctx, "example-session-0002", "bob", map[string][]byte{"theme": theme}); err != nil {
		log.Fatal(err)
	}
	s, err := client.Peek(ctx, "example-session-0002")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.Principal, len(client.Ring().Members()))
	// Output: bob 3
}
