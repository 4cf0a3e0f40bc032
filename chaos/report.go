package chaos

import (
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Report is the record of a run: what was done, what came of it, and the
// verdict.
type Report struct {
	// Verdict is "PASS" or "FAIL".
	Verdict string `json:"verdict"`
	// Seed reproduces the run's fault schedule and workload choices.
	Seed int64 `json:"seed"`
	// Nodes is the cluster size.
	Nodes int `json:"nodes"`
	// FaultKinds are the kinds the schedule drew from.
	FaultKinds []FaultKind `json:"fault_kinds"`
	// Network is where the nodes ran: "netns" (each in a network
	// namespace of its own, links cut by nftables) or "loopback" (cuts
	// injected inside the processes).
	Network string `json:"network"`
	// Started is when the history began; Duration is the attack's
	// configured length and Elapsed the whole run's, settling included.
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration"`
	Elapsed  time.Duration `json:"elapsed"`
	// MaxSkew is the largest clock offset injected.
	MaxSkew time.Duration `json:"max_skew"`
	// Faults lists every fault injected, in order.
	Faults []FaultEvent `json:"faults"`
	// FaultsByKind counts them by kind.
	FaultsByKind map[FaultKind]int `json:"faults_by_kind"`
	// Ops counts the requests.
	Ops OpCounts `json:"ops"`
	// Anomalies lists every broken guarantee found.
	Anomalies []Anomaly `json:"anomalies"`
	// Linearizability gives porcupine's result per session.
	Linearizability map[string]porcupine.CheckResult `json:"linearizability"`
	// Sessions counts the long-lived sessions checked, Expiring the
	// expiring ones, and Copies the owners' own copies read after
	// settling and compared with the sessions' final state.
	Sessions int `json:"sessions"`
	Expiring int `json:"expiring"`
	Copies   int `json:"copies"`
	// CheckTime is how long the checker took.
	CheckTime time.Duration `json:"check_time"`
	// Unknown names the sessions whose linearizability check did not
	// finish; each fails the run.
	Unknown []string `json:"unknown"`
	// Warnings are the run's and the checker's warnings: not anomalies.
	Warnings []string `json:"warnings,omitempty"`
	// RunWarnings are the run's own: recoveries that took too long, faults
	// that could not be healed. Warnings holds them too.
	RunWarnings []string `json:"run_warnings,omitempty"`
	// Overlap is the run's Config.Overlap: how often a fault started
	// while the previous one held or recovered.
	Overlap float64 `json:"overlap,omitempty"`
	// Lost are the nodes' reports of partitions lost with both owners, as
	// polled from GET /v1/cluster during the run; Partitions is the ring's
	// partition count, to find a session's partition.
	Lost       []LostReport `json:"lost,omitempty"`
	Partitions int          `json:"partitions,omitempty"`
	// LostMetric is by how much the nodes' tandem_lost_partitions_total
	// counters grew, as polled; LostLogLines counts the nodes' log lines
	// reporting partitions lost.
	LostMetric   int `json:"lost_metric,omitempty"`
	LostLogLines int `json:"lost_log_lines,omitempty"`
	// LostReported names the sessions lost with both owners, as reported
	// (their partition reported lost, which explains everything found
	// wrong with them); Allowed lists what was found wrong with them. They
	// do not fail the run.
	LostReported []string  `json:"lost_reported,omitempty"`
	Allowed      []Anomaly `json:"allowed,omitempty"`
	// Series counts requests per second of the run, for the timeline.
	Series []Bucket `json:"series"`
	// Dir is the report's directory, with the nodes' logs under nodes/.
	Dir string `json:"dir"`
}

// OpCounts counts a run's requests.
type OpCounts struct {
	// Total counts every request, final reads included.
	Total int `json:"total"`
	// ByKind and ByOutcome break the total down.
	ByKind    map[OpKind]int  `json:"by_kind"`
	ByOutcome map[Outcome]int `json:"by_outcome"`
	// Retried counts writes sent again with their Idempotency-Key after
	// an answer was lost; RetriedOK, those a retry answered definitely.
	Retried   int `json:"retried"`
	RetriedOK int `json:"retried_ok"`
	// Posted counts creates sent as POST; Smart, requests sent through
	// the smart client; App, through an app's session middleware.
	Posted int `json:"posted"`
	Smart  int `json:"smart"`
	App    int `json:"app"`
}

// Bucket is one second of the run.
type Bucket struct {
	// Second counts from the history's start.
	Second int `json:"second"`
	// OK counts requests answered definitely (ok, not-found, conflict).
	OK int `json:"ok"`
	// Errors counts requests that failed: indeterminate or unsent.
	Errors int `json:"errors"`
}

// newReport assembles a report; runWarnings are the run's own warnings.
func newReport(cfg Config, h *History, events []FaultEvent, v Verdict, runWarnings []string, elapsed, maxSkew time.Duration) *Report {
	r := &Report{Verdict: v.String(), Seed: cfg.Seed, Nodes: cfg.Nodes, FaultKinds: cfg.Faults, Network: cfg.Network, Overlap: cfg.Overlap, Started: h.Start(),
		Duration: cfg.Duration, Elapsed: elapsed, MaxSkew: maxSkew, Faults: events, FaultsByKind: map[FaultKind]int{},
		Ops: OpCounts{ByKind: map[OpKind]int{}, ByOutcome: map[Outcome]int{}}, Anomalies: v.Anomalies,
		Warnings: append(slices.Clone(runWarnings), v.Warnings...), RunWarnings: runWarnings, Dir: cfg.ReportDir}
	r.setVerdict(v)
	for _, e := range events {
		r.FaultsByKind[e.Fault.Kind]++
	}
	for _, op := range h.Ops() {
		r.Ops.Total++
		r.Ops.ByKind[op.Kind]++
		r.Ops.ByOutcome[op.Outcome]++
		if op.Attempts > 1 {
			r.Ops.Retried++
			if op.Outcome != Indeterminate {
				r.Ops.RetriedOK++
			}
		}
		if op.Post {
			r.Ops.Posted++
		}
		if op.Smart {
			r.Ops.Smart++
		}
		if op.App {
			r.Ops.App++
		}
		if op.Final {
			continue // the read-back is not load
		}
		sec := int(op.Return / time.Second)
		for len(r.Series) <= sec {
			r.Series = append(r.Series, Bucket{Second: len(r.Series)})
		}
		if op.Outcome == Indeterminate || op.Outcome == Unsent {
			r.Series[sec].Errors++
		} else {
			r.Series[sec].OK++
		}
	}
	return r
}

// setVerdict records the checker's verdict in r.
func (r *Report) setVerdict(v Verdict) {
	r.Verdict, r.Anomalies, r.Linearizability = v.String(), v.Anomalies, v.Linearizability
	r.Sessions, r.Expiring, r.Copies = v.Sessions, v.Expiring, v.Copies
	r.Unknown = v.Unknown
	r.LostReported, r.Allowed = v.LostReported, v.Allowed
	if r.Unknown == nil {
		r.Unknown = []string{}
	}
}

// LinearizabilityCounts counts the sessions porcupine found linearizable,
// not linearizable, and could not decide.
func (r *Report) LinearizabilityCounts() (ok, illegal, unknown int) {
	for _, res := range r.Linearizability {
		switch res {
		case porcupine.Ok:
			ok++
		case porcupine.Illegal:
			illegal++
		default:
			unknown++
		}
	}
	return ok, illegal, unknown
}

// Summary renders the report's verdict and figures as text, one fact a
// line, anomalies last.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", r.Verdict)
	fmt.Fprintf(&b, "seed %d, %d nodes (network %s), attack %v, run %v\n", r.Seed, r.Nodes, r.Network, r.Duration, r.Elapsed.Round(time.Second))
	fmt.Fprintf(&b, "faults: %d (%s)\n", len(r.Faults), countsLine(r.FaultsByKind))
	if r.Overlap > 0 {
		over := 0
		for _, f := range r.Faults {
			if f.Fault.Overlap {
				over++
			}
		}
		fmt.Fprintf(&b, "overlap %g: %d faults started while the previous held or recovered\n", r.Overlap, over)
	}
	fmt.Fprintf(&b, "ops: %d (%s; %s)\n", r.Ops.Total, countsLine(r.Ops.ByKind), countsLine(r.Ops.ByOutcome))
	fmt.Fprintf(&b, "writes retried with their Idempotency-Key: %d (%d answered definitely by a retry); creates sent as POST: %d; requests through the smart client: %d, through an app's session middleware: %d\n", r.Ops.Retried, r.Ops.RetriedOK, r.Ops.Posted, r.Ops.Smart, r.Ops.App)
	ok, illegal, _ := r.LinearizabilityCounts()
	fmt.Fprintf(&b, "sessions checked: %d long-lived (linearizable %d, not %d, unknown %d), %d expiring; owners' copies compared: %d; check took %v\n",
		r.Sessions, ok, illegal, len(r.Unknown), r.Expiring, r.Copies, r.CheckTime.Round(time.Millisecond))
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	fmt.Fprintf(&b, "lost with both owners (reported): %d sessions, %d anomalies allowed; nodes reported %d losses of partitions (%s), metric +%d, log lines %d\n",
		len(r.LostReported), len(r.Allowed), len(r.Lost), lostPartitionsLine(r.Lost), r.LostMetric, r.LostLogLines)
	for _, id := range r.LostReported {
		fmt.Fprintf(&b, "  %s: partition %d reported lost\n", id, partitionOf(r.Partitions, id))
	}
	fmt.Fprintf(&b, "unknown: %d\n", len(r.Unknown))
	for _, id := range r.Unknown {
		fmt.Fprintf(&b, "  %s: linearizability check did not finish\n", id)
	}
	fmt.Fprintf(&b, "anomalies: %d\n", len(r.Anomalies))
	for _, a := range r.Anomalies {
		fmt.Fprintf(&b, "  %s\n", a)
	}
	return b.String()
}

