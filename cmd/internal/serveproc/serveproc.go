//go:build unix

// Package serveproc runs `tandem serve` node processes on loopback for
// Tandem's measuring commands: it builds the binary, starts a node on
// ports the kernel picks (so nothing races for a port with test suites
// or other runs), learns its addresses from the line `tandem serve`
// prints when it serves, asks its readiness and stops it.
//
// Nodes run with -insecure (no TLS, no gossip encryption, no tokens), as
// the cmd/tandem suites and the chaos harness run theirs. Every process
// is in a process group of its own, so a Ctrl-C at the terminal reaches
// only the command (which stops them), and on Linux the kernel kills it
// if the command dies without doing so.
package serveproc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Package is the import path of the tandem command Build builds.
const Package = "github.com/tandem-io/tandem/cmd/tandem"

// Build builds the tandem command (the release build, without the chaos
// harness's hooks) into dir and returns the binary's path. It runs `go
// build` in the current directory, so it needs the Go toolchain and a
// module that is, or requires, github.com/tandem-io/tandem.
func Build(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "tandem")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, Package)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w: %s", Package, err, bytes.TrimSpace(out))
	}
	return bin, nil
}

// Config says how to start one node.
type Config struct {
	// Binary is the tandem binary (see Build).
	Binary string
	// Name is the node's -name.
	Name string
	// Join lists the gossip addresses of running nodes to join; empty
	// starts a cluster.
	Join []string
	// Args are more `tandem serve` flags, given after the package's own
	// (-insecure, -name, -http, -gossip, -peer, -join), so a flag given
	// twice takes its value from Args.
	Args []string
	// Output receives the node's standard output and error; nil discards
	// them.
	Output io.Writer
	// StartTimeout bounds the wait for the node to say it serves
	// (default 30s).
	StartTimeout time.Duration
}

// Proc is a running node process.
type Proc struct {
	// Name is the node's name.
	Name string
	// PID is its process id.
	PID int
	// HTTP, Gossip and Peer are the addresses it serves, as it printed
	// them.
	HTTP, Gossip, Peer string
	// Profiles is the base URL of its Go runtime profiles
	// (http://addr/debug/pprof/) when started with -pprof, else empty.
	Profiles string

	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // how it exited; set before done closes
}

// serving matches the line `tandem serve` prints once it serves.
var serving = regexp.MustCompile(`^tandem node (\S+) serving (https?)://(\S+) \(gossip (\S+), peer (\S+)\)$`)

// profilesLine matches the line `tandem serve -pprof` prints before the
// serving line.
var profilesLine = regexp.MustCompile(`^tandem node \S+ profiles on (http://\S+)$`)

// Start starts a node and waits until it prints its addresses, which is
// once it has joined (or started) the cluster and serves HTTP; it need
// not be ready yet (see Ready). The node's environment is the command's
// without TANDEM_* variables, so only the flags decide its settings. If
// it exits or ctx or StartTimeout ends first, it is killed and Start
// returns an error.
func Start(ctx context.Context, cfg Config) (*Proc, error) {
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	out := cfg.Output
	if out == nil {
		out = io.Discard
	}
	args := []string{"serve", "-insecure", "-name", cfg.Name, "-http", "127.0.0.1:0", "-gossip", "127.0.0.1:0", "-peer", "127.0.0.1:0"}
	if len(cfg.Join) > 0 {
		args = append(args, "-join", strings.Join(cfg.Join, ","))
	}
	args = append(args, cfg.Args...)
	lines := &lineWatcher{out: out, found: make(chan []string, 1)}
	cmd := exec.Command(cfg.Binary, args...)
	cmd.Stdout, cmd.Stderr = lines, &lockedWriter{w: out, mu: &lines.mu}
	cmd.SysProcAttr = procAttr()
	cmd.Env = cleanEnv(os.Environ())
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start node %s: %w", cfg.Name, err)
	}
	p := &Proc{Name: cfg.Name, PID: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()
	select {
	case m := <-lines.found:
		p.HTTP, p.Gossip, p.Peer = m[3], m[4], m[5]
		lines.mu.Lock()
		p.Profiles = lines.profiles
		lines.mu.Unlock()
		if m[2] != "http" {
			p.Kill()
			return nil, fmt.Errorf("start node %s: it serves %s, want plain http", cfg.Name, m[2])
		}
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("start node %s: exited before serving: %v", cfg.Name, p.err)
	case <-timer.C:
		p.Kill()
		return nil, fmt.Errorf("start node %s: did not serve within %v", cfg.Name, cfg.StartTimeout)
	case <-ctx.Done():
		p.Kill()
		return nil, fmt.Errorf("start node %s: %w", cfg.Name, ctx.Err())
	}
}

