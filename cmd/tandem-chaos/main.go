// Command tandem-chaos runs a Tandem cluster of real node processes on
// loopback, attacks it under load with a seeded fault schedule, and
// checks that nothing acknowledged was lost, reads were linearizable,
// deletes stayed deleted and nothing expired was served.
//
//	tandem-chaos -duration 90s -seed 1 -report /tmp/tandem-chaos
//	tandem-chaos -check /tmp/tandem-chaos   # check a recorded history again
//
// It prints PASS, or FAIL with every anomaly, and writes report.json,
// report.html and history.json to the report directory. Exit status: 0 on
// PASS, 1 on FAIL, 2 for a bad command line, 3 when the run itself could
// not be carried out. See docs/CHAOS.md.
//
// The nodes run a tandem built with the build tag chaos, which compiles
// the fault-injection hooks in. Without -binary, tandem-chaos uses the
// first usable of: a tandem in its own directory; one it builds with `go
// build -tags chaos` when run from within a checkout of the source; a
// tandem on PATH. It says on standard error which one and why. Installed
// with go install, put a chaos build of tandem beside it:
//
//	go install -tags chaos github.com/tandem-io/tandem/cmd/tandem@VERSION
//	go install github.com/tandem-io/tandem/cmd/tandem-chaos@VERSION
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/tandem-io/tandem/chaos"
)

