// Command tandem runs Tandem session-cluster nodes.
//
//	tandem            start a local 3-node cluster (same as tandem dev)
//	tandem dev        start a local cluster in one process, on loopback
//	tandem serve      run one node; each flag also read from TANDEM_<FLAG>
//	                  (e.g. TANDEM_JOIN, TANDEM_MAX_SESSION_BYTES), then from
//	                  the JSON file of -config; -print-config shows the result
//	tandem certs      write a cluster's CA, node certificates, gossip key
//	                  and API tokens to a directory
//	tandem version    print the version
//	tandem help       list the commands (also tandem -h)
//
// SIGTERM or SIGINT stops a node gracefully.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/cmd/internal/cli"
	"github.com/tandem-io/tandem/httpapi"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tandem:", err)
		os.Exit(exitStatus(err))
	}
}

// exitStatus is the command's exit status for err, the end of a command
// that failed: 2 for a mistake on the command line, 3 for a node the
// seats revoked for good (its supervisor restarts it), 1 for anything
// else.
func exitStatus(err error) int {
	switch {
	case errors.As(err, new(usageError)) || errors.As(err, new(cli.UsageError)):
		return 2
	case errors.Is(err, errRevoked):
		return exitRevoked
	}
	return 1
}

// usageError is a mistake on the command line found here rather than by
// cli.Parse; like cli.UsageError, the command exits 2 for it.
type usageError struct{ error }

// Unwrap returns the mistake.
func (e usageError) Unwrap() error { return e.error }

// run dispatches a command line.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := "dev"
	if len(args) > 0 && (!strings.HasPrefix(args[0], "-") || args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, stdout, stderr)
	case "dev":
		return dev(ctx, args, stdout, stderr)
	case "certs":
		return certs(ctx, args, stdout, stderr)
	case "version":
		return version(args, stdout, stderr)
	case "help", "-h", "-help", "--help":
		_, err := io.WriteString(stdout, usage)
		return err
	}
	return usageError{fmt.Errorf("unknown command %q (want dev, serve, certs, version or help)", cmd)}
}

// usage lists the commands.
const usage = `Tandem keeps web sessions on two nodes each, so a user's session
survives the server they were on.

usage: tandem [command] [flags]

commands:
  dev       run a local cluster in one process, on loopback (the default)
  serve     run one node (flags, TANDEM_<FLAG> variables, -config FILE)
  certs     write a cluster's CA, node certificates, gossip key and tokens
  version   print the version
  help      print this list

tandem <command> -h lists a command's flags.
`

// version prints the build: Tandem's version, commit and Go version.
func version(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tandem version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	b := tandem.Build()
	_, err := fmt.Fprintf(stdout, "tandem %s (commit %s, %s)\n", b.Version, b.Commit, b.GoVersion)
	return err
}

// nodeFlags are the settings of one node.
type nodeFlags struct {
	name, http, gossip, peer, join string
	advertise                      string
	maxSessionBytes, minMembers    int
	seats, bootstrapExpect         int
	allowMinority, witness         bool
	drainTimeout                   time.Duration
	logLevel, logFormat            string
}

// register adds the node flags to fs.
func (f *nodeFlags) register(fs *flag.FlagSet) {
	host, _ := os.Hostname()
	fs.StringVar(&f.name, "name", host, "node name, unique in the cluster and stable across restarts")
	fs.StringVar(&f.http, "http", "127.0.0.1:7070", "HTTP API listen address")
	fs.StringVar(&f.gossip, "gossip", "127.0.0.1:7946", "gossip (membership) listen address, UDP and TCP")
	fs.StringVar(&f.peer, "peer", "127.0.0.1:7947", "replication listen address")
	fs.StringVar(&f.advertise, "advertise", "", "IP address other nodes and clients are given for this node's HTTP, gossip and peer ports (default: the bound address; for a wildcard such as 0.0.0.0 or :7070, the default route's address)")
	fs.StringVar(&f.join, "join", "", "comma-separated seeds to join: gossip addresses ip:port, host names host:port (every A/AAAA address), or dns+srv://_service._proto.name (an SRV record, as a Kubernetes headless Service publishes); names are looked up again at every re-join (10s)")
	fs.IntVar(&f.maxSessionBytes, "max-session-bytes", 1<<20, "largest session accepted, encoded, in bytes")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 30*time.Second, "how long a graceful stop may take")
	fs.IntVar(&f.minMembers, "min-members", 1, "a floor under the smallest ring this node serves in; by default it serves only in a ring holding a majority of the members it knows (crashed ones included, graceful leaves not), so the smaller side of a network cut serves nothing")
	fs.IntVar(&f.seats, "seats", 0, "EXPERIMENTAL: lease from a config of up to this many seats (odd above two) instead of from every member, as docs/design/LEASES-AT-SCALE.md designs it: a node serves only while a majority of the seats grant it, and a node taken for departed is revoked for good and exits with status 3 for its supervisor to restart it; every node of a cluster must set it alike; GET /v1/cluster (field seats) and tandem_seat_* show what the nodes agree on; 0: lease from every other member but one")
	fs.IntVar(&f.bootstrapExpect, "bootstrap-expect", 0, "with -seats: found the seats' first config only in a ring of at least this many members, so that nodes started together under a network cut found on one side at most (0: in a ring of any size, a node started alone included)")
	fs.BoolVar(&f.witness, "witness", false, "run a witness: a member that holds no sessions and takes no requests (/readyz answers 503 \"witness\"), and only counts toward the quorum and grants leases; two nodes and a witness survive the loss of either node")
	fs.BoolVar(&f.allowMinority, "allow-minority", false, "UNSAFE for data: serve in any ring of -min-members, even a minority of the members known; both sides of a network cut then acknowledge writes and after the heal one side's are discarded (each counted in tandem_conflicts_total and logged)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", cli.LogFormatUsage)
}

