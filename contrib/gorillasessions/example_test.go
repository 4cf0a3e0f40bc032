package tandemsessions_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"time"

	"github.com/tandem-io/tandem"
	tandemsessions "github.com/tandem-io/tandem/contrib/gorillasessions"
)

// gorilla/sessions sessions kept in a Tandem node embedded in the app.
func ExampleNew() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := tandem.DefaultConfig("app-1")
	cfg.GossipAddr, cfg.PeerAddr = "127.0.0.1:0", "127.0.0.1:0"
	node, err := tandem.Start(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close(ctx)

	store := tandemsessions.New(node)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		session, err := store.Get(r, "app")
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		visits, _ := session.Values["visits"].(int)
		session.Values["visits"] = visits + 1
		if err := session.Save(r, w); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "visit %d", visits+1)
	}))
	defer srv.Close()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	for range 2 {
		resp, err := browser.Get(srv.URL)
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
}