// Exit statuses.
const (
	exitPass  = 0
	exitFail  = 1
	exitUsage = 2
	exitError = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses args, runs the harness and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tandem-chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := chaos.Config{}
	fs.Usage = func() {
		fmt.Fprint(stderr, usageHead)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Binary, "binary", "", "tandem binary to run, built with -tags chaos (default: a tandem beside tandem-chaos, else one built from the source tree when run within it, else tandem on PATH)")
	which := fs.Bool("which", false, "say which tandem binary a run would use, and why, then exit (its path on standard output)")
	fs.IntVar(&cfg.Nodes, "nodes", 5, "number of node processes")
	fs.IntVar(&cfg.MinMembers, "min-members", 0, "the nodes' -min-members, a floor under their quorum (0: none; the nodes serve only with a majority of the members they know, tandem serve's default)")
	fs.IntVar(&cfg.Seats, "seats", 0, "EXPERIMENTAL: the nodes' -seats: they lease from that many agreed seats, and a node taken for departed is revoked for good and serves nothing until restarted (0: none, tandem serve's default leases)")
	fs.DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long to attack under load")
	fs.Int64Var(&cfg.Seed, "seed", 0, "seed of the fault schedule and the workload (default: from the clock, printed)")
	faults := fs.String("faults", "all", "comma-separated fault kinds to draw from: "+fmt.Sprint(chaos.AllFaults))
	exclude := fs.String("exclude", "", "comma-separated fault kinds to leave out")
	fs.DurationVar(&cfg.MaxSkew, "max-skew", 2*time.Second, "largest clock skew to inject")
	fs.IntVar(&cfg.MaxFaults, "max-faults", 0, "stop injecting after this many faults (0: no limit)")
	fs.Float64Var(&cfg.Overlap, "overlap", 0, "probability (0..1) that a fault starts while the previous one holds or recovers, without waiting for a healthy cluster; above 0 it also adds the kinds "+fmt.Sprint(chaos.OverlapFaults)+" to -faults all (0: one fault at a time, each on a healthy cluster)")
	fs.IntVar(&cfg.Workload.Clients, "clients", 6, "concurrent clients")
	fs.IntVar(&cfg.Workload.Sessions, "sessions", 16, "long-lived session slots the clients share (each moves to a fresh session id every -ops-per-session requests)")
	fs.IntVar(&cfg.Workload.ValueSize, "value-size", 0, "pad every attribute value a write stores to this many bytes, up to 262144 (0: values of a few bytes); large sessions make hand-offs move them in batches")
	fs.Float64Var(&cfg.Workload.Msgpack, "msgpack", 0, "share (0..1) of requests sent and answered in msgpack rather than JSON")
	fs.Float64Var(&cfg.Workload.Client, "client", 0.2, "share (0..1) of requests sent through the smart client over the peer wire rather than HTTP")
	fs.Float64Var(&cfg.Workload.App, "app", 0.1, "share (0..1) of requests drawn for an app's session middleware (each node's chaos app, /chaos/app/{id}); reads and plain patches go there")
	fs.IntVar(&cfg.Workload.OpsPerSession, "ops-per-session", chaos.DefaultOpsPerSession, "requests sent to one long-lived session id before its slot moves to a fresh one, so every session's history stays checkable (-1: never)")
	fs.StringVar(&cfg.ReportDir, "report", "", "directory for report.html, report.json, history.json and node logs (default: a new temporary directory)")
	fs.StringVar(&cfg.NodeLogLevel, "node-log-level", "warn", "the nodes' -log-level")
	fs.StringVar(&cfg.Profile, "profile", "", "the nodes' -profile: lan or local (default: none given, tandem serve's own, lan)")
	network := fs.String("network", "auto", "where the nodes run and how links are cut: netns (each node in a network namespace of its own, cuts made by nftables rules; needs root, ip and nft), loopback (cuts injected inside the processes), or auto: netns when it can, else loopback, saying why")
	quiet := fs.Bool("q", false, "print only the verdict and the summary")
	recheck := fs.String("check", "", "check the history of the run reported in this directory again, instead of running")
	fs.DurationVar(&cfg.LinearizabilityTimeout, "lin-timeout", 30*time.Second, "bound on porcupine's search per session; past it the session's linearizability is unknown, and an unknown session fails the run")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitPass
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tandem-chaos: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	if cfg.Workload.ValueSize < 0 || cfg.Workload.ValueSize > 256<<10 || !(cfg.Workload.Msgpack >= 0 && cfg.Workload.Msgpack <= 1) || !(cfg.Workload.Client >= 0 && cfg.Workload.App >= 0 && cfg.Workload.Client+cfg.Workload.App <= 1) {
		fmt.Fprintf(stderr, "tandem-chaos: -value-size %d, -msgpack %v, -client %v, -app %v: want 0..262144 bytes and shares between 0 and 1 (-client and -app together at most 1)\n", cfg.Workload.ValueSize, cfg.Workload.Msgpack, cfg.Workload.Client, cfg.Workload.App)
		return exitUsage
	}
	if !(cfg.Overlap >= 0 && cfg.Overlap <= 1) {
		fmt.Fprintf(stderr, "tandem-chaos: -overlap %v: want a probability between 0 and 1\n", cfg.Overlap)
		return exitUsage
	}
	kinds, err := chaos.ParseFaultKinds(*faults)
	if err == nil && cfg.Overlap > 0 && (*faults == "all" || *faults == "") {
		kinds = append(kinds, chaos.OverlapFaults...)
	}
	if err == nil && *exclude != "" {
		var out []chaos.FaultKind
		out, err = chaos.ParseFaultKinds(*exclude)
		kinds = slices.DeleteFunc(kinds, func(k chaos.FaultKind) bool { return slices.Contains(out, k) })
		if err == nil && len(kinds) == 0 {
			err = errors.New("-exclude leaves no fault kind")
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "tandem-chaos: %v\n", err)
		return exitUsage
	}
	cfg.Faults = kinds
	if *recheck != "" {
		rep, err := chaos.Recheck(*recheck, chaos.CheckConfig{LinearizabilityTimeout: cfg.LinearizabilityTimeout})
		if err != nil {
			fmt.Fprintf(stderr, "tandem-chaos: %v\n", err)
			return exitError
		}
		fmt.Fprint(stdout, rep.Summary())
		if rep.Verdict != "PASS" {
			return exitFail
		}
		return exitPass
	}
	if cfg.Seed == 0 {
		cfg.Seed = time.Now().UnixNano() % 1_000_000
	}
	if cfg.ReportDir != "" {
		if abs, err := filepath.Abs(cfg.ReportDir); err == nil {
			cfg.ReportDir = abs
		}
	} else if !*which {
		dir, err := os.MkdirTemp("", "tandem-chaos-")
		if err != nil {
			fmt.Fprintf(stderr, "tandem-chaos: report directory: %v\n", err)
			return exitError
		}
		cfg.ReportDir = dir
	}
	loc, err := chaos.LocateBinary(ctx, chaos.LocateConfig{Binary: cfg.Binary, BuildDir: cfg.ReportDir, NoBuild: *which,
		Progress: prefixWriter{stderr}})
	if err != nil {
		fmt.Fprintf(stderr, "tandem-chaos: %v\n", err)
		return exitError
	}
	for _, p := range loc.PassedOver {
		fmt.Fprintf(stderr, "tandem-chaos: passed over %s\n", p)
	}
	fmt.Fprintf(stderr, "tandem-chaos: %s\n", loc)
	for _, w := range loc.Warnings {
		fmt.Fprintf(stderr, "tandem-chaos: warning: %s\n", w)
	}
	if *which {
		if loc.Path != "" {
			fmt.Fprintln(stdout, loc.Path)
		}
		return exitPass
	}
	cfg.Binary = loc.Path
	switch *network {
	case "auto":
		cfg.Network = chaos.NetworkNetns
		if err := chaos.NetnsAvailable(); err != nil {
			cfg.Network = chaos.NetworkLoopback
			fmt.Fprintf(stderr, "tandem-chaos: network: loopback, cuts injected inside the processes (no network namespaces: %v)\n", err)
		}
	case chaos.NetworkNetns:
		if err := chaos.NetnsAvailable(); err != nil {
			fmt.Fprintf(stderr, "tandem-chaos: -network netns: %v\n", err)
			return exitError
		}
		cfg.Network = chaos.NetworkNetns
	case chaos.NetworkLoopback:
		cfg.Network = chaos.NetworkLoopback
	default:
		fmt.Fprintf(stderr, "tandem-chaos: -network %q: want auto, netns or loopback\n", *network)
		return exitUsage
	}
	if cfg.Network == chaos.NetworkNetns {
		fmt.Fprintln(stderr, "tandem-chaos: network: netns, each node in a network namespace of its own; cuts are nftables rules there (delays, dropped calls and clock skew stay inside the processes)")
	}
	level := slog.LevelInfo
	if *quiet {
		level = slog.LevelWarn
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	fmt.Fprintf(stdout, "tandem-chaos: seed %d, %d nodes, %v, faults %v\n", cfg.Seed, cfg.Nodes, cfg.Duration, cfg.Faults)
	if cfg.Overlap > 0 {
		fmt.Fprintf(stdout, "tandem-chaos: overlap %g: a fault may start while the previous one holds or recovers\n", cfg.Overlap)
	}
	rep, err := chaos.Run(ctx, cfg)
	if rep != nil {
		fmt.Fprint(stdout, rep.Summary())
		fmt.Fprintf(stdout, "report: %s\n", filepath.Join(rep.Dir, "report.html"))
	}
	if err != nil {
		fmt.Fprintf(stderr, "tandem-chaos: %v\n", err)
		return exitError
	}
	if rep.Verdict != "PASS" {
		return exitFail
	}
	return exitPass
}

// usageHead introduces the flags in the usage text.
const usageHead = `usage: tandem-chaos [flags]
       tandem-chaos -check DIR

Runs a Tandem cluster of real tandem serve processes, each in a network
namespace of its own (as root) or on loopback, attacks it under load with
a seeded fault schedule and checks that nothing acknowledged was lost. Exit status: 0 PASS, 1 FAIL, 2 bad command line,
3 the run could not be carried out.

The nodes run a tandem built with the build tag chaos (it has the
fault-injection hooks). Without -binary, tandem-chaos uses the first
usable of: a tandem in its own directory; one built with go build -tags
chaos when run from within a checkout of the source; a tandem on PATH.
It says which on standard error. To install both:

  go install -tags chaos github.com/tandem-io/tandem/cmd/tandem@VERSION
  go install github.com/tandem-io/tandem/cmd/tandem-chaos@VERSION

(the first replaces a release tandem in the same GOBIN; GOBIN=DIR keeps
them apart). See docs/CHAOS.md.

flags:
`

// prefixWriter writes each write to w after "tandem-chaos: ".
type prefixWriter struct{ w io.Writer }

// Write writes p, prefixed, to the underlying writer.
func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := fmt.Fprintf(p.w, "tandem-chaos: %s", b); err != nil {
		return 0, err
	}
	return len(b), nil
}