// serve runs one node until a signal stops it.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tandem serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f nodeFlags
	f.register(fs)
	var secFlags securityFlags
	secFlags.register(fs)
	var detector detectorFlags
	detector.register(fs)
	faults := addFaultFlags(fs) // chaos-harness hooks, only in a build tagged chaos
	profiles := fs.String("pprof", "", pprofUsage)
	printConfig := cli.AddConfigFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *printConfig {
		return cli.PrintConfig(stdout, fs)
	}
	sec, err := secFlags.load(f.name)
	if err != nil {
		return err
	}
	log, err := cli.NewLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}
	warn := func(warning string) {
		if f.logFormat == "json" { // a record of its own, whatever the level, so every line of stderr is JSON
			slog.New(slog.NewJSONHandler(stderr, nil)).Warn(warning)
		} else {
			fmt.Fprintln(stderr, "tandem: WARNING: "+warning)
		}
	}
	if secFlags.insecure {
		warn("-insecure: no TLS, no gossip encryption, no API tokens; anyone who reaches a port can read and write every session")
	}
	if f.allowMinority {
		warn("-allow-minority: both sides of a network cut acknowledge writes; after the heal one side's writes are discarded (tandem_conflicts_total counts them)")
	}
	cfg := tandem.DefaultConfig(f.name)
	sec.apply(&cfg)
	if err := detector.apply(&cfg); err != nil {
		return err
	}
	cfg.GossipAddr, cfg.PeerAddr, cfg.MaxSessionBytes, cfg.Logger = f.gossip, f.peer, f.maxSessionBytes, log
	cfg.Advertise = f.advertise
	if f.minMembers < 1 {
		return usageError{fmt.Errorf("-min-members %d: want at least 1", f.minMembers)}
	}
	cfg.Replica.MinMembers = f.minMembers
	cfg.Replica.AllowMinority = f.allowMinority
	if f.seats < 0 {
		return usageError{fmt.Errorf("-seats %d: want 0 (none) or more", f.seats)}
	}
	cfg.Replica.Seats = f.seats
	if f.bootstrapExpect < 0 {
		return usageError{fmt.Errorf("-bootstrap-expect %d: want 0 (any ring) or more", f.bootstrapExpect)}
	}
	cfg.Replica.BootstrapExpect = f.bootstrapExpect
	cfg.Witness = f.witness
	if f.join != "" {
		cfg.Join = strings.Split(f.join, ",")
	}
	if err := faults.wire(ctx, &cfg, log); err != nil {
		return err
	}
	if *profiles != "" {
		if !loopbackAddr(*profiles) {
			warn("-pprof " + *profiles + ": Go's runtime profiles are served beyond loopback, unauthenticated")
		}
		addr, err := startProfiles(ctx, *profiles, log)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "tandem node %s profiles on http://%s/debug/pprof/\n", f.name, addr)
	}
	srv, err := startServer(ctx, cfg, f.http, sec, log, faults.app)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tandem node %s serving %s://%s (gossip %s, peer %s)\n", f.name, srv.scheme, srv.httpAddr, srv.node.GossipAddr(), srv.node.PeerAddr())
	select {
	case <-ctx.Done():
	case <-watchRevoked(ctx, srv.node, time.Second):
		// Taken for departed: its copies may be older than what the
		// others acknowledged since, so it hands nothing over; it goes
		// as a crash does, and its supervisor starts a new run.
		log.Error("this node was taken for departed and its seat grants revoked for good; exiting with status 3 for its supervisor to restart it")
		srv.kill()
		return errRevoked
	}
	log.Info("stopping", "drain_timeout", f.drainTimeout)
	stopCtx, cancel := context.WithTimeout(context.Background(), f.drainTimeout)
	defer cancel()
	return srv.stop(stopCtx)
}

// server is a node with its HTTP API.
type server struct {
	node     *tandem.Node
	http     *http.Server
	httpAddr string
	scheme   string // http or https
}

