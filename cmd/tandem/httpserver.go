package main

import (
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// httpLimits bound what one HTTP client, or many, can hold of a node: how
// long a request may take to arrive and its answer to leave, how long an
// idle connection stays open, how large its headers may be, and how many
// connections the listener holds at once. Bodies are bounded by the API
// itself (httpapi.DefaultMaxBodyBytes, 413).
type httpLimits struct {
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included: a client
	// that stalls mid-body loses its connection when it runs out.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request's handling and answer, counted from
	// the end of its headers; it must exceed the API's RequestTimeout.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a keep-alive connection waits for its
	// next request.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers (431 past it).
	MaxHeaderBytes int
	// MaxConns caps the connections the listener holds at once; at the
	// cap it accepts no more until one closes (the kernel's backlog
	// holds the callers meanwhile).
	MaxConns int
}

// defaultHTTPLimits are the limits `tandem serve` and `tandem dev` serve
// with: a request gets 10s for its headers and 30s in all (a body of
// httpapi.DefaultMaxBodyBytes, about 2 MiB, arrives in that at 70 KB/s),
// its answer 30s (the API gives up on an operation after 5s), an idle
// connection 2 minutes; headers 64 KiB; 4096 connections.
func defaultHTTPLimits() httpLimits {
	return httpLimits{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		MaxConns:          4096,
	}
}

// server returns an HTTP server of h within the limits.
func (l httpLimits) server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		WriteTimeout:      l.WriteTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
	}
}

// listener returns ln holding at most MaxConns connections at once; wrap
// it before TLS, so a handshake in progress takes a slot too.
func (l httpLimits) listener(ln net.Listener) net.Listener {
	return netutil.LimitListener(ln, l.MaxConns)
}
