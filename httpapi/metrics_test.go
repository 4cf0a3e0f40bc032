package httpapi_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/httpapi"
)

// An embedding app registers every node's collector on a registry of its
// own, beside the Go runtime's, without conflicts; after traffic the
// latency histograms hold it, and tandem_build_info names the build.
func TestCollectorOnAnAppsRegistry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, 3, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, n := range nodes {
			n.Kill()
		}
	}()
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		if err := reg.Register(httpapi.NewCollector(n)); err != nil {
			t.Fatalf("register %s's collector: %v", n.Name(), err)
		}
	}

	const sessions = 20
	for i := range sessions {
		id := fmt.Sprintf("metrics-session-%04d", i)
		if _, err := nodes[0].Put(ctx, id, "", map[string][]byte{"n": {byte(i)}}); err != nil {
			t.Fatal(err)
		}
		if _, err := nodes[0].Get(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := nodes[0].Delete(ctx, "metrics-session-0000"); err != nil {
		t.Fatal(err)
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	families := map[string]*dto.MetricFamily{}
	var ours []*dto.MetricFamily
	for _, mf := range mfs {
		families[mf.GetName()] = mf
		if strings.HasPrefix(mf.GetName(), "tandem_") {
			ours = append(ours, mf)
		}
	}
	problems, err := promlint.NewWithMetricFamilies(ours).Lint()
	if err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", err, problems)
	}

	ops := histograms(t, families["tandem_request_duration_seconds"], "op")
	for op, want := range map[string]uint64{"node-1/put": sessions, "node-1/get": sessions, "node-1/delete": 1} {
		if got := ops[op].GetSampleCount(); got != want {
			t.Errorf("%s: %d observations, want %d", op, got, want)
		}
	}
	for _, op := range []string{"get", "put", "patch", "delete", "touch"} {
		for _, n := range nodes {
			if _, ok := ops[n.Name()+"/"+op]; !ok {
				t.Errorf("no histogram for %s/%s", n.Name(), op)
			}
		}
	}
	// Every acknowledged write was sent to its buddy once by its primary.
	var replicated uint64
	for _, h := range histograms(t, families["tandem_replication_duration_seconds"], "") {
		replicated += h.GetSampleCount()
	}
	if replicated < sessions+1 {
		t.Errorf("%d replications timed, want at least %d", replicated, sessions+1)
	}

	info := families["tandem_build_info"]
	if info == nil || len(info.GetMetric()) != len(nodes) {
		t.Fatalf("tandem_build_info: %v", info)
	}
	for _, m := range info.GetMetric() {
		l := labels(m)
		if m.GetGauge().GetValue() != 1 || l["version"] == "" || l["commit"] == "" || l["go_version"] != runtime.Version() || l["node"] == "" {
			t.Errorf("tandem_build_info %v = %v", l, m.GetGauge().GetValue())
		}
	}
}

// histograms returns a family's histograms by "node/label value" (just
// the node with label ""), checking each is well formed.
func histograms(t *testing.T, mf *dto.MetricFamily, label string) map[string]*dto.Histogram {
	t.Helper()
	if mf == nil || mf.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("not a histogram: %v", mf)
	}
	out := map[string]*dto.Histogram{}
	for _, m := range mf.GetMetric() {
		l := labels(m)
		key := l["node"]
		if label != "" {
			key += "/" + l[label]
		}
		h := m.GetHistogram()
		var prev uint64
		var prevBound float64
		for i, b := range h.GetBucket() {
			if b.GetCumulativeCount() < prev || (i > 0 && b.GetUpperBound() <= prevBound) || b.GetCumulativeCount() > h.GetSampleCount() {
				t.Fatalf("%s %s: bucket %d is %v after %d", mf.GetName(), key, i, b, prev)
			}
			prev, prevBound = b.GetCumulativeCount(), b.GetUpperBound()
		}
		if n := len(h.GetBucket()); n < 10 || h.GetBucket()[0].GetUpperBound() > 0.001 || h.GetBucket()[n-1].GetUpperBound() < 5 {
			t.Fatalf("%s %s: buckets %v do not span 1ms to 5s", mf.GetName(), key, h.GetBucket())
		}
		if h.GetSampleCount() > 0 && h.GetSampleSum() <= 0 {
			t.Fatalf("%s %s: %d observations summing to %v", mf.GetName(), key, h.GetSampleCount(), h.GetSampleSum())
		}
		out[key] = h
	}
	return out
}

// labels returns a metric's labels by name.
func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// The handler's /metrics counts the peer wire's requests by method, sent
// and received: a cluster serving reads renews leases, so lease requests
// go both ways, and the counters only grow.
func TestMetricsCountPeerRequests(t *testing.T) {
	urls := startAPI(t, 3, 0)
	// Reads of sessions spread over the partitions, through every node:
	// each node serves some as primary, and so needs and renews leases.
	use := func() {
		t.Helper()
		for i := range 12 {
			if status, _, body := call(t, "GET", fmt.Sprintf("%s/v1/sessions/metrics-probe-%04d", urls[i%len(urls)], i), ""); status != 404 {
				t.Fatalf("GET of a session never written: %d %s", status, body)
			}
		}
	}
	scrape := func() map[string]float64 {
		t.Helper()
		status, _, body := call(t, "GET", urls[0]+"/metrics", "")
		if status != 200 {
			t.Fatalf("/metrics: %d %s", status, body)
		}
		problems, err := promlint.New(strings.NewReader(string(body))).Lint()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			if strings.HasPrefix(p.Metric, "tandem_peer_") {
				t.Errorf("lint: %v", p)
			}
		}
		out := map[string]float64{}
		for _, line := range strings.Split(string(body), "\n") {
			if !strings.HasPrefix(line, "tandem_peer_requests_") {
				continue
			}
			name, value, ok := strings.Cut(line, " ")
			var v float64
			if _, err := fmt.Sscan(value, &v); !ok || err != nil {
				t.Fatalf("bad line %q", line)
			}
			// Each series is the node's own: labelled with its name.
			series, node, labelled := strings.Cut(name, `,node="`)
			if !labelled || !strings.HasPrefix(node, "node-") {
				t.Fatalf("%q is not labelled with the node's name", line)
			}
			out[series+"}"] = v
		}
		return out
	}
	const sent, received = `tandem_peer_requests_sent_total{method="lease"}`, `tandem_peer_requests_received_total{method="lease"}`
	var first map[string]float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		use()
		first = scrape()
		if first[sent] > 0 && first[received] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no lease requests counted within 10s: %v", first)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
		use() // leases are renewed every 100ms while the node serves
		time.Sleep(20 * time.Millisecond)
	}
	second := scrape()
	for name, v := range first {
		if second[name] < v {
			t.Errorf("%s went from %v to %v", name, v, second[name])
		}
	}
	if second[sent] <= first[sent] {
		t.Errorf("%s stayed at %v over 300ms", sent, first[sent])
	}
}
