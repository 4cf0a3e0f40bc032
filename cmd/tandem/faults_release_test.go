//go:build !chaos

package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

// A release build has no fault injection: the chaos flag is unknown, and
// its environment variable changes nothing.
func TestReleaseBuildHasNoFaultInjection(t *testing.T) {
	var stderr strings.Builder
	err := run(context.Background(), []string{"serve", "-chaos-control", "127.0.0.1:0"}, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error()+stderr.String(), "chaos-control") {
		t.Fatalf("release build took -chaos-control: %v", err)
	}
	var hooks *faultHooks = addFaultFlags(nil)
	if err := hooks.wire(context.Background(), nil, nil); err != nil {
		t.Fatal(err)
	}
}
