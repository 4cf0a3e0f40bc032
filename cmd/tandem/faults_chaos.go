//go:build chaos

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/cluster"
	"github.com/tandem-io/tandem/replica/peer"
)

// Fault injection is compiled in only under the build tag chaos, which the
// chaos harness builds with (chaos.BuildBinary); a release build has none
// of it (faults_release.go).

// chaosControlFlag names the hidden flag that switches fault injection on.
// Only the chaos harness (cmd/tandem-chaos, package chaos) sets it; it is
// left out of -h.
const chaosControlFlag = "chaos-control"

// faultHooks are a node's in-process fault injection: a FaultyCaller in
// front of the peer client and an offset on the replica's clock, both
// driven over a small HTTP control endpoint on loopback. With the flag
// unset they do nothing and the node runs as usual.
type faultHooks struct {
	control string                                  // -chaos-control address; empty: off
	caller  atomic.Pointer[peer.FaultyCaller]       // set by the Caller hook once the node starts
	gossip  atomic.Pointer[cluster.FaultyTransport] // set by the gossip transport hook once the node starts
	offset  atomic.Int64                            // clock offset, nanoseconds
}

// addFaultFlags registers the hidden chaos flags on fs and hides them from
// its usage text.
func addFaultFlags(fs *flag.FlagSet) *faultHooks {
	h := &faultHooks{}
	fs.StringVar(&h.control, chaosControlFlag, "", "loopback address of the fault-injection control endpoint (chaos harness only)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage of %s:\n", fs.Name())
		visible := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
		visible.SetOutput(fs.Output())
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name != chaosControlFlag {
				visible.Var(f.Value, f.Name, f.Usage)
			}
		})
		visible.PrintDefaults()
	}
	return h
}

// wire installs the hooks into cfg and serves the control endpoint until
// ctx ends. It does nothing when the flag is unset.
func (h *faultHooks) wire(ctx context.Context, cfg *tandem.Config, log *slog.Logger) error {
	if h.control == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(h.control)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return usageError{fmt.Errorf("-%s %q: must be a loopback host:port", chaosControlFlag, h.control)}
	}
	ln, err := net.Listen("tcp", h.control)
	if err != nil {
		return fmt.Errorf("listen for chaos control on %s: %w", h.control, err)
	}
	cfg.Caller = func(inner peer.Caller) peer.Caller {
		fc := peer.NewFaultyCaller(inner)
		h.caller.Store(fc)
		return fc
	}
	cfg.Cluster.WrapTransport = func(inner memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
		ft := cluster.NewFaultyTransport(inner)
		h.gossip.Store(ft)
		return ft
	}
	cfg.Replica.Now = h.now
	srv := &http.Server{Handler: h.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("chaos control stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	log.Warn("fault injection enabled: this node obeys the chaos control endpoint", "addr", ln.Addr().String())
	return nil
}

// now is the replica's clock: the real time shifted by the offset set over
// /clock.
func (h *faultHooks) now() time.Time {
	return time.Now().Add(time.Duration(h.offset.Load()))
}

// handler serves the control endpoint:
//
//	POST /cut?addr=PEER            calls to PEER fail at once
//	POST /cut?gossip=ADDR          gossip to ADDR is lost (with addr: both)
//	POST /delay?addr=PEER&ms=N     calls to PEER wait N ms first
//	POST /drop?addr=PEER&p=P       calls to PEER are lost with probability P
//	POST /heal[?addr=PEER][&gossip=ADDR]
//	                               removes PEER's faults and ADDR's gossip
//	                               cut, or, with neither, every fault
//	POST /clock?offset=DURATION    shifts the replica clock (e.g. -3s)
func (h *faultHooks) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cut", h.withCaller(func(fc *peer.FaultyCaller, r *http.Request) error {
		q := r.URL.Query()
		if !q.Has("addr") && !q.Has("gossip") {
			return fmt.Errorf("cut needs addr (peer), gossip, or both")
		}
		var addr, gossip string
		var err error
		if q.Has("addr") {
			if addr, err = hostPort(q, "addr"); err != nil {
				return err
			}
		}
		if q.Has("gossip") {
			if gossip, err = hostPort(q, "gossip"); err != nil {
				return err
			}
		}
		if addr != "" {
			fc.Cut(addr)
		}
		if gossip != "" {
			h.gossip.Load().Cut(gossip)
		}
		return nil
	}))
	mux.HandleFunc("POST /delay", h.withCaller(func(fc *peer.FaultyCaller, r *http.Request) error {
		addr, err := peerAddr(r)
		if err != nil {
			return err
		}
		ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
		if err != nil || ms < 0 {
			return fmt.Errorf("ms must be a non-negative integer")
		}
		fc.SetDelay(addr, time.Duration(ms)*time.Millisecond)
		return nil
	}))
	mux.HandleFunc("POST /drop", h.withCaller(func(fc *peer.FaultyCaller, r *http.Request) error {
		addr, err := peerAddr(r)
		if err != nil {
			return err
		}
		p, err := strconv.ParseFloat(r.URL.Query().Get("p"), 64)
		if err != nil || p < 0 || p > 1 {
			return fmt.Errorf("p must be a probability in [0, 1]")
		}
		fc.SetDropRate(addr, p)
		return nil
	}))
	mux.HandleFunc("POST /heal", h.withCaller(func(fc *peer.FaultyCaller, r *http.Request) error {
		q := r.URL.Query()
		if !q.Has("addr") && !q.Has("gossip") {
			fc.HealAll()
			h.gossip.Load().HealAll()
			return nil
		}
		if addr := q.Get("addr"); addr != "" {
			fc.Heal(addr)
		}
		if gossip := q.Get("gossip"); gossip != "" {
			h.gossip.Load().Heal(gossip)
		}
		return nil
	}))
	mux.HandleFunc("POST /clock", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("offset"))
		if err != nil {
			http.Error(w, "offset must be a duration such as -3s", http.StatusBadRequest)
			return
		}
		h.offset.Store(int64(d))
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// withCaller adapts a fault edit to a handler, answering 503 until the node
// has built its caller and 400 when the edit refuses its query.
func (h *faultHooks) withCaller(edit func(*peer.FaultyCaller, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		fc := h.caller.Load()
		if fc == nil || h.gossip.Load() == nil {
			http.Error(w, "node not started yet", http.StatusServiceUnavailable)
			return
		}
		if err := edit(fc, r); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// peerAddr returns the addr query parameter, a host:port.
func peerAddr(r *http.Request) (string, error) { return hostPort(r.URL.Query(), "addr") }

// hostPort returns query parameter name, which must be a host:port.
func hostPort(q url.Values, name string) (string, error) {
	addr := q.Get(name)
	if _, _, err := net.SplitHostPort(addr); err != nil || strings.TrimSpace(addr) == "" {
		return "", fmt.Errorf("%s must be a host:port, got %q", name, addr)
	}
	return addr, nil
}