// cleanEnv returns env without TANDEM_* variables.
func cleanEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, "TANDEM_") {
			out = append(out, kv)
		}
	}
	return out
}

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill kills the process with SIGKILL and waits until it has exited.
func (p *Proc) Kill() {
	if !p.Exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// Stop asks the process to stop gracefully (SIGTERM: the node drains and
// leaves) and waits until it exits; if it has not within grace, or ctx
// ends, it is killed and Stop says so.
func (p *Proc) Stop(ctx context.Context, grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sigTerm); err != nil && !p.Exited() {
		p.Kill()
		return fmt.Errorf("stop node %s: %w", p.Name, err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
		p.Kill()
		return fmt.Errorf("stop node %s: not stopped within %v, killed", p.Name, grace)
	case <-ctx.Done():
		p.Kill()
		return fmt.Errorf("stop node %s: %w, killed", p.Name, ctx.Err())
	}
}

// Readiness is the part of a node's /readyz answer Ready reads.
type Readiness struct {
	// Ready is true once the node holds every partition it owns.
	Ready bool `json:"ready"`
	// Reason says why it is not ready.
	Reason string `json:"reason"`
	// Members counts the members of the ring it serves by.
	Members int `json:"members"`
}

// Ready asks the node's /readyz, through client (whose timeout bounds
// the request).
func (p *Proc) Ready(ctx context.Context, client *http.Client) (Readiness, error) {
	var r Readiness
	body, status, err := get(ctx, client, "http://"+p.HTTP+"/readyz")
	if err != nil {
		return r, fmt.Errorf("readiness of %s: %w", p.Name, err)
	}
	if status != http.StatusOK && status != http.StatusServiceUnavailable {
		return r, fmt.Errorf("readiness of %s: status %d: %s", p.Name, status, body)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("readiness of %s: %w", p.Name, err)
	}
	return r, nil
}

// Metrics returns the node's /metrics, through client.
func (p *Proc) Metrics(ctx context.Context, client *http.Client) ([]byte, error) {
	body, status, err := get(ctx, client, "http://"+p.HTTP+"/metrics")
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", p.Name, err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s: status %d: %s", p.Name, status, body)
	}
	return body, nil
}

// maxAnswer bounds an answer get reads.
const maxAnswer = 16 << 20

// get fetches url and returns its body and status.
func get(ctx context.Context, client *http.Client, url string) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("read answer: %w", err)
	}
	return body, resp.StatusCode, nil
}

// lineWatcher passes a node's standard output on and sends the serving
// line's submatches on found, once.
type lineWatcher struct {
	out   io.Writer
	found chan []string

	mu       sync.Mutex // guards out (shared with the standard error's writer) and the fields below
	partial  []byte
	seen     bool
	profiles string // the profiles line's URL, if it came before the serving line
}

// Write passes p on and looks for the serving line in it.
func (w *lineWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.seen {
		w.partial = append(w.partial, p...)
		for {
			i := bytes.IndexByte(w.partial, '\n')
			if i < 0 {
				break
			}
			line := string(w.partial[:i])
			w.partial = w.partial[i+1:]
			if m := profilesLine.FindStringSubmatch(line); m != nil {
				w.profiles = m[1]
			}
			if m := serving.FindStringSubmatch(line); m != nil {
				w.seen, w.partial = true, nil
				w.found <- m
				break
			}
		}
		if len(w.partial) > 64<<10 { // no line that long is the serving line
			w.partial = nil
		}
	}
	if _, err := w.out.Write(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// lockedWriter writes to w under mu.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

// Write writes p to w under the lock.
func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// sigTerm asks a node to stop gracefully.
var sigTerm os.Signal = syscall.SIGTERM