// lostPartitionsLine names the partitions reports name, sorted, or
// "none".
func lostPartitionsLine(reports []LostReport) string {
	seen := map[int]bool{}
	for _, r := range reports {
		for _, p := range r.Partitions {
			seen[p] = true
		}
	}
	if len(seen) == 0 {
		return "none"
	}
	return fmt.Sprintf("partitions %v", slices.Sorted(maps.Keys(seen)))
}

// countsLine renders counts as "a 3, b 1", sorted by name.
func countsLine[K ~string](m map[K]int) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// WriteReport writes r to dir as report.json and report.html, and h as
// history.json.
func WriteReport(dir string, r *Report, h *History) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("write report: encode: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), js, 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	hist, err := json.Marshal(h.Ops())
	if err != nil {
		return fmt.Errorf("write history: encode: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "history.json"), hist, 0o644); err != nil {
		return fmt.Errorf("write history: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, "report.html"))
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	defer f.Close()
	ok, illegal, _ := r.LinearizabilityCounts()
	if err := reportPage.Execute(f, pageData{Report: r, Timeline: timeline(r), Kinds: countsLine(r.FaultsByKind),
		OpKinds: countsLine(r.Ops.ByKind), Outcomes: countsLine(r.Ops.ByOutcome), LinOK: ok, LinIllegal: illegal}); err != nil {
		return fmt.Errorf("write report page: %w", err)
	}
	return f.Close()
}

// pageData feeds the report page.
type pageData struct {
	*Report
	Timeline                 template.HTML
	Kinds, OpKinds, Outcomes string
	LinOK, LinIllegal        int
}

// faultColors colours each fault kind on the timeline.
var faultColors = map[FaultKind]string{
	FaultKill: "#d62728", FaultRestart: "#ff7f0e", FaultGraceful: "#bcbd22", FaultPause: "#9467bd",
	FaultPartition: "#1f77b4", FaultOneWay: "#17becf", FaultIsolate: "#8c564b", FaultDelay: "#7f7f7f",
	FaultDrop: "#e377c2", FaultClock: "#2ca02c", FaultSplit: "#393b79",
}

// timeline draws the run as inline SVG: a lane of faults per node,
// requests per second (answered and failed), and anomalies as red marks.
func timeline(r *Report) template.HTML {
	const width, left, lane = 1100.0, 60.0, 18.0
	secs := max(len(r.Series), 1)
	for _, f := range r.Faults {
		secs = max(secs, int(f.End/time.Second)+1)
	}
	x := func(d time.Duration) float64 { return left + (width-left-10)*d.Seconds()/float64(secs) }
	chartTop := 20 + lane*float64(r.Nodes) + 20
	const chartH = 140.0
	height := chartTop + chartH + 40
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`, width, height)
	for i := range r.Nodes {
		y := 20 + lane*float64(i)
		fmt.Fprintf(&b, `<text x="4" y="%.1f">n%d</text><line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`, y+12, i+1, left, y+lane/2, width-10, y+lane/2)
	}
	for _, e := range r.Faults {
		lanes := []int{e.Fault.Node}
		if e.Fault.Peer >= 0 {
			lanes = append(lanes, e.Fault.Peer)
		}
		for _, n := range lanes {
			y := 20 + lane*float64(n)
			w := max(x(e.End)-x(e.Start), 2)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" opacity="0.8"><title>%s at %v</title></rect>`,
				x(e.Start), y+2, w, lane-4, faultColors[e.Fault.Kind], template.HTMLEscapeString(e.Fault.String()), e.Start.Round(time.Millisecond))
		}
	}
	peak := 1
	for _, s := range r.Series {
		peak = max(peak, s.OK, s.Errors)
	}
	yv := func(v int) float64 { return chartTop + chartH - chartH*float64(v)/float64(peak) }
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999"/>`, left, chartTop+chartH, width-10, chartTop+chartH)
	fmt.Fprintf(&b, `<text x="4" y="%.1f">%d/s</text><text x="4" y="%.1f">0</text>`, chartTop+8, peak, chartTop+chartH)
	for _, s := range r.Series {
		if s.Errors > 0 {
			x0 := x(time.Duration(s.Second) * time.Second)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#f4a3a3"><title>second %d: %d failed</title></rect>`,
				x0, yv(s.Errors), max(x(time.Second)-left-1, 1), chartTop+chartH-yv(s.Errors), s.Second, s.Errors)
		}
	}
	var pts []string
	for _, s := range r.Series {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(time.Duration(s.Second)*time.Second+time.Second/2), yv(s.OK)))
	}
	fmt.Fprintf(&b, `<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="%s"/>`, strings.Join(pts, " "))
	if end := x(r.Duration); r.Duration > 0 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="10" x2="%.1f" y2="%.1f" stroke="#555" stroke-dasharray="4 3"/><text x="%.1f" y="%.1f" fill="#555" text-anchor="end">attack ends</text>`,
			end, end, chartTop+chartH, end-3, chartTop+10)
	}
	if end := x(r.Duration); r.Duration > 0 {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="10" x2="%.1f" y2="%.1f" stroke="#555" stroke-dasharray="4 3"/><text x="%.1f" y="%.1f" fill="#555" text-anchor="end">attack ends</text>`,
			end, end, chartTop+chartH, end-3, chartTop+10)
	}
	for _, a := range r.Anomalies {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="10" x2="%.1f" y2="%.1f" stroke="red" stroke-width="1.5"><title>%s</title></line>`,
			x(a.At), x(a.At), chartTop+chartH, template.HTMLEscapeString(a.String()))
	}
	for s := 0; s <= secs; s += max(secs/10, 1) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%ds</text>`, x(time.Duration(s)*time.Second), chartTop+chartH+16, s)
	}
	lx := left
	for _, k := range AllFaults {
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/><text x="%.1f" y="%.1f">%s</text>`, lx, height-14, faultColors[k], lx+13, height-5, k)
		lx += 80
	}
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#1f77b4" stroke-width="2"/><text x="%.1f" y="%.1f">answered/s</text>`, lx, height-9, lx+14, height-9, lx+17, height-5)
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="10" height="10" fill="#f4a3a3"/><text x="%.1f" y="%.1f">failed/s</text>`, lx+90, height-14, lx+103, height-5)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// reportPage is the HTML report; it needs no script.
var reportPage = template.Must(template.New("report").Funcs(template.FuncMap{
	"ms": func(d time.Duration) string { return d.Round(time.Millisecond).String() },
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Tandem chaos run {{.Seed}}: {{.Verdict}}</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; }
.PASS { color: #2ca02c; } .FAIL { color: #d62728; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; font-size: 13px; }
th { background: #f5f5f5; }
</style></head><body>
<h1>Tandem chaos run: <span class="{{.Verdict}}">{{.Verdict}}</span></h1>
<p>Seed <b>{{.Seed}}</b> · {{.Nodes}} nodes · attack {{.Duration}} · whole run {{ms .Elapsed}} · started {{.Started.Format "2006-01-02 15:04:05 MST"}}</p>
<p>Faults: {{len .Faults}} ({{.Kinds}}) · largest clock skew {{.MaxSkew}}</p>
<p>Requests: {{.Ops.Total}} ({{.OpKinds}}) · outcomes: {{.Outcomes}}</p>
<h2>Timeline</h2>
{{.Timeline}}
<p>Sessions checked: {{.Sessions}} long-lived (each at most a bounded number of requests; porcupine: {{.LinOK}} linearizable, {{.LinIllegal}} not, {{len .Unknown}} unknown) · {{.Expiring}} expiring · owners' own copies compared with the final state: {{.Copies}}</p>
<h2>Unknown ({{len .Unknown}})</h2>
{{if .Unknown}}<p>These sessions' linearizability checks did not finish; each fails the run.</p><ul>{{range .Unknown}}<li>{{.}}</li>{{end}}</ul>{{else}}<p>None: every session's check finished.</p>{{end}}
<h2>Anomalies ({{len .Anomalies}})</h2>
{{if .Anomalies}}<table><tr><th>at</th><th>kind</th><th>session</th><th>what happened</th><th>ops</th><th>porcupine</th></tr>
{{range .Anomalies}}<tr><td>{{ms .At}}</td><td>{{.Kind}}</td><td>{{.Session}}</td><td>{{.Detail}}</td><td>{{.Ops}}</td><td>{{if .Visualization}}<a href="{{.Visualization}}">visualization</a>{{end}}</td></tr>
{{end}}</table>{{else}}<p>None: every acknowledged write was read back, reads were linearizable, no delete came back, nothing expired was served.</p>{{end}}
<h2>Lost with both owners, reported ({{len .LostReported}})</h2>
<p>Losing a partition's primary and buddy before redundancy is restored is the one loss the guarantees allow. A session's anomalies are allowed only when a node reported its partition lost (GET /v1/cluster, field lost) and that loss explains every one of them. Nodes reported {{len .Lost}} losses; tandem_lost_partitions_total grew by {{.LostMetric}}; the nodes' logs hold {{.LostLogLines}} lines reporting lost partitions.</p>
{{if .Lost}}<table><tr><th>node</th><th>epoch</th><th>partitions</th><th>healthy until</th><th>seen at</th></tr>
{{range .Lost}}<tr><td>{{.Node}}</td><td>{{.Epoch}}</td><td>{{.Partitions}}</td><td>{{ms .Since}}</td><td>{{ms .Seen}}</td></tr>
{{end}}</table>{{end}}
{{if .LostReported}}<ul>{{range .LostReported}}<li>{{.}}</li>{{end}}</ul>
<table><tr><th>at</th><th>kind</th><th>session</th><th>what happened (allowed)</th><th>ops</th></tr>
{{range .Allowed}}<tr><td>{{ms .At}}</td><td>{{.Kind}}</td><td>{{.Session}}</td><td>{{.Detail}}</td><td>{{.Ops}}</td></tr>
{{end}}</table>{{end}}
{{if .Warnings}}<h2>Warnings</h2><ul>{{range .Warnings}}<li>{{.}}</li>{{end}}</ul>{{end}}
<h2>Faults</h2>
<table><tr><th>#</th><th>fault</th><th>start</th><th>healed</th><th>healthy again</th><th>error</th></tr>
{{range .Faults}}<tr><td>{{.Fault.Seq}}</td><td>{{.Fault}}</td><td>{{ms .Start}}</td><td>{{ms .End}}</td><td>{{if .Recovered}}{{ms .Recovered}}{{else}}—{{end}}</td><td>{{.Error}}</td></tr>
{{end}}</table>
<p>Files beside this page: report.json, history.json (every request), nodes/node-N.log.</p>
</body></html>
`))

