package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-io/tandem/chaos"
	"github.com/tandem-io/tandem/cmd/internal/serveproc"
)

// buildDir holds the binaries builds made; TestMain removes it.
var buildDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// builds are the binaries the tests run, built once: tandem-chaos, and
// tandem with and without the build tag chaos, each into a directory of
// its own.
var builds = sync.OnceValues(func() (map[string]string, error) {
	dir, err := os.MkdirTemp("", "tandem-chaos-test-")
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	buildDir = dir
	out := map[string]string{"harness": filepath.Join(dir, "harness"), "chaos": filepath.Join(dir, "chaos"), "release": filepath.Join(dir, "release")}
	for _, d := range out {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, fmt.Errorf("temp dir: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	goBuild := func(out string, args ...string) error {
		cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", out}, args...)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %v: %w: %s", args, err, b)
		}
		return nil
	}
	errs := make([]error, 3)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		errs[0] = goBuild(filepath.Join(out["harness"], "tandem-chaos"), chaos.Module+"/cmd/tandem-chaos")
	}()
	go func() {
		defer wg.Done()
		_, errs[1] = chaos.BuildBinary(ctx, out["chaos"])
	}()
	go func() {
		defer wg.Done()
		_, errs[2] = serveproc.Build(ctx, out["release"])
	}()
	wg.Wait()
	return out, errors.Join(errs...)
})

// setup returns a directory outside the source tree holding a copy of
// tandem-chaos and, if kind is "chaos" or "release", a tandem of that
// build beside it; and the directories holding the builds.
func setup(t *testing.T, kind string) (string, map[string]string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds tandem and tandem-chaos")
	}
	b, err := builds()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(b["harness"], "tandem-chaos"), filepath.Join(dir, "tandem-chaos"))
	if kind != "" {
		copyFile(t, filepath.Join(b[kind], "tandem"), filepath.Join(dir, "tandem"))
	}
	return dir, b
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// runHarness runs the tandem-chaos in dir with args, from a working
// directory outside the source tree and with PATH set to path, and
// returns its exit status, standard output and standard error.
func runHarness(t *testing.T, dir, path string, timeout time.Duration, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "tandem-chaos"), args...)
	cmd.Dir = t.TempDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PATH=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PATH="+path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run tandem-chaos: %v\nstderr:\n%s", err, stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// Installed (go install puts tandem-chaos and a chaos build of tandem in
// one directory) and run outside the source tree, with no Go toolchain
// on PATH, tandem-chaos runs the tandem beside it and says so.
func TestInstalledRunUsesTheTandemBesideIt(t *testing.T) {
	dir, _ := setup(t, "chaos")
	report := filepath.Join(t.TempDir(), "report")
	code, stdout, stderr := runHarness(t, dir, filepath.Join(t.TempDir(), "empty"), 90*time.Second,
		"-nodes", "3", "-profile", "local", "-duration", "2s", "-faults", "delay", "-clients", "2", "-sessions", "4", "-seed", "1",
		"-report", report, "-q")
	t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	want := fmt.Sprintf("tandem-chaos: using %s (found next to %s; chaos build, version ",
		filepath.Join(dir, "tandem"), filepath.Join(dir, "tandem-chaos"))
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q", want)
	}
	if strings.Contains(stderr, "building") {
		t.Error("it built a tandem")
	}
	// The verdict is the cluster's business; this test is about which
	// binary ran. It ran if the run was carried out and reported.
	if code != exitPass && code != exitFail {
		t.Fatalf("exit status %d, want a finished run", code)
	}
	if _, err := os.Stat(filepath.Join(report, "report.json")); err != nil {
		t.Fatalf("no report: %v", err)
	}
	if code == exitFail {
		t.Logf("the run FAILed (not this test's concern); report in %s", report)
	}
}

// A release build beside tandem-chaos is passed over, and said why, for
// a chaos build on PATH; -which names it and exits.
func TestWhichPassesOverAReleaseBuild(t *testing.T) {
	dir, b := setup(t, "release")
	code, stdout, stderr := runHarness(t, dir, b["chaos"], 30*time.Second, "-which")
	if code != exitPass {
		t.Fatalf("exit status %d\nstderr:\n%s", code, stderr)
	}
	if got, want := strings.TrimSpace(stdout), filepath.Join(b["chaos"], "tandem"); got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	for _, want := range []string{
		"tandem-chaos: passed over " + filepath.Join(dir, "tandem") + " (next to " + filepath.Join(dir, "tandem-chaos") + "): version (devel), built without the build tag chaos",
		"tandem-chaos: passed over source tree: ",
		"tandem-chaos: using " + filepath.Join(b["chaos"], "tandem") + " (found on PATH; chaos build",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

// With no usable tandem anywhere, tandem-chaos exits 3 saying what it
// looked at and how to install one; a release build given with -binary
// is refused the same way.
func TestNoUsableBinarySaysHowToInstall(t *testing.T) {
	dir, b := setup(t, "")
	empty := filepath.Join(t.TempDir(), "empty")
	code, stdout, stderr := runHarness(t, dir, empty, 30*time.Second, "-duration", "1s")
	if code != exitError || stdout != "" {
		t.Fatalf("exit status %d, stdout %q; want 3 and nothing", code, stdout)
	}
	for _, want := range []string{"no usable tandem binary", filepath.Join(dir, "tandem"), "not within a checkout",
		"PATH: executable file not found", "go install -tags chaos " + chaos.TandemPackage + "@"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}

	code, _, stderr = runHarness(t, dir, empty, 30*time.Second, "-binary", filepath.Join(b["release"], "tandem"), "-duration", "1s")
	if code != exitError || !strings.Contains(stderr, "built without the build tag chaos") || !strings.Contains(stderr, "go install -tags chaos") {
		t.Fatalf("a release build given: exit status %d\nstderr:\n%s", code, stderr)
	}
}

func TestUsageExplainsTheLookup(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &bytes.Buffer{}, &stderr); code != exitPass {
		t.Fatalf("exit status %d", code)
	}
	for _, want := range []string{"go install -tags chaos " + chaos.TandemPackage + "@VERSION", "-binary", "-which", "a tandem on PATH"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestUsageStatesTheCheckingRules(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &bytes.Buffer{}, &stderr); code != exitPass {
		t.Fatalf("exit status %d", code)
	}
	for _, want := range []string{"-ops-per-session", fmt.Sprint(chaos.DefaultOpsPerSession), "an unknown session fails the run"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestOverlapOutsideZeroToOneIsABadCommandLine(t *testing.T) {
	for _, p := range []string{"-0.1", "1.5", "NaN"} {
		var stderr bytes.Buffer
		if code := run(context.Background(), []string{"-overlap", p, "-which"}, &bytes.Buffer{}, &stderr); code != exitUsage || !strings.Contains(stderr.String(), "-overlap") {
			t.Errorf("-overlap %s: exit status %d, stderr %q", p, code, stderr.String())
		}
	}
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"-h"}, &bytes.Buffer{}, &stderr); code != exitPass || !strings.Contains(stderr.String(), "-overlap") {
		t.Errorf("usage lacks -overlap:\n%s", stderr.String())
	}
}
