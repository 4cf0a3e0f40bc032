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
	fs.StringVar(&cfg.Binary, "binary", "", "tandem binary to run (default: go build ./cmd/tandem into the report directory)")
	fs.IntVar(&cfg.Nodes, "nodes", 5, "number of node processes")
	fs.IntVar(&cfg.MinMembers, "min-members", 0, "the nodes' -min-members (0: a majority of -nodes; 1 turns split-brain protection off)")
	fs.DurationVar(&cfg.Duration, "duration", 60*time.Second, "how long to attack under load")
	fs.Int64Var(&cfg.Seed, "seed", 0, "seed of the fault schedule and the workload (default: from the clock, printed)")
	faults := fs.String("faults", "all", "comma-separated fault kinds to draw from: "+fmt.Sprint(chaos.AllFaults))
	exclude := fs.String("exclude", "", "comma-separated fault kinds to leave out")
	fs.DurationVar(&cfg.MaxSkew, "max-skew", 2*time.Second, "largest clock skew to inject")
	fs.IntVar(&cfg.MaxFaults, "max-faults", 0, "stop injecting after this many faults (0: no limit)")
	fs.IntVar(&cfg.Workload.Clients, "clients", 6, "concurrent clients")
	fs.IntVar(&cfg.Workload.Sessions, "sessions", 16, "long-lived sessions the clients share")
	fs.StringVar(&cfg.ReportDir, "report", "", "directory for report.html, report.json, history.json and node logs (default: a new temporary directory)")
	fs.StringVar(&cfg.NodeLogLevel, "node-log-level", "warn", "the nodes' -log-level")
	quiet := fs.Bool("q", false, "print only the verdict and the summary")
	recheck := fs.String("check", "", "check the history of the run reported in this directory again, instead of running")
	fs.DurationVar(&cfg.LinearizabilityTimeout, "lin-timeout", 30*time.Second, "bound on porcupine's search per session; past it the session's linearizability is reported unknown")
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
	kinds, err := chaos.ParseFaultKinds(*faults)
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
	}
	level := slog.LevelInfo
	if *quiet {
		level = slog.LevelWarn
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	fmt.Fprintf(stdout, "tandem-chaos: seed %d, %d nodes, %v, faults %v\n", cfg.Seed, cfg.Nodes, cfg.Duration, cfg.Faults)
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
