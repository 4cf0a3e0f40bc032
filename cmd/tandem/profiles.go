package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// pprofUsage is the -pprof flag's help.
const pprofUsage = "serve Go's runtime profiles (net/http/pprof: CPU, heap, goroutines, mutex and block) on this address, a listener of its own; off by default. They show the program's stacks and hot paths, not session data, but a CPU profile costs CPU while it runs and nothing guards them: keep it on loopback"

// startProfiles serves net/http/pprof's handlers on addr until ctx ends,
// and returns the address it listens on. The handlers are on a mux of
// their own, never on the HTTP API's.
func startProfiles(ctx context.Context, addr string, log *slog.Logger) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("-pprof: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// WriteTimeout stays unset: a CPU profile or a trace answers only
	// after the seconds it was asked for.
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("profiles server stopped", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = hs.Close()
	}()
	return ln.Addr().String(), nil
}

// loopbackAddr reports whether addr's host is a loopback address, or
// "localhost".
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