// ReadReport reads a report and its history back from dir, as WriteReport
// wrote them.
func ReadReport(dir string) (*Report, *History, error) {
	var r Report
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		return nil, nil, fmt.Errorf("read report: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, nil, fmt.Errorf("read report %s: %w", dir, err)
	}
	var ops []Op
	if b, err = os.ReadFile(filepath.Join(dir, "history.json")); err != nil {
		return nil, nil, fmt.Errorf("read history: %w", err)
	}
	if err := json.Unmarshal(b, &ops); err != nil {
		return nil, nil, fmt.Errorf("read history %s: %w", dir, err)
	}
	h := HistoryOf(ops)
	h.start = r.Started
	return &r, h, nil
}

// Recheck checks the history of the run reported in dir again, with the
// checker as it is now, and rewrites the report there. The skew allowance,
// the faults drawn and the visualization directory come from the report;
// cfg may set the rest, such as a longer LinearizabilityTimeout.
func Recheck(dir string, cfg CheckConfig) (*Report, error) {
	r, h, err := ReadReport(dir)
	if err != nil {
		return nil, err
	}
	cfg.MaxSkew, cfg.VisualizeDir, cfg.Faults = r.MaxSkew, dir, r.Faults
	cfg.Lost, cfg.Partitions = r.Lost, r.Partitions
	checking := time.Now()
	v := Check(h, cfg)
	r.setVerdict(v)
	r.CheckTime = time.Since(checking)
	r.Warnings = append(slices.Clone(r.RunWarnings), v.Warnings...)
	if err := WriteReport(dir, r, h); err != nil {
		return nil, err
	}
	return r, nil
}
