//go:build chaos

package main

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem"
)

// appAttributes are the attributes the chaos app answers with: those the
// chaos workload writes.
var appAttributes = []string{"put", "patch", "n"}

// maxAppBody bounds a chaos app request's body: one value of the
// workload's, at most 64 KiB, with room to spare.
const maxAppBody = 1 << 20

// app returns api with, when fault injection is on, an app beside it that
// embeds this node and reaches sessions only through its session
// middleware, as a web app embedding Tandem does. The chaos workload sends
// a share of its reads and patches there (chaos.WorkloadConfig.App), so
// the middleware's load and save run under the same faults as the HTTP
// API. The session is the one the request's cookie names; the path
// repeats its id, so that an answer for another session (the middleware
// never adopts an id the cluster does not know) is told apart:
//
//	GET   /chaos/app/{id}                 200 {id, version, attributes}, or 404
//	PATCH /chaos/app/{id}  {"patch": V}   sets attribute "patch" to V and answers as GET, with the
//	                                      version the save made; the id is another one if the
//	                                      session vanished between the load and the save (the
//	                                      middleware then saves to a new session); 404 if there
//	                                      was none; 503 if the load or the save failed
//
// Without -chaos-control it returns api unchanged.
func (h *faultHooks) app(node *tandem.Node, api http.Handler) http.Handler {
	if h.control == "" {
		return api
	}
	mux := http.NewServeMux()
	mux.Handle("/", api)
	app := http.NewServeMux()
	app.HandleFunc("GET /chaos/app/{id}", serveChaosApp)
	app.HandleFunc("PATCH /chaos/app/{id}", serveChaosApp)
	mux.Handle("/chaos/app/", node.Middleware(app))
	return mux
}

// serveChaosApp answers one chaos app request (faultHooks.app).
func serveChaosApp(w http.ResponseWriter, r *http.Request) {
	s := tandem.FromContext(r.Context())
	if err := s.Load(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if s.ID() != r.PathValue("id") {
		http.Error(w, "no such session", http.StatusNotFound)
		return
	}
	if r.Method == http.MethodPatch {
		var body struct {
			Patch *string `json:"patch"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, maxAppBody)).Decode(&body); err != nil || body.Patch == nil {
			http.Error(w, `want {"patch": "value"}`, http.StatusBadRequest)
			return
		}
		if err := s.Set("patch", *body.Patch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	// The middleware saves the patch before the header goes out; if it
	// cannot, it answers 503 instead, and what follows is discarded.
	w.WriteHeader(http.StatusOK)
	attrs := map[string]any{}
	for _, name := range appAttributes {
		raw := s.Get(name)
		if raw == nil {
			continue
		}
		var v any
		if err := msgpack.Unmarshal(raw, &v); err == nil {
			attrs[name] = v
		}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"id": s.ID(), "version": s.Version(), "attributes": attrs})
}
