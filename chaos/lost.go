package chaos

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/tandem-io/tandem/replica"
	"github.com/tandem-io/tandem/replica/peer"
	"github.com/tandem-io/tandem/ring"
)

// LostReport is one loss of partitions as a node reported it in GET
// /v1/cluster (its field lost): partitions whose primary and buddy both
// left the node's ring at once, so that their sessions are gone. Losing
// both owners before redundancy is restored is the one loss Tandem's
// guarantees allow; the checker allows a lost write only in a partition
// some node reported so (see CheckConfig.Lost).
type LostReport struct {
	// Node is the node that reported it.
	Node string `json:"node"`
	// Epoch is the reporting node's ring that had neither owner left.
	Epoch uint64 `json:"epoch"`
	// Partitions are the partitions lost.
	Partitions []int `json:"partitions"`
	// Seen is when the harness first saw the report, since the history
	// began: the loss happened before.
	Seen time.Duration `json:"seen"`
	// Since is when the harness last saw every node healthy (ready, with
	// every node in its ring: two copies of everything) before it saw the
	// report: the loss happened after. Zero is the history's start.
	Since time.Duration `json:"since"`
}

// LossWatcher polls every node's GET /v1/cluster and accumulates the lost
// partitions they report. A node's report holds only its latest loss, and
// a restarted node has none, so the watcher polls often (LossWatcher.Run)
// to see every report before it is overwritten. It also counts each
// node's metric tandem_lost_partitions_total.
type LossWatcher struct {
	c        *Cluster
	h        *History
	interval time.Duration

	mu          sync.Mutex
	reports     []LostReport
	last        map[string]string // node → its latest report's key
	lastHealthy time.Duration
	healthy     []time.Duration // every poll that found the cluster healthy, in order
	partitions  int
	metric      map[string]float64 // node → the latest value of its counter
	metricTotal int                // increments of the counters seen
}

// NewLossWatcher returns a watcher of c's nodes, timing reports on h's
// clock and polling every interval (default 1s) when run.
func NewLossWatcher(c *Cluster, h *History, interval time.Duration) *LossWatcher {
	if interval <= 0 {
		interval = time.Second
	}
	return &LossWatcher{c: c, h: h, interval: interval, last: map[string]string{}, metric: map[string]float64{}}
}

// Run polls every node until ctx ends.
func (lw *LossWatcher) Run(ctx context.Context) {
	for {
		lw.Poll(ctx)
		if !sleepCtx(ctx, lw.interval) {
			return
		}
	}
}

// Poll asks every node once, at the same time, and records new reports.
func (lw *LossWatcher) Poll(ctx context.Context) {
	now := lw.h.Since(time.Now())
	type answer struct {
		st     clusterStatus
		err    error
		metric float64
		merr   error
	}
	answers := make([]answer, lw.c.Size())
	var wg sync.WaitGroup
	for i := range lw.c.Size() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := lw.c.Node(i)
			answers[i].err = lw.c.get(ctx, n.HTTP, "/v1/cluster", &answers[i].st)
			answers[i].metric, answers[i].merr = lw.c.counter(ctx, n.HTTP, "tandem_lost_partitions_total")
		}()
	}
	wg.Wait()
	if lw.partitionsUnknown() {
		lw.learnPartitions(ctx)
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	healthy := true
	for i, a := range answers {
		name := lw.c.Node(i).Name
		if a.err != nil || lw.c.State(i) != Running || !a.st.Ready || len(a.st.Partitions) != lw.c.Size() {
			healthy = false
		}
		if a.merr == nil {
			// A restarted node counts from zero again.
			if prev := lw.metric[name]; a.metric > prev {
				lw.metricTotal += int(a.metric - prev)
			} else if a.metric < prev && a.metric > 0 {
				lw.metricTotal += int(a.metric)
			}
			lw.metric[name] = a.metric
		}
		if a.err != nil || len(a.st.Lost.Partitions) == 0 {
			continue
		}
		key := fmt.Sprint(a.st.Lost.Epoch, a.st.Lost.Partitions)
		if lw.last[name] == key {
			continue
		}
		lw.last[name] = key
		lw.reports = append(lw.reports, LostReport{Node: name, Epoch: a.st.Lost.Epoch, Partitions: slices.Clone(a.st.Lost.Partitions),
			Seen: now, Since: lw.lastHealthy})
	}
	if healthy {
		lw.lastHealthy = now
		lw.healthy = append(lw.healthy, now)
	}
}

