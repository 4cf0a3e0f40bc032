package tandemscs_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/tandem-io/tandem"
	tandemscs "github.com/tandem-io/tandem/contrib/scs"
)

// scs sessions kept in a Tandem node embedded in the app.
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

	sessions := scs.New()
	sessions.Store = tandemscs.New(node)
	mux := http.NewServeMux()
	mux.HandleFunc("/visit", func(w http.ResponseWriter, r *http.Request) {
		n := sessions.GetInt(r.Context(), "visits") + 1
		sessions.Put(r.Context(), "visits", n)
		fmt.Fprintf(w, "visit %d", n)
	})
	srv := httptest.NewServer(sessions.LoadAndSave(mux))
	defer srv.Close()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	for range 2 {
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
}
