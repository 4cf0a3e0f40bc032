//go:build unix

// Command tandem-bench compares Tandem with what a user would pick instead
// to keep sessions on two machines: Redis, a primary and a replica, with
// WAIT 1 0 after every write so that a write is acknowledged only once the
// replica has it, as Tandem acknowledges a write only once the buddy has it.
//
//	tandem-bench                                  # every target, 10 s per workload
//	tandem-bench -duration 20s -json testdata/bench/$(date +%F).json
//	tandem-bench -binary ./tandem -redis=required # fail rather than skip Redis
//
// In one run it starts, on loopback:
//
//   - a Tandem cluster of three `tandem serve -insecure -profile local`
//     processes. The binary is -binary, else one built with `go build` into a
//     temporary directory when tandem-bench runs inside the source tree,
//     else a `tandem` beside tandem-bench's own executable, else one on PATH;
//     it says which;
//   - Redis: two `redis-server` processes, the second started with
//     `--replicaof` the first, both without persistence (`--save ""
//     --appendonly no`). When redis-server is missing the Redis column is
//     skipped with a message (-redis=required makes that an error,
//     -redis=off leaves Redis out).
//
// and drives each target with the same closed-loop workloads: -clients
// clients, each sending its next request when the previous one is
// answered, for -duration, over -sessions sessions of -value-size bytes
// (one attribute, "v"), picked uniformly at random:
//
//   - mix: 90 % reads, 10 % writes (the sessions are loaded first);
//   - writes: every request a write.
//
// The targets:
//
//   - client: the smart client (tandem.Dial), which sends each request
//     straight to the session's primary over the peer wire. One client is
//     shared by every load client, as a program would share it;
//   - http: the HTTP API with JSON bodies, each request to a random node
//     (as a balancer without stickiness would), so two requests in three
//     are forwarded to the primary; GET moves the idle deadline as a
//     browser's request would;
//   - http-msgpack: the same with msgpack bodies and answers;
//   - embedded: a node started inside tandem-bench (tandem.Start) that
//     joins the cluster as a fourth member, driven through Node.Get and
//     Node.Put for sessions it is primary of: sticky routing, as the
//     middleware's tandem_route cookie gives a balancer. The ring decides
//     which sessions that node is primary of, so tandem-bench picks them:
//     it asks Node.Owners of successive ids and keeps -sessions ids the
//     embedded node owns (ids already loaded among them, the rest loaded
//     through it). Reads are then answered from its own memory and writes
//     replicated from it to their buddy, one of the three processes. It
//     runs last, because its joining changes the ring the other targets
//     were measured on;
//   - redis, once the Tandem cluster is stopped: GET for a read; for a write SET (with PX, the idle timeout,
//     unless -redis-ttl 0) followed by WAIT 1 0, both sent in one write on
//     the client's own connection and answered in order, as a Redis user
//     must send them (WAIT covers the writes of its own connection). A WAIT
//     that answers fewer than one replica counts as an error. Each load
//     client has its own connection. The value is the session as a Go
//     program would store it: tandem.Session encoded with msgpack.
//
// It prints, per workload, target and operation, throughput and the p50,
// p99 and p99.9 latencies, the ratio of each Tandem target's throughput
// and p99 to Redis's, and the resident memory per session copy: VmRSS of
// each server process (from /proc/PID/status) before and after the
// sessions are loaded, divided by the session copies the process then
// holds (a Tandem node's primary and buddy copies from its /metrics; a
// Redis process holds one copy of each session). Then it says which goals
// are met: smart client ≥ 1.1× Redis on the mix and on writes, HTTP ≥ 0.6×
// Redis on the mix, write p99 ≤ Redis's, ≤ 1.3 KiB per 1 KiB session copy.
// -json FILE writes the whole result as JSON (testdata/bench/ keeps one
// per measured version).
//
// The load generator shares the machine with the servers, so on a small
// machine the figures are a floor. Every loop is bounded in time and in
// count (-max-ops), every request by -op-timeout, and the tool stops by
// itself; every process it started is killed when it ends.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tandem-bench:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		var usage usageError
		if errors.As(err, &usage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a mistake on the command line; the command exits 2.
type usageError struct{ error }

// Unwrap returns the mistake.
func (e usageError) Unwrap() error { return e.error }

// The targets, in the order they run.
const (
	targetClient      = "client"
	targetHTTP        = "http"
	targetHTTPMsgpack = "http-msgpack"
	targetRedis       = "redis"
	targetEmbedded    = "embedded"
)

// allTargets lists every target in the order they run: the embedded node
// last of Tandem's, since its joining changes the ring, then Redis, once
// the Tandem cluster is stopped, so that each system runs alone.
var allTargets = []string{targetClient, targetHTTP, targetHTTPMsgpack, targetEmbedded, targetRedis}

// The workloads.
const (
	workloadMix    = "mix"
	workloadWrites = "writes"
)

// allWorkloads lists every workload in the order they run.
var allWorkloads = []string{workloadMix, workloadWrites}

// readShare returns the share of a workload's requests that are reads.
func readShare(workload string) float64 {
	if workload == workloadMix {
		return 0.9
	}
	return 0
}

// Whether Redis must, may or must not be measured (-redis).
const (
	redisAuto     = "auto"
	redisRequired = "required"
	redisOff      = "off"
)

// options are the command's flags.
type options struct {
	binary      string
	redisMode   string
	redisServer string
	redisTTL    time.Duration
	targets     []string
	workloads   []string
	sessions    int
	valueSize   int
	clients     int
	duration    time.Duration
	warmup      time.Duration
	settle      time.Duration
	maxOps      int
	opTimeout   time.Duration
	seed        uint64
	jsonPath    string
	quiet       bool
	pprofDir    string
}

// parseFlags parses args into options.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("tandem-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.StringVar(&o.binary, "binary", "", "tandem binary to run (default: go build ./cmd/tandem inside the source tree, else a tandem beside this executable, else on PATH)")
	fs.StringVar(&o.redisMode, "redis", redisAuto, "auto (measure Redis if redis-server is found, else skip it with a message), required (fail without it) or off")
	fs.StringVar(&o.redisServer, "redis-server", "redis-server", "redis-server binary, a path or a name looked up on PATH")
	fs.DurationVar(&o.redisTTL, "redis-ttl", 30*time.Minute, "PX of every Redis SET, as Tandem's default idle timeout (0: no expiry)")
	targets := fs.String("targets", strings.Join(allTargets, ","), "comma-separated targets: "+strings.Join(allTargets, ", "))
	workloads := fs.String("workloads", strings.Join(allWorkloads, ","), "comma-separated workloads: mix (90% reads, 10% writes), writes")
	fs.IntVar(&o.sessions, "sessions", 10000, "sessions the clients spread over")
	fs.IntVar(&o.valueSize, "value-size", 1024, "bytes of the session's attribute")
	fs.IntVar(&o.clients, "clients", 32, "concurrent closed-loop clients")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long each workload runs against each target")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each measured run")
	fs.DurationVar(&o.settle, "settle", time.Second, "pause after loading the sessions before reading the processes' memory")
	fs.IntVar(&o.maxOps, "max-ops", 10_000_000, "bound on the requests of one measured run (all clients together)")
	fs.DurationVar(&o.opTimeout, "op-timeout", 5*time.Second, "bound on each request")
	fs.Uint64Var(&o.seed, "seed", 1, "random seed of the clients' choices")
	fs.StringVar(&o.pprofDir, "pprof", "", "write CPU profiles of each measured run against Tandem to this directory: each node's (tandem serve -pprof) and this process's, as WORKLOAD-TARGET-PROCESS.pprof")
	fs.StringVar(&o.jsonPath, "json", "", "write the whole result as JSON to this file")
	fs.BoolVar(&o.quiet, "q", false, "print only the tables")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, err
		}
		return o, usageError{err}
	}
	if fs.NArg() > 0 {
		return o, usageError{fmt.Errorf("unexpected arguments %q", fs.Args())}
	}
	var err error
	if o.targets, err = listFlag("-targets", *targets, allTargets); err != nil {
		return o, err
	}
	if o.workloads, err = listFlag("-workloads", *workloads, allWorkloads); err != nil {
		return o, err
	}
	switch o.redisMode {
	case redisAuto, redisRequired, redisOff:
	default:
		return o, usageError{fmt.Errorf("-redis %q: want auto, required or off", o.redisMode)}
	}
	if o.redisMode == redisOff {
		o.targets = slices.DeleteFunc(o.targets, func(t string) bool { return t == targetRedis })
	} else if !slices.Contains(o.targets, targetRedis) {
		o.redisMode = redisOff
	}
	switch {
	case o.sessions < 1, o.valueSize < 1, o.clients < 1, o.maxOps < 1:
		return o, usageError{errors.New("-sessions, -value-size, -clients and -max-ops must be positive")}
	case o.duration <= 0, o.opTimeout <= 0:
		return o, usageError{errors.New("-duration and -op-timeout must be positive")}
	case o.warmup < 0, o.settle < 0, o.redisTTL < 0:
		return o, usageError{errors.New("-warmup, -settle and -redis-ttl must not be negative")}
	}
	return o, nil
}

