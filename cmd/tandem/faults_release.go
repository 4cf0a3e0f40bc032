//go:build !chaos

package main

import (
	"context"
	"flag"
	"log/slog"
	"net/http"

	"github.com/tandem-io/tandem"
)

// faultHooks is empty in a release build: fault injection (the chaos
// harness's -chaos-control endpoint) is compiled in only under the build
// tag chaos (faults_chaos.go), so no release binary can be made to cut its
// own links, shift its clock or be driven by anyone who reaches a port.
type faultHooks struct{}

// addFaultFlags registers nothing in a release build.
func addFaultFlags(*flag.FlagSet) *faultHooks { return &faultHooks{} }

// wire does nothing in a release build.
func (*faultHooks) wire(context.Context, *tandem.Config, *slog.Logger) error { return nil }

// app returns api unchanged in a release build: no chaos app endpoint.
func (*faultHooks) app(_ *tandem.Node, api http.Handler) http.Handler { return api }
