// Command tandem-load measures a Tandem cluster through its HTTP API:
// concurrent clients write (PUT) and read (GET) sessions for a fixed time
// and the tool reports throughput and latency percentiles per operation.
//
//	tandem-load -local 3 -clients 32 -duration 20s        # starts its own cluster
//	tandem-load -targets http://127.0.0.1:7070,... -clients 32
//
// Every run is bounded by -duration and stops by itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/httpapi"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tandem-load:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	targets   []string
	local     int
	clients   int
	duration  time.Duration
	sessions  int
	readRatio float64
	valueSize int
	seed      uint64
}

// run parses flags, prepares the cluster and runs the load.
func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("tandem-load", flag.ContinueOnError)
	var o options
	targets := fs.String("targets", "", "comma-separated HTTP base URLs of the nodes")
	fs.IntVar(&o.local, "local", 0, "start a local cluster of this many nodes instead of -targets")
	fs.IntVar(&o.clients, "clients", 32, "concurrent clients")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to run")
	fs.IntVar(&o.sessions, "sessions", 10000, "distinct sessions the clients spread over")
	fs.Float64Var(&o.readRatio, "reads", 0, "share of operations that are reads (0 = writes only)")
	fs.IntVar(&o.valueSize, "value-size", 1024, "bytes of attribute payload per write")
	fs.Uint64Var(&o.seed, "seed", 1, "random seed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *targets != "" {
		o.targets = strings.Split(*targets, ",")
	}
	if o.local > 0 {
		urls, stop, err := startLocal(ctx, o.local)
		if err != nil {
			return err
		}
		defer stop()
		o.targets = urls
	}
	if len(o.targets) == 0 {
		return errors.New("give -targets or -local")
	}
	if o.clients < 1 || o.duration <= 0 || o.sessions < 1 {
		return errors.New("-clients, -duration and -sessions must be positive")
	}
	if o.readRatio > 0 {
		if err := prefill(ctx, o); err != nil {
			return err
		}
	}
	res := load(ctx, o)
	fmt.Fprintf(out, "targets=%d clients=%d duration=%v sessions=%d value=%dB reads=%.0f%%\n", len(o.targets), o.clients, o.duration, o.sessions, o.valueSize, 100*o.readRatio)
	for _, name := range []string{"write", "read"} {
		r := res[name]
		if r == nil || len(r.latencies) == 0 {
			continue
		}
		fmt.Fprintf(out, "%-5s ops=%d errors=%d throughput=%.0f/s p50=%v p90=%v p99=%v max=%v\n", name, len(r.latencies), r.errors,
			float64(len(r.latencies))/o.duration.Seconds(), r.pct(50), r.pct(90), r.pct(99), r.pct(100))
	}
	return nil
}

// result collects one operation's latencies.
type result struct {
	latencies []time.Duration
	errors    int
}

// pct returns the p-th percentile latency.
func (r *result) pct(p float64) time.Duration {
	slices.Sort(r.latencies)
	i := int(float64(len(r.latencies)-1) * p / 100)
	return r.latencies[i].Round(time.Microsecond)
}

// load runs the clients until the duration passes.
func load(ctx context.Context, o options) map[string]*result {
	ctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	transport := &http.Transport{MaxIdleConnsPerHost: o.clients, MaxConnsPerHost: o.clients}
	client := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	payload := strings.Repeat("x", o.valueSize)
	var mu sync.Mutex
	total := map[string]*result{"write": {}, "read": {}}
	var wg sync.WaitGroup
	for c := range o.clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(o.seed, uint64(c)))
			local := map[string]*result{"write": {}, "read": {}}
			written := map[int]bool{}
			if o.readRatio > 0 {
				for i := range o.sessions {
					written[i] = true // prefilled
				}
			}
			for ctx.Err() == nil {
				i := rng.IntN(o.sessions)
				id := fmt.Sprintf("load-session-%08d", i)
				target := o.targets[rng.IntN(len(o.targets))]
				kind, method, body := "write", http.MethodPut, fmt.Sprintf(`{"principal":"user-%d","attributes":{"v":%q}}`, i, payload)
				if written[i] && rng.Float64() < o.readRatio {
					kind, method, body = "read", http.MethodGet, ""
				}
				start := time.Now()
				err := send(ctx, client, method, target+"/v1/sessions/"+id, body)
				if ctx.Err() != nil {
					break // the run ended mid-request: not a result
				}
				r := local[kind]
				if err != nil {
					r.errors++
					continue
				}
				r.latencies = append(r.latencies, time.Since(start))
				if kind == "write" {
					written[i] = true
				}
			}
			mu.Lock()
			for k, r := range local {
				total[k].latencies = append(total[k].latencies, r.latencies...)
				total[k].errors += r.errors
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	return total
}

// prefill writes every session once, untimed, so reads find them.
func prefill(ctx context.Context, o options) error {
	client := &http.Client{Timeout: 10 * time.Second}
	payload := strings.Repeat("x", o.valueSize)
	errs := make(chan error, o.clients)
	var wg sync.WaitGroup
	for c := range o.clients {
		wg.Go(func() {
			for i := c; i < o.sessions; i += o.clients {
				body := fmt.Sprintf(`{"principal":"user-%d","attributes":{"v":%q}}`, i, payload)
				if err := send(ctx, client, http.MethodPut, o.targets[i%len(o.targets)]+fmt.Sprintf("/v1/sessions/load-session-%08d", i), body); err != nil {
					errs <- fmt.Errorf("prefill: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// send makes one request and drains the answer.
func send(ctx context.Context, client *http.Client, method, url, body string) error {
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	return nil
}

// startLocal starts n nodes with HTTP APIs in this process.
func startLocal(ctx context.Context, n int) ([]string, func(), error) {
	lns := make([]net.Listener, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		lns[i] = ln
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(startCtx, n, func(i int, cfg *tandem.Config) { cfg.HTTPAddr = lns[i].Addr().String() })
	if err != nil {
		return nil, nil, err
	}
	var urls []string
	var servers []*http.Server
	for i, node := range nodes {
		srv := &http.Server{Handler: httpapi.New(node, httpapi.Config{Insecure: true})} // a local benchmark: no tokens
		go srv.Serve(lns[i])
		servers = append(servers, srv)
		urls = append(urls, "http://"+lns[i].Addr().String())
	}
	return urls, func() {
		for i, srv := range servers {
			srv.Close()
			nodes[i].Kill()
		}
	}, nil
}
