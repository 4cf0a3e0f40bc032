//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-io/tandem/cmd/internal/serveproc"
)

// modulePath is Tandem's module; tandem-bench builds the node binary from
// it when it runs inside its source tree.
const modulePath = "github.com/tandem-io/tandem"

// tandemBinary is the node binary a run uses.
type tandemBinary struct {
	path    string
	source  string // how it was found, said in the output
	version string // what `tandem version` prints
	commit  string // the source tree's commit, "-dirty" if it had changes; "" if not built here
}

// findTandem returns the node binary to run: flagPath if set; else, inside
// Tandem's source tree with a Go toolchain, one built there into dir; else
// a tandem beside this executable; else one on PATH.
func findTandem(ctx context.Context, flagPath, dir string) (tandemBinary, error) {
	var b tandemBinary
	switch {
	case flagPath != "":
		b.path, b.source = flagPath, "given by -binary"
	default:
		if root, ok := sourceTree(); ok {
			if goBin, err := exec.LookPath("go"); err == nil {
				path, err := buildTandem(ctx, goBin, root, dir)
				if err != nil {
					return b, err
				}
				b.path, b.source = path, "built by go build ./cmd/tandem in the source tree "+root
				b.commit = treeCommit(ctx, root)
				break
			}
		}
		if exe, err := os.Executable(); err == nil {
			beside := filepath.Join(filepath.Dir(exe), "tandem")
			if fi, err := os.Stat(beside); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				b.path, b.source = beside, "found beside tandem-bench"
				break
			}
		}
		path, err := exec.LookPath("tandem")
		if err != nil {
			return b, errors.New("no tandem binary: not run inside Tandem's source tree with go on PATH, no tandem beside tandem-bench, none on PATH; give -binary")
		}
		b.path, b.source = path, "found on PATH"
	}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(vctx, b.path, "version").Output()
	if err != nil {
		return b, fmt.Errorf("run %s version: %w", b.path, err)
	}
	b.version = strings.TrimSpace(string(out))
	return b, nil
}

// sourceTree returns the root of Tandem's source tree if the working
// directory is inside it.
func sourceTree() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for range 64 { // bounded: a path has fewer components
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
					return dir, f[1] == modulePath
				}
			}
			return "", false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", false
}

// treeCommit returns the commit checked out at root, with "-dirty" when
// tracked files have changes (they are built too), or "unknown". A
// binary's own record of it (`tandem version`) is missing when GOFLAGS
// holds -buildvcs=false.
func treeCommit(ctx context.Context, root string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	status, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output()
	if err != nil || len(bytes.TrimSpace(status)) > 0 {
		commit += "-dirty"
	}
	return commit
}

// buildTandem builds ./cmd/tandem of the source tree at root into dir.
func buildTandem(ctx context.Context, goBin, root, dir string) (string, error) {
	bin := filepath.Join(dir, "tandem")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./cmd/tandem")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/tandem in %s: %w: %s", root, err, bytes.TrimSpace(out))
	}
	return bin, nil
}

// tandemProc is one `tandem serve` process, its output kept in a log.
type tandemProc struct {
	*serveproc.Proc
	logPath string
}

// startTandem starts `tandem serve` as node name on free loopback ports,
// joining join if not empty, and returns once it prints its addresses.
// Its output goes to a log in dir. With profiles it serves its Go runtime
// profiles too (tandem serve -pprof, on a free loopback port).
func startTandem(ctx context.Context, bin, dir, name, join string, profiles bool) (*tandemProc, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cfg := serveproc.Config{Binary: bin, Name: name, Args: []string{"-profile", "local", "-log-level", "warn"}, Output: logf}
	if profiles {
		cfg.Args = append(cfg.Args, "-pprof", "127.0.0.1:0")
	}
	if join != "" {
		cfg.Join = []string{join}
	}
	proc, err := serveproc.Start(ctx, cfg)
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("%w: %s", err, tail(logPath))
	}
	go func() {
		<-proc.Done()
		logf.Close()
	}()
	return &tandemProc{Proc: proc, logPath: logPath}, nil
}

// kill kills the process and waits until it has exited.
func (p *tandemProc) kill() {
	if p != nil {
		p.Kill()
	}
}

// tail returns the end of the log at path, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(log %s: %v)", path, err)
	}
	b = bytes.TrimSpace(b)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return fmt.Sprintf("log %s ends: %s", path, b)
}

