package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/httpapi"
)

// Three nodes that run the seat protocol (Replica.Seats) agree on three
// seats of one cluster, and each shows it: GET /v1/cluster's field seats,
// the status page and the tandem_seat_* metrics. A node that runs none
// shows none of them.
func TestSeatsShowInTheClusterViewAndMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, 3, func(_ int, cfg *tandem.Config) { cfg.Replica.Seats = 3 })
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, n := range nodes {
			n.Kill()
		}
	}()
	var views []tandem.ClusterStatus
	for _, n := range nodes {
		srv := httptest.NewServer(httpapi.New(n, httpapi.Config{Insecure: true}))
		defer srv.Close()
		var st tandem.ClusterStatus
		for {
			status, _, body := call(t, http.MethodGet, srv.URL+"/v1/cluster", "")
			if status != http.StatusOK {
				t.Fatalf("GET /v1/cluster: %d %s", status, body)
			}
			if err := json.Unmarshal(body, &st); err != nil {
				t.Fatal(err)
			}
			if s := st.Seats; s != nil && s.Active && s.Live && len(s.Seats) == 3 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%s never showed three live seats: %s", n.Name(), body)
			}
			time.Sleep(20 * time.Millisecond)
		}
		views = append(views, st)
		status, _, page := call(t, http.MethodGet, srv.URL+"/", "")
		if status != http.StatusOK || !strings.Contains(string(page), `id="seats"`) || !strings.Contains(string(page), `<span id="seat-names">node-1, node-2, node-3</span>`) {
			t.Fatalf("%s's status page (%d) does not show its seats", n.Name(), status)
		}
	}
	// Idle, a node lets its grants lapse (it asks again on its next
	// request) and stays live: live says the seats granted it under its
	// ring and it can serve, not that it holds a grant this instant.
	time.Sleep(3 * time.Second) // five leases of 600 ms, the default
	for _, n := range nodes {
		if s := n.Status().Seats; s == nil || !s.Live {
			t.Fatalf("%s, idle for five leases, shows its seats not live: %+v", n.Name(), s)
		}
	}
	for _, v := range views[1:] {
		if v.Seats.Cluster == "" || v.Seats.Cluster != views[0].Seats.Cluster || !slices.Equal(v.Seats.Seats, []string{"node-1", "node-2", "node-3"}) {
			t.Fatalf("the nodes show different seats: %+v and %+v", views[0].Seats, v.Seats)
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(httpapi.NewCollector(nodes[0]))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	if got["tandem_seats"] != 3 || got["tandem_seat_live"] != 1 || got["tandem_seat_config_version"] < 1 || got["tandem_seat_state_lost"] != 0 {
		t.Fatalf("seat metrics: seats %v, live %v, version %v, lost %v", got["tandem_seats"], got["tandem_seat_live"], got["tandem_seat_config_version"], got["tandem_seat_state_lost"])
	}

	plain, err := tandem.StartLocal(ctx, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain[0].Kill()
	if st := plain[0].Status(); st.Seats != nil {
		t.Fatalf("a node without seats shows %+v", st.Seats)
	}
	srv := httptest.NewServer(httpapi.New(plain[0], httpapi.Config{Insecure: true}))
	defer srv.Close()
	if status, _, page := call(t, http.MethodGet, srv.URL+"/", ""); status != http.StatusOK || strings.Contains(string(page), `id="seats"`) {
		t.Fatalf("a node without seats: status page %d, with a seats section %v", status, strings.Contains(string(page), `id="seats"`))
	}
	reg = prometheus.NewRegistry()
	reg.MustRegister(httpapi.NewCollector(plain[0]))
	if mfs, err = reg.Gather(); err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "tandem_seat") {
			t.Fatalf("a node without seats exports %s", mf.GetName())
		}
	}
}
