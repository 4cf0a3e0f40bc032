package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// `tandem serve` under the name of a live member exits within 10 s with
// an error naming the member and its gossip address.
func TestNameOfALiveMemberExits(t *testing.T) {
	first := startProc(t, "node-1", "")
	waitFor(t, 20*time.Second, "node-1 to be ready", func() bool { return len(ringOf(first)) == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := []string{"serve", "-insecure", "-name", "node-1",
		"-http", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "-gossip", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"-peer", "127.0.0.1:0", "-profile", "local", "-log-level", "warn", "-join", first.gossip}
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "TANDEM_TEST_AS_COMMAND=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	t.Logf("after %v: %v; stderr:\n%s", took, err, stderr.String())
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("second node-1: %v, want exit status 1", err)
	}
	if took > 10*time.Second {
		t.Fatalf("took %v to refuse the name", took)
	}
	for _, s := range []string{`"node-1"`, first.gossip, "name taken"} {
		if !strings.Contains(stderr.String(), s) {
			t.Fatalf("stderr does not name %s", s)
		}
	}
	if got := ringOf(first); len(got) != 1 {
		t.Fatalf("node-1's ring after the refused start: %v", got)
	}
}

// -join takes a host name, looked up by the system's resolver.
func TestJoinThroughHostName(t *testing.T) {
	first := startProc(t, "node-1", "")
	waitFor(t, 20*time.Second, "node-1 to be ready", func() bool { return len(ringOf(first)) == 1 })
	_, port, err := net.SplitHostPort(first.gossip)
	if err != nil {
		t.Fatal(err)
	}
	second := startProc(t, "node-2", "localhost:"+port)
	waitRing(t, []*proc{first, second}, 2)
}
