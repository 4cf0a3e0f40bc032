// Command tandem-demo is a small web shop that embeds a Tandem node: log
// in, put things in a cart, then kill the instance you are on and carry on
// at another without logging in again.
//
//	tandem-demo -name a -http 127.0.0.1:8080 -gossip 127.0.0.1:7946 -peer 127.0.0.1:7947
//	tandem-demo -name b -http 127.0.0.1:8081 -gossip 127.0.0.1:7956 -peer 127.0.0.1:7957 -join 127.0.0.1:7946
//
// Every flag can also be set as TANDEM_<FLAG> in the environment. The app
// serves its pages, GET /readyz (200 once the node holds every session it
// owns, else 503 and why) and GET /metrics (its own registry, holding
// Tandem's collector, httpapi.NewCollector); -api serves Tandem's operator
// API on a port of its own. SIGTERM or SIGINT stops it
// gracefully: the node leaves the cluster and its sessions are served by
// their buddies.
package main

import (
	"context"
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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/cluster"
	"github.com/tandem-io/tandem/cmd/internal/cli"
	"github.com/tandem-io/tandem/cmd/internal/material"
	"github.com/tandem-io/tandem/httpapi"
)

func main() {
	ctx, stop := signalContext()
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tandem-demo:", err)
		if errors.Is(err, flag.ErrHelp) || errors.As(err, new(usageError)) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// signalContext returns a context that ends on SIGTERM or SIGINT.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// usageError is a mistake on the command line; the demo exits 2.
type usageError = cli.UsageError

// flags are the demo's settings.
type flags struct {
	name, http, gossip, peer, join, logLevel string
	logFormat                                string
	api, tokensFile                          string
	insecureAPI                              bool
	profile                                  string
}

// parseFlags parses args, taking unset flags from TANDEM_<FLAG>.
func parseFlags(args []string, stderr io.Writer) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("tandem-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	host, _ := os.Hostname()
	fs.StringVar(&f.name, "name", host, "node name, unique in the cluster and stable across restarts")
	fs.StringVar(&f.http, "http", "127.0.0.1:8080", "web app listen address")
	fs.StringVar(&f.gossip, "gossip", "127.0.0.1:7946", "gossip (membership) listen address, UDP and TCP")
	fs.StringVar(&f.peer, "peer", "127.0.0.1:7947", "replication listen address")
	fs.StringVar(&f.join, "join", "", "comma-separated gossip addresses of running instances")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", cli.LogFormatUsage)
	fs.StringVar(&f.profile, "profile", "lan", "failure-detector timing: lan (a real network) or local (one machine's loopback)")
	fs.StringVar(&f.api, "api", "", "listen address of Tandem's operator API (httpapi), on its own port; empty serves none")
	fs.StringVar(&f.tokensFile, "tokens-file", "", "bearer tokens for the operator API, lines \"sessions TOKEN\" and \"admin TOKEN\" (as `tandem certs` writes them)")
	fs.BoolVar(&f.insecureAPI, "insecure-api", false, "serve the operator API without tokens (tests and local experiments only)")
	if err := cli.Parse(fs, args); err != nil {
		return f, err
	}
	if f.api != "" && f.tokensFile == "" && !f.insecureAPI {
		return f, usageError{Err: errors.New("-api needs -tokens-file (or -insecure-api): the operator API reads and writes every session")}
	}
	return f, nil
}

// run serves the demo until ctx ends, then stops gracefully.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log, err := cli.NewLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", f.http)
	if err != nil {
		return fmt.Errorf("listen for HTTP on %s: %w", f.http, err)
	}
	defer ln.Close()
	cfg := tandem.DefaultConfig(f.name)
	cfg.GossipAddr, cfg.PeerAddr, cfg.HTTPAddr, cfg.Logger = f.gossip, f.peer, ln.Addr().String(), log
	profile, err := cluster.ProfileNamed(f.profile)
	if err != nil {
		return usageError{Err: err}
	}
	profile.Apply(&cfg.Cluster)
	if f.join != "" {
		cfg.Join = strings.Split(f.join, ",")
	}
	node, err := tandem.Start(ctx, cfg)
	if err != nil {
		return err
	}

	// The shop's public port serves the shop only: Tandem's operator API,
	// which reads and writes every session, is on a port of its own, and
	// only if asked for.
	mux := http.NewServeMux()
	// The app's own registry, as an app that embeds Tandem keeps one:
	// Tandem's collector beside the app's metrics and the runtime's.
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "shop_requests_total", Help: "Requests the shop answered, by method and status code."}, []string{"method", "code"})
	reg.MustRegister(httpapi.NewCollector(node), requests, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux.Handle("/", promhttp.InstrumentHandlerCounter(requests, node.Middleware(newShop(node, log))))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if f.api != "" {
		stopAPI, err := serveAPI(f, node, log)
		if err != nil {
			_ = node.Close(ctx)
			return err
		}
		defer stopAPI()
	}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if r := node.Readiness(); !r.Ready {
			http.Error(w, "not ready: "+r.Reason, http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	// Form posts from other sites (CSRF) are refused, by the browser's
	// Sec-Fetch-Site or by Origin against Host.
	srv := &http.Server{Handler: crossOriginProtection(f.name).Handler(mux), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "tandem-demo %s serving http://%s (gossip %s, peer %s)\n", f.name, cfg.HTTPAddr, node.GossipAddr(), node.PeerAddr())

	select {
	case <-ctx.Done():
	case err = <-served:
	}
	log.Info("stopping")
	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := []error{err}
	if err := node.Close(stopCtx); err != nil {
		errs = append(errs, err)
	}
	if err := srv.Shutdown(stopCtx); err != nil {
		errs = append(errs, fmt.Errorf("stop HTTP: %w", err))
	}
	return errors.Join(errs...)
}

// serveAPI serves Tandem's operator API on f.api, with the tokens of
// f.tokensFile, and returns how to stop it.
func serveAPI(f flags, node *tandem.Node, log *slog.Logger) (func(), error) {
	cfg := httpapi.Config{Logger: log, Insecure: f.insecureAPI}
	if f.tokensFile != "" {
		data, err := os.ReadFile(f.tokensFile)
		if err != nil {
			return nil, fmt.Errorf("tokens: %w", err)
		}
		tokens, err := material.ParseTokens(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.tokensFile, err)
		}
		for scope, value := range tokens {
			cfg.Tokens = append(cfg.Tokens, httpapi.Token{Scope: httpapi.Scope(scope), Value: value})
		}
	}
	ln, err := net.Listen("tcp", f.api)
	if err != nil {
		return nil, fmt.Errorf("listen for the operator API on %s: %w", f.api, err)
	}
	srv := &http.Server{Handler: httpapi.New(node, cfg), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("operator API stopped", "err", err)
		}
	}()
	return func() { _ = srv.Close() }, nil
}