// startServer starts a node with its security material and serves its
// HTTP API on httpAddr.
// around, if not nil, wraps the HTTP API's handler once the node runs.
func startServer(ctx context.Context, cfg tandem.Config, httpAddr string, sec *security, log *slog.Logger, around func(*tandem.Node, http.Handler) http.Handler) (*server, error) {
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return nil, fmt.Errorf("listen for HTTP on %s: %w", httpAddr, err)
	}
	cfg.HTTPAddr = ln.Addr().String()
	node, err := tandem.Start(ctx, cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	// Bodies up to httpapi.DefaultMaxBodyBytes of the session limit.
	var api http.Handler = httpapi.New(node, httpapi.Config{Logger: log, Tokens: sec.tokens, Insecure: sec.openHTTP})
	if around != nil {
		api = around(node, api)
	}
	lim := defaultHTTPLimits()
	hs := lim.server(api)
	hs.TLSConfig = sec.httpTLS
	ln = lim.listener(ln)
	scheme := "http"
	if sec.httpTLS != nil {
		scheme = "https"
		ln = tls.NewListener(ln, sec.httpTLS)
	}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server stopped", "err", err)
		}
	}()
	return &server{node: node, http: hs, httpAddr: node.HTTPAddr(), scheme: scheme}, nil
}

// stop leaves the cluster gracefully, then stops serving HTTP.
// errRevoked is serve's end when the seats revoked the node for good
// (-seats): the command exits 3, for a supervisor to start a new run.
var errRevoked = errors.New("revoked for good by the seats: this run serves nothing more; restart the node")

// exitRevoked is the exit status for errRevoked.
const exitRevoked = 3

// watchRevoked returns a channel closed once node says, looked at every
// period, that its seat grants were revoked for good; it never closes
// for a node without seats, or once ctx ends.
func watchRevoked(ctx context.Context, node *tandem.Node, period time.Duration) <-chan struct{} {
	out := make(chan struct{})
	go func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if st := node.Status().Seats; st != nil && st.Revoked {
					close(out)
					return
				}
			}
		}
	}()
	return out
}

// kill stops the node as a crash does, handing nothing over, and its
// HTTP API at once.
func (s *server) kill() {
	s.node.Kill()
	_ = s.http.Close()
}

func (s *server) stop(ctx context.Context) error {
	err := s.node.Close(ctx)
	if herr := s.http.Shutdown(ctx); herr != nil && err == nil {
		err = fmt.Errorf("stop HTTP: %w", herr)
	}
	return err
}

// dev runs a local cluster in one process until a signal stops it.
func dev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tandem dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nodes := fs.Int("nodes", 3, "how many nodes to start")
	httpPort := fs.Int("http-port", 7070, "HTTP port of the first node; the others count up from it (0 picks free ports)")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	logFormat := fs.String("log-format", "text", cli.LogFormatUsage)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *nodes < 1 {
		return usageError{fmt.Errorf("-nodes must be at least 1")}
	}
	log, err := cli.NewLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}
	var servers []*server
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, s := range servers {
			_ = s.stop(stopCtx)
		}
	}()
	var names []string
	for i := range *nodes {
		names = append(names, fmt.Sprintf("node-%d", i+1))
	}
	secs, err := devSecurity(names)
	if err != nil {
		return fmt.Errorf("make throwaway security material: %w", err)
	}
	fmt.Fprintln(stdout, "Tandem dev cluster, for development only: nodes talk over mutual TLS with throwaway")
	fmt.Fprintln(stdout, "certificates and encrypted gossip, but the HTTP API is open (no tokens, no TLS) on loopback.")
	fmt.Fprintln(stdout, "For production, see docs/SECURITY.md (tandem certs, tandem serve -certs-dir).")
	fmt.Fprintln(stdout)
	var seed string
	for i, name := range names {
		cfg := tandem.LocalConfig(name)
		cfg.GossipAddr, cfg.PeerAddr, cfg.Logger = "127.0.0.1:0", "127.0.0.1:0", log
		secs[name].apply(&cfg)
		if seed != "" {
			cfg.Join = []string{seed}
		}
		addr := "127.0.0.1:0"
		if *httpPort != 0 {
			addr = fmt.Sprintf("127.0.0.1:%d", *httpPort+i)
		}
		s, err := startServer(ctx, cfg, addr, secs[name], log, nil)
		if err != nil {
			return fmt.Errorf("start node %d: %w", i+1, err)
		}
		servers = append(servers, s)
		seed = s.node.GossipAddr()
	}
	fmt.Fprintf(stdout, "%d nodes on loopback:\n", len(servers))
	for _, s := range servers {
		fmt.Fprintf(stdout, "  %s  http://%s\n", s.node.Name(), s.httpAddr)
	}
	first, last := servers[0].httpAddr, servers[len(servers)-1].httpAddr
	fmt.Fprintf(stdout, "\nTry:\n  curl -X PUT http://%s/v1/sessions/my-first-session-01 -H 'Content-Type: application/json' -d '{\"principal\":\"alice\",\"attributes\":{\"cart\":[\"tea\"]}}'\n  curl http://%s/v1/sessions/my-first-session-01\n\nCtrl-C stops the cluster.\n", first, last)
	<-ctx.Done()
	return nil
}
