package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tandem-io/tandem"
)

// NewCollector returns a prometheus.Collector of node's metrics: its
// state, counters and latency histograms and tandem_build_info, every
// series labelled node="NAME". An app that embeds a node registers it on
// its own registry, beside its own metrics:
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(httpapi.NewCollector(node), collectors.NewGoCollector())
//	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// It reads the node when scraped, so the node keeps no second set of
// counters. The Go runtime's and the process's metrics are not in it (an
// app's registry has its own); the handler's /metrics adds them.
func NewCollector(node *tandem.Node) prometheus.Collector { return newMetrics(node) }

// metrics exports a node's state and counters to Prometheus. It reads them
// when scraped, so the node keeps no second set of counters.
type metrics struct {
	node             *tandem.Node
	desc             map[string]*prometheus.Desc
	ops, replication *prometheus.Desc // latency histograms
	buildInfo        *prometheus.Desc
	sent, received   *prometheus.Desc // peer-wire requests by method
	build            tandem.BuildInfo
	bucketBounds     []float64 // the histograms' upper bounds, in seconds
}

// metricHelp documents every metric the node exports.
var metricHelp = map[string]string{
	"tandem_ready":                                 "1 when the node holds every partition it owns and serves, else 0.",
	"tandem_ring_epoch":                            "Epoch of the ring the node serves by.",
	"tandem_ring_members":                          "Members in the node's ring.",
	"tandem_under_replicated_partitions":           "Partitions with fewer than two copies as far as this node can tell.",
	"tandem_pending_partitions":                    "Owned partitions still being handed over or reconciled.",
	"tandem_sessions":                              "Session copies held, by role.",
	"tandem_reads_total":                           "Reads served as primary.",
	"tandem_writes_total":                          "Writes acknowledged as primary.",
	"tandem_replicated_total":                      "Writes stored as buddy.",
	"tandem_under_replicated_writes_total":         "Writes acknowledged with one copy (no buddy in the ring).",
	"tandem_replication_failures_total":            "Writes refused because the buddy refused or could not be reached.",
	"tandem_buddy_copies_adopted_total":            "Times a primary took its buddy's newer copy of a session, left by a write whose acknowledgement was lost.",
	"tandem_dropped_below_floor_total":             "Copies dropped on learning that their partition was rebuilt after a reported loss: copies from before it.",
	"tandem_expired_in_transit_total":              "Ops refused by their primary because they arrived long after their sender gave up on them.",
	"tandem_forwarded_total":                       "Requests forwarded to a primary.",
	"tandem_buddy_reads_total":                     "Reads served by the buddy because the primary could not be reached.",
	"tandem_unconfirmed_buddy_reads_refused_total": "Reads this node refused as the buddy because the primary had not yet confirmed its copy's write, which may never take effect.",
	"tandem_unconfirmed_copies_reported_total":     "Copies this node, as the buddy, told their primary it had held unconfirmed for a while, so the owners settle on one copy.",
	"tandem_copies_resent_total":                   "Copies this node, as the primary settling a doubt, found newer than its buddy's and sent again.",
	"tandem_retries_total":                         "Requests retried while owners changed or were unreachable.",
	"tandem_handoff_sent_sessions_total":           "Session copies handed to other nodes.",
	"tandem_handoff_received_sessions_total":       "Session copies received from other nodes.",
	"tandem_conflicts_total":                       "Copies that diverged (both sides of a network cut wrote the session) reconciled after the cut healed: the losing side's writes are gone.",
	"tandem_lost_partitions_total":                 "Partitions found with no owner left holding them.",
	"tandem_expired_total":                         "Expired copies and old tombstones removed.",
	"tandem_pauses_total":                          "Times the node found it had been paused and reconciled.",
	"tandem_duplicates_total":                      "Retried writes recognised as already applied and not applied again.",
	"tandem_lease_misses_total":                    "Times the node lacked the leases it needs to serve and asked for them.",
	"tandem_fence_waits_total":                     "Writes that waited while a departed owner's lease lapsed.",
	"tandem_handover_waits_total":                  "Writes that waited for a previous owner to move to the node's ring.",
	"tandem_handoff_refusals_total":                "Hand-off requests refused because the new owner was on another ring.",
	"tandem_rejoins_total":                         "Times the node learned it had been declared dead and pulled every owned partition again.",
	"tandem_peer_identity_refusals_total":          "Peer requests refused because the caller's certificate did not allow them (a node acting as another, a client calling a node-only method).",
	"tandem_peer_wire_downs_total":                 "Members taken out of the ring because their peer port refused connections, before membership declared them dead.",
	"tandem_seat_config_version":                   "Version of the newest config of seats the node knows (only when it runs the seat protocol); 0 for none.",
	"tandem_seats":                                 "Seats in that config.",
	"tandem_seat_live":                             "1 when a majority of the seats has granted the node under the ring it serves by and it is not revoked (an idle node, its grants lapsed, stays 1), else 0.",
	"tandem_seat_state_lost":                       "1 when the node found the seats' state lost (too many seats restarted at once to recover it without disk), else 0.",
}

