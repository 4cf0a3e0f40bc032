//go:build unix

// Command tandem-idle measures what an idle Tandem cluster costs by its
// size. For each cluster size it starts that many `tandem serve`
// processes on loopback (-insecure, ports picked by the kernel), waits
// until every node is ready with all of them in its ring, lets them
// settle without traffic, and then measures over a window:
//
//   - each process's CPU time, utime plus stime from /proc/PID/stat, in
//     percent of one core;
//   - the peer-wire requests each node sent and received, by method: the
//     growth of tandem_peer_requests_sent_total and
//     tandem_peer_requests_received_total on its /metrics, per second.
//
// It prints one table row per size (cluster CPU, CPU per node, requests
// sent per node per second, by method, and the CPU the rest of the
// machine used meanwhile) and, with -json, writes every figure per node.
//
//	tandem-idle -members 3,6,12,24 -settle 10s -measure 10s
//	tandem-idle -members 3 -profile local -json idle.json -- -min-members 2
//
// Arguments after the flags (after --) are passed to every `tandem serve`,
// after the tool's own, so they win. The nodes get no TANDEM_* variables.
// Gossip (memberlist) packets are not counted: the nodes export no
// counts of them.
//
// Every wait is bounded (-start-timeout, -settle, -measure, 5s per HTTP
// request), every node process is killed when a size is measured, on an
// error and on Ctrl-C, and the kernel kills them should the tool die.
// It reads /proc, so it measures on Linux only.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tandem-io/tandem/cmd/internal/serveproc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tandem-idle:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// errUsage marks a mistake on the command line.
var errUsage = errors.New("usage")

// options are the command's flags.
type options struct {
	members         []int
	settle, measure time.Duration
	startTimeout    time.Duration
	binary, profile string
	jsonFile        string
	logs            string
	serveArgs       []string
	rate            int
}

// parse reads the command line.
func parse(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("tandem-idle", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: tandem-idle [flags] [-- tandem serve flags]")
		fs.PrintDefaults()
	}
	var o options
	members := fs.String("members", "3,6,12,24", "comma-separated cluster sizes to measure, one after the other")
	fs.DurationVar(&o.settle, "settle", 10*time.Second, "how long to leave a cluster alone once every node is ready, before measuring")
	fs.DurationVar(&o.measure, "measure", 10*time.Second, "the measuring window")
	fs.DurationVar(&o.startTimeout, "start-timeout", 2*time.Minute, "bound on starting a cluster until every node is ready with every member in its ring")
	fs.StringVar(&o.binary, "binary", "", "tandem binary to run (default: go build ./cmd/tandem into a temporary directory)")
	fs.StringVar(&o.profile, "profile", "", "the nodes' -profile, lan or local (default: tandem serve's default)")
	fs.StringVar(&o.jsonFile, "json", "", "write every figure, per node, to this file as JSON")
	fs.IntVar(&o.rate, "rate", 0, "run a light session mix through the nodes' HTTP APIs while settling and measuring: this many requests per second in all, 90 % reads and 10 % writes over 1,000 sessions, spread over the nodes (0: idle)")
	fs.StringVar(&o.logs, "logs", "", "directory for the nodes' output, idle-<members>-<node>.log (default: a temporary directory, removed unless a run fails)")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%w: %w", errUsage, err)
	}
	o.serveArgs = fs.Args()
	for _, f := range strings.Split(*members, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return o, fmt.Errorf("%w: -members %q: want sizes of at least 1, comma-separated", errUsage, *members)
		}
		o.members = append(o.members, n)
	}
	if o.settle < 0 || o.measure <= 0 || o.startTimeout <= 0 || o.rate < 0 || o.rate > 5000 {
		return o, fmt.Errorf("%w: -settle and -rate must not be negative, -measure and -start-timeout must be positive, -rate at most 5000", errUsage)
	}
	if o.profile != "" {
		o.serveArgs = append([]string{"-profile", o.profile}, o.serveArgs...)
	}
	return o, nil
}