// ReadLogs adds the losses the nodes' logs (node-N.log in dir) report
// that polling missed: a node killed or restarted within a poll interval
// of a loss it found takes its report with it, but its log keeps the
// line. Such a report is seen at the line's time, and its loss happened
// after the last poll before it that found the cluster healthy. It
// returns how many it added.
func (lw *LossWatcher) ReadLogs(dir string) int {
	logged := lossesInLogs(dir, lw.h)
	lw.mu.Lock()
	defer lw.mu.Unlock()
	added := 0
	for _, r := range logged {
		if slices.ContainsFunc(lw.reports, func(x LostReport) bool {
			return x.Node == r.Node && x.Epoch == r.Epoch && slices.Equal(x.Partitions, r.Partitions)
		}) {
			continue
		}
		i, _ := slices.BinarySearch(lw.healthy, r.Seen)
		if i > 0 {
			r.Since = lw.healthy[i-1]
		}
		lw.reports = append(lw.reports, r)
		added++
	}
	slices.SortStableFunc(lw.reports, func(a, b LostReport) int { return cmp.Compare(a.Seen, b.Seen) })
	return added
}

// lossLine matches a node's log line reporting lost partitions (both
// owners gone at once, or a hand-off no previous owner answered in time),
// as tandem serve writes it with log/slog's text handler, which quotes a
// list of partitions only when it holds a space.
var lossLine = regexp.MustCompile(`^time=(\S+) level=ERROR msg="(?:` + regexp.QuoteMeta(lossLogLine) + `|` + regexp.QuoteMeta(handoffLossLogLine) + `)[^"]*" node=(\S+) epoch=(\d+) partitions="?\[([0-9 ]*)\]"?`)

// lossesInLogs returns the losses reported in the node logs in dir, timed
// on h's clock by the lines' times.
func lossesInLogs(dir string, h *History) []LostReport {
	var out []LostReport
	scanNodeLogs(dir, func(line string) {
		if r, ok := parseLossLine(line, h); ok {
			out = append(out, r)
		}
	})
	return out
}

// scanNodeLogs calls f with every line of the node logs (node-N.log) in
// dir; a log that cannot be read is skipped.
func scanNodeLogs(dir string, f func(line string)) {
	files, _ := filepath.Glob(filepath.Join(dir, "node-*.log"))
	for _, name := range files {
		file, err := os.Open(name)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(file)
		sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
		for sc.Scan() {
			f(sc.Text())
		}
		file.Close()
	}
}