// newMetrics describes the node's metrics.
func newMetrics(node *tandem.Node) *metrics {
	m := &metrics{node: node, desc: map[string]*prometheus.Desc{}}
	for name, help := range metricHelp {
		var labels []string
		if name == "tandem_sessions" {
			labels = []string{"role"}
		}
		m.desc[name] = prometheus.NewDesc(name, help, labels, prometheus.Labels{"node": node.Name()})
	}
	nodeLabel := prometheus.Labels{"node": node.Name()}
	m.ops = prometheus.NewDesc("tandem_request_duration_seconds",
		"Duration of session operations asked of this node (the middleware's, the HTTP API's, Node.Do), from the call to its answer: routing, forwarding to the primary, replication and retries included; by op (get, put, patch, delete, touch).",
		[]string{"op"}, nodeLabel)
	m.replication = prometheus.NewDesc("tandem_replication_duration_seconds",
		"Duration of each write this node sent to the buddy as primary, until the buddy answered or the call failed.", nil, nodeLabel)
	m.buildInfo = prometheus.NewDesc("tandem_build_info",
		"Always 1; its labels name the build of Tandem running: version (module version, devel when not recorded), go_version and commit.",
		[]string{"version", "go_version", "commit"}, nodeLabel)
	m.sent = prometheus.NewDesc("tandem_peer_requests_sent_total",
		"Requests this node wrote to other nodes over the peer wire, by method (each is answered by one response); method \"_other\" counts names not kept apart.",
		[]string{"method"}, nodeLabel)
	m.received = prometheus.NewDesc("tandem_peer_requests_received_total",
		"Requests this node read from other nodes and smart clients over the peer wire, by method, whether or not it then served them; method \"_other\" counts names not kept apart.",
		[]string{"method"}, nodeLabel)
	m.build = tandem.Build()
	for _, b := range node.Latencies().Replication.Bounds {
		m.bucketBounds = append(m.bucketBounds, b.Seconds())
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range m.desc {
		ch <- d
	}
	ch <- m.ops
	ch <- m.replication
	ch <- m.buildInfo
	ch <- m.sent
	ch <- m.received
}

// histogram exports a latency histogram.
func (m *metrics) histogram(desc *prometheus.Desc, h tandem.Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(m.bucketBounds))
	var cumulative uint64
	for i, le := range m.bucketBounds {
		cumulative += h.Counts[i]
		buckets[le] = cumulative
	}
	return prometheus.MustNewConstHistogram(desc, h.Count(), h.Sum.Seconds(), buckets, labels...)
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.node.Status()
	s := m.node.Stats()
	gauge := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(m.desc[name], prometheus.GaugeValue, v, labels...)
	}
	counter := func(name string, v uint64) {
		ch <- prometheus.MustNewConstMetric(m.desc[name], prometheus.CounterValue, float64(v))
	}
	gauge("tandem_ready", one(st.Ready))
	gauge("tandem_ring_epoch", float64(st.Epoch))
	gauge("tandem_ring_members", float64(len(st.Partitions)))
	gauge("tandem_under_replicated_partitions", float64(st.UnderReplicated))
	gauge("tandem_pending_partitions", float64(st.PendingHandoff))
	primary, buddy := m.node.Count()
	gauge("tandem_sessions", float64(primary), "primary")
	gauge("tandem_sessions", float64(buddy), "backup") // the label predates the word "buddy"; dashboards use it
	counter("tandem_reads_total", s.Reads)
	counter("tandem_writes_total", s.Writes)
	counter("tandem_replicated_total", s.Replicated)
	counter("tandem_under_replicated_writes_total", s.UnderReplicatedWrites)
	counter("tandem_replication_failures_total", s.ReplicationFailures)
	counter("tandem_buddy_copies_adopted_total", s.BuddyCopiesAdopted)
	counter("tandem_dropped_below_floor_total", s.DroppedBelowFloor)
	counter("tandem_expired_in_transit_total", s.ExpiredInTransit)
	counter("tandem_forwarded_total", s.Forwarded)
	counter("tandem_buddy_reads_total", s.BuddyReads)
	counter("tandem_unconfirmed_buddy_reads_refused_total", s.UnconfirmedRefused)
	counter("tandem_unconfirmed_copies_reported_total", s.UnconfirmedReported)
	counter("tandem_copies_resent_total", s.CopiesResent)
	counter("tandem_retries_total", s.Retries)
	counter("tandem_handoff_sent_sessions_total", s.HandoffSent)
	counter("tandem_handoff_received_sessions_total", s.HandoffReceived)
	counter("tandem_conflicts_total", s.Conflicts)
	counter("tandem_lost_partitions_total", s.LostPartitions)
	counter("tandem_expired_total", s.Expired)
	counter("tandem_pauses_total", s.Pauses)
	counter("tandem_duplicates_total", s.Duplicates)
	counter("tandem_lease_misses_total", s.LeaseMisses)
	counter("tandem_fence_waits_total", s.FenceWaits)
	counter("tandem_handover_waits_total", s.DisplacedWaits)
	counter("tandem_handoff_refusals_total", s.HandoffRefusals)
	counter("tandem_rejoins_total", s.Rejoins)
	counter("tandem_peer_identity_refusals_total", s.IdentityRefusals)
	counter("tandem_peer_wire_downs_total", s.PeerWireDowns)
	if seats := st.Seats; seats != nil {
		gauge("tandem_seat_config_version", float64(seats.Version))
		gauge("tandem_seats", float64(len(seats.Seats)))
		gauge("tandem_seat_live", one(seats.Live))
		gauge("tandem_seat_state_lost", one(seats.Lost))
	}
	lat := m.node.Latencies()
	for kind, h := range lat.Ops {
		ch <- m.histogram(m.ops, h, kind.String())
	}
	ch <- m.histogram(m.replication, lat.Replication)
	ch <- prometheus.MustNewConstMetric(m.buildInfo, prometheus.GaugeValue, 1, m.build.Version, m.build.GoVersion, m.build.Commit)
	for _, r := range m.node.PeerRequests() {
		ch <- prometheus.MustNewConstMetric(m.sent, prometheus.CounterValue, float64(r.Sent), r.Method)
		ch <- prometheus.MustNewConstMetric(m.received, prometheus.CounterValue, float64(r.Received), r.Method)
	}
}

// newRegistry returns a registry with the node's metrics and the Go
// runtime's and process's.
func newRegistry(node *tandem.Node) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(node), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// one is a flag as a gauge: 1 when b, else 0.
func one(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
