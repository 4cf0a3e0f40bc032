package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// Scaling a cluster out by two nodes and back in, one change at a time,
// under the session mix: no request fails, no acknowledged write is lost,
// each change moves some primaries but not many times its 1/N share, and
// every change restores both copies of everything.
func TestScaleOutAndInUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster on loopback under load")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := run(ctx, []string{"-from", "3", "-add", "2", "-clients", "4", "-sessions", "16", "-timeout", "45s"}, &out)
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !res.ok() || res.requests == 0 || res.checked == 0 {
		t.Fatalf("%d requests, %d failed, %d lost, %d sessions read back", res.requests, res.failed, res.lost, res.checked)
	}
	want := []string{"join node-4", "join node-5", "leave node-5", "leave node-4"}
	if len(res.changes) != len(want) {
		t.Fatalf("changes %+v, want %v", res.changes, want)
	}
	for i, c := range res.changes {
		if c.what != want[i] || c.moved <= 0 || c.moved > 4*c.optimum || c.restored <= 0 {
			t.Errorf("change %d: %+v", i, c)
		}
	}
	if !strings.Contains(out.String(), "| join node-4 | 4 |") || !strings.Contains(out.String(), "PASS:") {
		t.Errorf("no table or verdict in\n%s", out.String())
	}
}

// The same with seats guarding the leases (-seats 3): the seats follow
// the membership, and no request fails, no acknowledged write is lost.
func TestScaleOutAndInUnderLoadWithSeats(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster on loopback under load")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	res, err := run(ctx, []string{"-from", "3", "-add", "2", "-clients", "4", "-sessions", "16", "-timeout", "45s", "-seats", "3"}, &out)
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !res.ok() || res.requests == 0 || res.checked == 0 || len(res.changes) != 4 {
		t.Fatalf("%d requests, %d failed, %d lost, %d sessions read back, %d changes", res.requests, res.failed, res.lost, res.checked, len(res.changes))
	}
	for _, c := range res.changes {
		if c.seats == "" || c.seats == "v0 []" {
			t.Errorf("%s: no seat config known after it (%q)", c.what, c.seats)
		}
	}
}

func TestBadCommandLines(t *testing.T) {
	for _, args := range [][]string{{"-from", "1"}, {"-add", "0"}, {"-clients", "0"}, {"-profile", "wan"}, {"-seats", "-1"}, {"-nope"}} {
		var out bytes.Buffer
		if _, err := run(context.Background(), args, &out); err == nil {
			t.Errorf("%q: accepted", args)
		}
	}
}