// parseLossLine reads one loss from a log line, if it reports one.
func parseLossLine(line string, h *History) (LostReport, bool) {
	m := lossLine.FindStringSubmatch(line)
	if m == nil {
		return LostReport{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, m[1])
	if err != nil {
		return LostReport{}, false
	}
	epoch, err := strconv.ParseUint(m[3], 10, 64)
	if err != nil {
		return LostReport{}, false
	}
	var parts []int
	for _, f := range strings.Fields(m[4]) {
		p, err := strconv.Atoi(f)
		if err != nil {
			return LostReport{}, false
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return LostReport{}, false
	}
	return LostReport{Node: m[2], Epoch: epoch, Partitions: parts, Seen: h.Since(at)}, true
}

// partitionsUnknown reports whether the ring's partition count is still
// to be learnt.
func (lw *LossWatcher) partitionsUnknown() bool {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.partitions == 0
}

// learnPartitions asks the nodes for their ring (replica.MethodRing) until
// one answers, for the partition count sessions are hashed into.
func (lw *LossWatcher) learnPartitions(ctx context.Context) {
	pc := peer.NewClient(peer.DefaultClientConfig())
	defer pc.Close()
	for _, n := range lw.c.Nodes() {
		var ri replica.RingInfo
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := pc.Call(cctx, n.Peer, replica.MethodRing, nil, &ri)
		cancel()
		if err == nil && ri.Partitions > 0 {
			lw.mu.Lock()
			lw.partitions = ri.Partitions
			lw.mu.Unlock()
			return
		}
	}
}

// Reports returns the reports seen so far, in the order seen.
func (lw *LossWatcher) Reports() []LostReport {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return slices.Clone(lw.reports)
}

// Partitions returns the ring's partition count, or 0 if no node told.
func (lw *LossWatcher) Partitions() int {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.partitions
}

// MetricIncrements returns by how much the nodes' counters
// tandem_lost_partitions_total were seen to grow, summed over the nodes.
func (lw *LossWatcher) MetricIncrements() int {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.metricTotal
}

// counter reads one counter's value from node addr's GET /metrics.
func (c *Cluster) counter(ctx context.Context, addr, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, fmt.Errorf("chaos: metrics of %s: %w", addr, err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("chaos: metrics of %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return 0, fmt.Errorf("chaos: metrics of %s: %s", addr, resp.Status)
	}
	v, err := parseCounter(resp.Body, name)
	if err != nil {
		return 0, fmt.Errorf("chaos: metrics of %s: %w", addr, err)
	}
	return v, nil
}

// parseCounter sums the samples of counter name, with any labels, in a
// Prometheus text exposition: `name{node="n1"} 19`.
func parseCounter(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	var sum float64
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(fields) == 0 {
			return 0, fmt.Errorf("chaos: metric %s: no value in %q", name, sc.Text())
		}
		f, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return 0, fmt.Errorf("chaos: metric %s: %w", name, err)
		}
		sum += f
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("chaos: metric %s: %w", name, err)
	}
	return sum, nil
}

// lossLogLine is what a node logs, at level error, when it finds
// partitions with both owners gone.
const lossLogLine = "both owners of partitions lost at once"

// handoffLossLogLine is what a node logs, at level error, when no
// previous owner of partitions it took over answered within the hand-off
// timeout.
const handoffLossLogLine = "no previous owner of partitions answered within the hand-off timeout"

// countLossLogLines counts the lines reporting lost partitions in the
// node logs (node-N.log) in dir.
func countLossLogLines(dir string) int {
	n := 0
	scanNodeLogs(dir, func(line string) {
		if strings.Contains(line, lossLogLine) {
			n++
		}
	})
	return n
}

// lossClient numbers, in porcupine's input, the resets that stand for
// losses: above any workload client.
const lossClient = 1 << 20

// lossWindow is when a reported loss of a partition happened: after since,
// before seen.
type lossWindow struct {
	since, seen time.Duration
	nodes       []string // the nodes that reported it
}

// lossReportsApart bounds how far apart two nodes' reports of one loss are
// seen: each node that finds a loss reports it when its ring changes, or
// when its hand-off of the partition gives up, a HandoffTimeout (10 s by
// default) later; the harness polls them about every second.
const lossReportsApart = 15 * time.Second

// lossWindows indexes reports by partition. Reports of one partition with
// the same Since from different nodes (each reporting the same loss under
// its own epoch), seen within lossReportsApart of each other, are one
// loss, seen when the first of them was; of those, a report joins the one
// seen closest to it. Two reports of one partition by the same node are
// two losses: a node reports each loss it finds once, and while the
// cluster is never healthy in between, two losses of a partition share
// their Since. So are two reports seen further apart: a loss found at
// 11 s and another at 48 s, while the cluster was never healthy, are two.
func lossWindows(reports []LostReport) map[int][]lossWindow {
	out := map[int][]lossWindow{}
	for _, r := range reports {
		for _, p := range r.Partitions {
			ws := out[p]
			best := -1
			for i, w := range ws {
				if w.since != r.Since || slices.Contains(w.nodes, r.Node) || absDuration(w.seen-r.Seen) > lossReportsApart {
					continue
				}
				if best < 0 || absDuration(w.seen-r.Seen) < absDuration(ws[best].seen-r.Seen) {
					best = i
				}
			}
			if best >= 0 {
				ws[best].seen = min(ws[best].seen, r.Seen)
				ws[best].nodes = append(ws[best].nodes, r.Node)
				continue
			}
			out[p] = append(ws, lossWindow{since: r.Since, seen: r.Seen, nodes: []string{r.Node}})
		}
	}
	return out
}

// absDuration is |d|.
func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// partitionOf returns the partition of session id in a ring of partitions
// partitions (0: Tandem's default).
func partitionOf(partitions int, id string) int {
	if partitions <= 0 {
		partitions = ring.DefaultPartitions
	}
	return ring.PartitionOf(ring.Config{Partitions: partitions}, id)
}

// explainedByLoss reports whether a session's anomalies (as) are all
// explained by a reported loss of its partition (ws): each is of the
// shape a loss leaves (the session went back to nothing: a lost write, a
// stale read, a version answered twice with two contents, no
// linearization) and was seen in an op answered after the loss could have
// begun; and, for a long-lived session, porcupine linearizes its history
// (ops) once each loss is put in as a reset of the session to nothing,
// somewhere between the loss's Since and Seen. Anything else a loss does
// not explain, and stays an anomaly.
func explainedByLoss(ops []*Op, all []Op, as []Anomaly, ws []lossWindow, expiring bool, cfg CheckConfig) bool {
	earliest := ws[0].since
	for _, w := range ws {
		earliest = min(earliest, w.since)
	}
	for _, a := range as {
		if !a.loss {
			return false
		}
		if a.Kind == NotLinearizable {
			continue // the linearization below decides
		}
		var last time.Duration
		for _, i := range a.Ops {
			if i >= 0 && i < len(all) {
				last = max(last, all[i].Return)
			}
		}
		if last < earliest {
			return false
		}
	}
	if expiring {
		return true
	}
	_, base := linearizationInput(ops, func(*Op) bool { return false })
	model := sessionModel
	model.DescribeOperationMetadata = func(m any) string { s, _ := m.(string); return s }
	// A reported loss of the partition may or may not have taken this
	// session (it may have been written again on the new owners before the
	// loss was seen, or never been on the node that lost it): each window
	// is a reset the history may have, not one it must. Every subset of
	// the windows is tried, the whole set first; past maxLossSubsets
	// windows, only the whole set and each window left out alone.
	subsets := lossSubsets(len(ws))
	for _, keep := range subsets {
		pops := slices.Clone(base)
		for i, w := range ws {
			if !keep(i) {
				continue
			}
			pops = append(pops, porcupine.Operation{
				ClientId: lossClient + i,
				Input:    modelInput{Kind: opLost},
				Call:     int64(w.since),
				Output:   modelOutput{Outcome: OK},
				Return:   int64(max(w.seen, w.since)),
				Metadata: fmt.Sprintf("partition reported lost between %v and %v", w.since, w.seen),
			})
		}
		if porcupine.CheckOperationsTimeout(model, pops, cfg.LinearizabilityTimeout) == porcupine.Ok {
			return true
		}
	}
	return false
}

// maxLossSubsets bounds the loss windows of one partition whose every
// subset explainedByLoss tries: 2^8 checks of one session's history.
const maxLossSubsets = 8

// lossSubsets returns the subsets of n loss windows to try, each as a
// membership test, the whole set first: every subset up to maxLossSubsets
// windows; past that, the whole set and the whole set less each one.
func lossSubsets(n int) []func(int) bool {
	var out []func(int) bool
	if n <= maxLossSubsets {
		for m := (1 << n) - 1; m >= 0; m-- {
			out = append(out, func(i int) bool { return m&(1<<i) != 0 })
		}
		return out
	}
	out = append(out, func(int) bool { return true })
	for j := range n {
		out = append(out, func(i int) bool { return i != j })
	}
	return out
}