// report is everything measured, as -json writes it.
type report struct {
	Date   time.Time `json:"date"`
	Binary string    `json:"binary"`
	// Source is the commit the tool built the binary from, "-dirty" when
	// the work tree had changes; empty when given -binary.
	Source    string   `json:"source,omitempty"`
	Version   string   `json:"version"`
	Profile   string   `json:"profile"`
	ServeArgs []string `json:"serve_args"`
	Settle    string   `json:"settle"`
	// Rate is the session mix's requests per second in all (0: idle).
	Rate       int      `json:"rate"`
	Measure    string   `json:"measure"`
	CPUs       int      `json:"cpus"`
	ClockTicks int      `json:"clock_ticks_per_second"`
	Runs       []result `json:"runs"`
}

// result is one cluster size's figures.
type result struct {
	Members int `json:"members"`
	// WindowSeconds is the CPU window's length.
	WindowSeconds float64 `json:"window_seconds"`
	// ClusterCPU is the CPU all nodes used, in percent of one core.
	ClusterCPU float64 `json:"cluster_cpu_percent"`
	// NodeCPU and NodeCPUMax are the mean and the largest per node.
	NodeCPU    float64 `json:"node_cpu_percent"`
	NodeCPUMax float64 `json:"node_cpu_percent_max"`
	// OtherCPU is what the rest of the machine used meanwhile (this tool
	// included), in percent of one core, from /proc/stat.
	OtherCPU float64 `json:"other_cpu_percent"`
	// Sent and Received are the peer requests per node per second, by
	// method: the nodes' sum divided by Members.
	Sent     map[string]float64 `json:"sent_per_node_per_second"`
	Received map[string]float64 `json:"received_per_node_per_second"`
	// Requests and Failed count the session mix's requests during the
	// window, and those not answered 2xx (404 for a read of a session
	// not yet written counts as answered).
	Requests int `json:"requests,omitempty"`
	Failed   int `json:"failed,omitempty"`
	// Warnings say what may make the figures unrepresentative.
	Warnings []string `json:"warnings,omitempty"`
	Nodes    []node   `json:"nodes"`
}

// node is one node's figures over the window.
type node struct {
	Name       string  `json:"name"`
	PID        int     `json:"pid"`
	CPUTicks   uint64  `json:"cpu_ticks"`
	CPUPercent float64 `json:"cpu_percent"`
	// MetricsSeconds is the time between the two scrapes of /metrics.
	MetricsSeconds float64           `json:"metrics_seconds"`
	Sent           map[string]uint64 `json:"sent"`
	Received       map[string]uint64 `json:"received"`
	// RSSBytes and Goroutines are read at the window's end.
	RSSBytes   float64 `json:"rss_bytes"`
	Goroutines float64 `json:"goroutines"`
	// RingMembers and RingEpoch are read at the window's end; EpochBefore
	// at its start.
	RingMembers float64 `json:"ring_members"`
	EpochBefore float64 `json:"ring_epoch_before"`
	RingEpoch   float64 `json:"ring_epoch"`
}

// run parses args, measures every cluster size and prints the table.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parse(args, stderr)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "tandem-idle-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(tmp)
		}
	}()
	if o.logs == "" {
		o.logs = filepath.Join(tmp, "logs")
	}
	if err := os.MkdirAll(o.logs, 0o755); err != nil {
		return fmt.Errorf("-logs: %w", err)
	}
	var source string
	if o.binary == "" {
		fmt.Fprintln(stderr, "building", serveproc.Package)
		if o.binary, err = serveproc.Build(ctx, tmp); err != nil {
			return fmt.Errorf("%w (or give -binary)", err)
		}
		source = gitSource(ctx)
	}
	rep := report{Date: time.Now().UTC().Truncate(time.Second), Binary: o.binary, Source: source, ServeArgs: o.serveArgs,
		Settle: o.settle.String(), Measure: o.measure.String(), Rate: o.rate, CPUs: runtime.NumCPU()}
	if rep.Version, rep.Profile, err = describe(ctx, o); err != nil {
		return err
	}
	if rep.ClockTicks, err = clockTicks(); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%s, profile %s, %d CPUs, logs in %s\n", rep.Version, rep.Profile, rep.CPUs, o.logs)
	for _, n := range o.members {
		r, err := measure(ctx, o, n, rep.ClockTicks, stderr)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("%d members: %w", n, err)
			}
			keep = strings.HasPrefix(o.logs, tmp)
			return fmt.Errorf("%d members: %w; the nodes' output is in %s", n, err, o.logs)
		}
		rep.Runs = append(rep.Runs, r)
		fmt.Fprintf(stderr, "%d members: cluster %.1f %% of a core, %.2f %% per node, %.1f requests sent per node per second\n",
			n, r.ClusterCPU, r.NodeCPU, total(r.Sent))
	}
	printTable(stdout, rep)
	if o.jsonFile != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return fmt.Errorf("encode -json: %w", err)
		}
		if err := os.WriteFile(o.jsonFile, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("-json: %w", err)
		}
	}
	return nil
}