// listFlag parses a comma-separated list of names from known, keeping
// known's order.
func listFlag(flagName, value string, known []string) ([]string, error) {
	want := map[string]bool{}
	for _, name := range strings.Split(value, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(known, name) {
			return nil, usageError{fmt.Errorf("%s: unknown %q (want some of %s)", flagName, name, strings.Join(known, ", "))}
		}
		want[name] = true
	}
	var out []string
	for _, name := range known {
		if want[name] {
			out = append(out, name)
		}
	}
	if len(out) == 0 {
		return nil, usageError{fmt.Errorf("%s: none given", flagName)}
	}
	return out, nil
}

// run parses the flags, starts the servers, measures every target and
// reports.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	progress := stderr
	if o.quiet {
		progress = io.Discard
	}
	logf := func(format string, a ...any) { fmt.Fprintf(progress, "tandem-bench: "+format+"\n", a...) }

	res := newResult(o, args)
	// Redis first: -redis=required fails before anything is started.
	var redisBin string
	if o.redisMode != redisOff {
		redisBin, err = findRedis(ctx, o.redisServer)
		if err != nil {
			if o.redisMode == redisRequired {
				return fmt.Errorf("-redis=required: %w", err)
			}
			res.Redis.Skipped = fmt.Sprintf("%v; install it (apt-get install -y redis-server) to compare with Redis", err)
			fmt.Fprintf(stderr, "tandem-bench: skipping Redis: %s\n", res.Redis.Skipped)
			o.targets = slices.DeleteFunc(o.targets, func(t string) bool { return t == targetRedis })
		}
	}

	dir, err := os.MkdirTemp("", "tandem-bench-")
	if err != nil {
		return fmt.Errorf("make a temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)

	bin, err := findTandem(ctx, o.binary, dir)
	if err != nil {
		return err
	}
	res.Tandem.Binary, res.Tandem.BinarySource = bin.path, bin.source
	res.Tandem.Version, res.Tandem.Commit = bin.version, bin.commit
	logf("tandem binary: %s (%s; %s)", bin.path, bin.source, bin.version)
	if strings.HasSuffix(bin.commit, "-dirty") {
		logf("the source tree has uncommitted changes; they are measured too")
	}

	if err := measureTandem(ctx, o, bin.path, dir, res, logf); err != nil {
		return err
	}
	if redisBin != "" && slices.Contains(o.targets, targetRedis) {
		if err := measureRedis(ctx, o, redisBin, dir, res, logf); err != nil {
			return err
		}
	}
	res.finish()
	if o.jsonPath != "" {
		if err := res.writeJSON(o.jsonPath); err != nil {
			return err
		}
		logf("wrote %s", o.jsonPath)
	}
	return res.print(stdout)
}

// wait sleeps for d or until ctx ends.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