// tandemCluster is the three node processes.
type tandemCluster struct {
	procs []*tandemProc
	http  *http.Client
}

// startCluster starts n node processes, the first alone and the others
// joining it, and waits until they serve by one ring of all of them;
// profiles as in startTandem.
func startCluster(ctx context.Context, bin, dir string, n int, profiles bool) (*tandemCluster, error) {
	c := &tandemCluster{http: &http.Client{Timeout: 5 * time.Second}}
	for i := range n {
		join := ""
		if i > 0 {
			join = c.procs[0].Gossip
		}
		p, err := startTandem(ctx, bin, dir, fmt.Sprintf("tandem-%d", i+1), join, profiles)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.procs = append(c.procs, p)
	}
	if _, err := c.waitConverged(ctx, n, 30*time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// stop kills every process.
func (c *tandemCluster) stop() {
	for _, p := range c.procs {
		p.kill()
	}
}

// peers returns the processes' peer addresses, the smart client's seeds.
func (c *tandemCluster) peers() []string {
	var out []string
	for _, p := range c.procs {
		out = append(out, p.Peer)
	}
	return out
}

// clusterView is the part of GET /v1/cluster that tandem-bench reads.
type clusterView struct {
	Ready           bool                     `json:"ready"`
	Partitions      map[string]partitionLoad `json:"partitions"`
	UnderReplicated int                      `json:"under_replicated"`
	PendingHandoff  int                      `json:"pending_handoff"`
}

// partitionLoad counts one ring member's partitions by role. Two nodes
// whose counts differ serve by different rings (a ring's epoch is each
// node's own count, so it cannot tell).
type partitionLoad struct {
	Primary int `json:"primary"`
	Buddy   int `json:"buddy"`
}

// waitConverged waits, at most timeout, until every process is ready and
// has finished its hand-offs, and all serve by one ring of members members
// with no partition under-replicated. It returns the ring's load.
func (c *tandemCluster) waitConverged(ctx context.Context, members int, timeout time.Duration) (map[string]partitionLoad, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		var loads []map[string]partitionLoad
		last := ""
		for _, p := range c.procs {
			var v clusterView
			if err := c.getJSON(ctx, p, "/v1/cluster", &v); err != nil {
				last = err.Error()
				break
			}
			if !v.Ready || len(v.Partitions) != members || v.PendingHandoff > 0 || v.UnderReplicated > 0 {
				last = fmt.Sprintf("%s: ready %v, %d members in its ring, %d pending hand-offs, %d under-replicated partitions", p.Name, v.Ready, len(v.Partitions), v.PendingHandoff, v.UnderReplicated)
				break
			}
			loads = append(loads, v.Partitions)
		}
		if last == "" {
			same := true
			for _, l := range loads {
				same = same && maps.Equal(l, loads[0])
			}
			if same {
				return loads[0], nil
			}
			last = fmt.Sprintf("the processes' rings differ: %v", loads)
		}
		if err := wait(ctx, 50*time.Millisecond); err != nil {
			return nil, fmt.Errorf("wait for %d processes to serve by one ring of %d members: %w (last: %s)", len(c.procs), members, err, last)
		}
	}
}

// getJSON GETs path from p's HTTP API and decodes the JSON answer into out.
func (c *tandemCluster) getJSON(ctx context.Context, p *tandemProc, path string, out any) error {
	b, err := c.get(ctx, p, path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("GET %s from %s: decode: %w", path, p.Name, err)
	}
	return nil
}

// get GETs path from p's HTTP API and returns a 200 answer's body.
func (c *tandemCluster) get(ctx context.Context, p *tandemProc, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.HTTP+path, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s from %s: %w", path, p.Name, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s from %s: %w", path, p.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s from %s: %w", path, p.Name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s from %s: %s: %s", path, p.Name, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}

// copies returns how many session copies p holds, primary and buddy, as
// its /metrics says (tandem_sessions).
func (c *tandemCluster) copies(ctx context.Context, p *tandemProc) (int, error) {
	b, err := c.get(ctx, p, "/metrics")
	if err != nil {
		return 0, err
	}
	total, found := 0, 0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "tandem_sessions{") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metrics of %s: %q: %w", p.Name, line, err)
		}
		total += int(v)
		found++
	}
	if found == 0 {
		return 0, fmt.Errorf("metrics of %s: no tandem_sessions", p.Name)
	}
	return total, nil
}