// describe returns the binary's version line and the nodes' effective
// profile, as `tandem serve -print-config` gives it with the same flags
// (which also checks them before anything starts).
func describe(ctx context.Context, o options) (version, profile string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, o.binary, "version").Output()
	if err != nil {
		return "", "", fmt.Errorf("%s version: %w", o.binary, err)
	}
	version = strings.TrimSpace(string(out))
	cmd := exec.CommandContext(ctx, o.binary, append([]string{"serve", "-insecure", "-print-config"}, o.serveArgs...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if out, err = cmd.Output(); err != nil {
		return "", "", fmt.Errorf("%w: tandem serve refuses the flags %q: %w: %s", errUsage, o.serveArgs, err, strings.TrimSpace(stderr.String()))
	}
	var cfg struct {
		Profile string `json:"profile"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		return "", "", fmt.Errorf("tandem serve -print-config: %w", err)
	}
	return version, cfg.Profile, nil
}

// gitSource names the commit checked out in the current directory, with
// "-dirty" if tracked files have changed; "" if git cannot tell.
func gitSource(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	head, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	source := strings.TrimSpace(string(head))
	if changes, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err != nil || len(changes) > 0 {
		source += "-dirty"
	}
	return source
}

// total sums a rate by method.
func total(m map[string]float64) float64 {
	var t float64
	for _, v := range m {
		t += v
	}
	return t
}

// printTable writes the figures as a Markdown table.
func printTable(w io.Writer, rep report) {
	built := ""
	if rep.Source != "" {
		built = " built from " + rep.Source
	}
	load, what := "no traffic", "idle CPU"
	if rep.Rate > 0 {
		load, what = fmt.Sprintf("session mix at %d requests/s", rep.Rate), "CPU"
	}
	fmt.Fprintf(w, "%s; %s%s; profile %s; %d CPUs; settle %s, measure %s; %s\n\n",
		rep.Date.Format(time.RFC3339), rep.Version, built, rep.Profile, rep.CPUs, rep.Settle, rep.Measure, load)
	fmt.Fprintf(w, "| members | cluster %s (%% of a core) | per node | peer requests sent per node per second | by method | rest of the machine (%% of a core) |\n", what)
	fmt.Fprintln(w, "|---:|---:|---:|---:|---|---:|")
	for _, r := range rep.Runs {
		fmt.Fprintf(w, "| %d | %.1f | %.2f | %.1f | %s | %.1f |\n", r.Members, r.ClusterCPU, r.NodeCPU, total(r.Sent), byMethod(r.Sent), r.OtherCPU)
	}
	for _, r := range rep.Runs {
		if r.Failed > 0 {
			fmt.Fprintf(w, "\n%d members: %d of %d requests of the session mix failed", r.Members, r.Failed, r.Requests)
		}
		for _, warn := range r.Warnings {
			fmt.Fprintf(w, "\n%d members: %s", r.Members, warn)
		}
	}
	fmt.Fprintln(w)
}

// byMethod lists the rates, largest first, those under 0.05/s left out.
func byMethod(m map[string]float64) string {
	methods := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		if m[a] != m[b] {
			if m[a] > m[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, k := range methods {
		if m[k] >= 0.05 {
			parts = append(parts, fmt.Sprintf("%s %.1f", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return "—"
	}
	return strings.Join(parts, ", ")
}

// httpTimeout bounds every request to a node.
const httpTimeout = 5 * time.Second

// measure starts a cluster of n nodes, measures it idle and kills it.
func measure(ctx context.Context, o options, n, ticks int, stderr io.Writer) (result, error) {
	r := result{Members: n}
	client := &http.Client{Timeout: httpTimeout}
	defer client.CloseIdleConnections()
	startCtx, cancel := context.WithTimeout(ctx, o.startTimeout)
	defer cancel()
	procs, err := startCluster(startCtx, o, n)
	defer killAll(procs)
	if err != nil {
		return r, err
	}
	if err := awaitReady(startCtx, client, procs); err != nil {
		return r, err
	}
	fmt.Fprintf(stderr, "%d members ready; settling %v, then measuring %v\n", n, o.settle, o.measure)
	var mix *sessionMix
	if o.rate > 0 {
		mix = startMix(ctx, client, procs, o.rate)
		defer mix.stop()
	}
	if err := sleep(ctx, o.settle); err != nil {
		return r, err
	}
	if mix != nil {
		mix.reset()
	}

	before, err := scrapeAll(ctx, client, procs)
	if err != nil {
		return r, err
	}
	cpu0, err := readCPU(procs)
	if err != nil {
		return r, err
	}
	if err := sleep(ctx, o.measure); err != nil {
		return r, err
	}
	cpu1, err := readCPU(procs)
	if err != nil {
		return r, err
	}
	if mix != nil {
		r.Requests, r.Failed = mix.counts()
	}
	after, err := scrapeAll(ctx, client, procs)
	if err != nil {
		return r, err
	}

	window := cpu1.at.Sub(cpu0.at).Seconds()
	percent := func(t uint64) float64 { return float64(t) / float64(ticks) / window * 100 }
	r.WindowSeconds = window
	r.Sent, r.Received = map[string]float64{}, map[string]float64{}
	var clusterTicks uint64
	for i, p := range procs {
		d := cpu1.procs[i] - cpu0.procs[i]
		clusterTicks += d
		nd := node{Name: p.Name, PID: p.PID, CPUTicks: d, CPUPercent: percent(d),
			MetricsSeconds: after[i].at.Sub(before[i].at).Seconds(),
			Sent:           delta(before[i].sent, after[i].sent), Received: delta(before[i].received, after[i].received),
			RSSBytes: after[i].gauge("process_resident_memory_bytes"), Goroutines: after[i].gauge("go_goroutines"),
			RingMembers: after[i].gauge("tandem_ring_members"), EpochBefore: before[i].gauge("tandem_ring_epoch"), RingEpoch: after[i].gauge("tandem_ring_epoch")}
		for m, c := range nd.Sent {
			r.Sent[m] += float64(c) / nd.MetricsSeconds / float64(n)
		}
		for m, c := range nd.Received {
			r.Received[m] += float64(c) / nd.MetricsSeconds / float64(n)
		}
		r.NodeCPUMax = max(r.NodeCPUMax, nd.CPUPercent)
		if nd.RingMembers != float64(n) || nd.RingEpoch != nd.EpochBefore {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s's ring changed during the window (epoch %v to %v, %v members at the end)", p.Name, nd.EpochBefore, nd.RingEpoch, nd.RingMembers))
		}
		r.Nodes = append(r.Nodes, nd)
	}
	r.ClusterCPU = percent(clusterTicks)
	r.NodeCPU = r.ClusterCPU / float64(n)
	if busy := cpu1.machine - cpu0.machine; busy >= clusterTicks {
		r.OtherCPU = percent(busy - clusterTicks)
	}
	return r, nil
}

// startCluster starts n nodes, the first alone and the others joining it,
// at most 4 at once. It returns every process it started, also on error.
func startCluster(ctx context.Context, o options, n int) ([]*serveproc.Proc, error) {
	start := func(i int, join []string) (*serveproc.Proc, error) {
		name := fmt.Sprintf("idle-%d", i+1)
		f, err := os.Create(filepath.Join(o.logs, fmt.Sprintf("idle-%d-%s.log", n, name)))
		if err != nil {
			return nil, fmt.Errorf("node output: %w", err)
		}
		p, err := serveproc.Start(ctx, serveproc.Config{Binary: o.binary, Name: name, Join: join, Args: o.serveArgs, Output: f, StartTimeout: o.startTimeout})
		if err != nil {
			f.Close()
			return nil, err
		}
		go func() {
			<-p.Done()
			f.Close()
		}()
		return p, nil
	}
	first, err := start(0, nil)
	if err != nil {
		return nil, err
	}
	procs := make([]*serveproc.Proc, n)
	procs[0] = first
	errs := make([]error, n)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			procs[i], errs[i] = start(i, []string{first.Gossip})
		})
	}
	wg.Wait()
	started := slices.DeleteFunc(procs, func(p *serveproc.Proc) bool { return p == nil })
	return started, errors.Join(errs...)
}

// killAll kills every process and waits until they have exited.
func killAll(procs []*serveproc.Proc) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(p.Kill)
	}
	wg.Wait()
}

// awaitReady polls every node's /readyz until all are ready with every
// node in their ring, or ctx ends.
func awaitReady(ctx context.Context, client *http.Client, procs []*serveproc.Proc) error {
	for {
		var notReady []string
		for _, p := range procs {
			if p.Exited() {
				return fmt.Errorf("node %s exited", p.Name)
			}
			rd, err := p.Ready(ctx, client)
			switch {
			case err != nil:
				notReady = append(notReady, err.Error())
			case !rd.Ready || rd.Members != len(procs):
				notReady = append(notReady, fmt.Sprintf("%s: ready %v (%s), %d members", p.Name, rd.Ready, rd.Reason, rd.Members))
			}
		}
		if len(notReady) == 0 {
			return nil
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return fmt.Errorf("not every node ready with %d members: %w; %s", len(procs), err, strings.Join(notReady, "; "))
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// cpuSample is the CPU time of every process and of the machine at one
// instant, in clock ticks.
type cpuSample struct {
	at      time.Time
	procs   []uint64
	machine uint64
}

// readCPU samples the processes' and the machine's CPU time.
func readCPU(procs []*serveproc.Proc) (cpuSample, error) {
	s := cpuSample{at: time.Now()}
	for _, p := range procs {
		t, err := processTicks(p.PID)
		if err != nil {
			return s, fmt.Errorf("CPU time of %s: %w", p.Name, err)
		}
		s.procs = append(s.procs, t)
	}
	var err error
	if s.machine, err = machineTicks(); err != nil {
		return s, fmt.Errorf("CPU time of the machine: %w", err)
	}
	return s, nil
}

// scrape is what the window needs of one /metrics answer.
type scrape struct {
	at             time.Time // halfway through the request
	sent, received map[string]uint64
	gauges         map[string]float64
}

// gauge returns a metric's value (0 if absent).
func (s scrape) gauge(name string) float64 { return s.gauges[name] }

// scrapeAll scrapes every node's /metrics, one after the other.
func scrapeAll(ctx context.Context, client *http.Client, procs []*serveproc.Proc) ([]scrape, error) {
	var out []scrape
	for _, p := range procs {
		start := time.Now()
		body, err := p.Metrics(ctx, client)
		if err != nil {
			return nil, err
		}
		s := scrape{at: start.Add(time.Since(start) / 2), sent: map[string]uint64{}, received: map[string]uint64{}, gauges: map[string]float64{}}
		for _, smp := range parseMetrics(string(body)) {
			switch smp.name {
			case "tandem_peer_requests_sent_total":
				s.sent[smp.labels["method"]] += uint64(smp.value)
			case "tandem_peer_requests_received_total":
				s.received[smp.labels["method"]] += uint64(smp.value)
			case "process_resident_memory_bytes", "go_goroutines", "tandem_ring_members", "tandem_ring_epoch":
				s.gauges[smp.name] = smp.value
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// delta returns after minus before, by key, leaving out zeros.
func delta(before, after map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range after {
		if v > before[k] {
			out[k] = v - before[k]
		}
	}
	return out
}
