package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-io/tandem"
)

// tandem -h, tandem help and their spellings list every command, one line
// each, and succeed.
func TestHelpListsTheCommands(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"-help"}, {"--help"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, &out, io.Discard); err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		for _, cmd := range []string{"dev", "serve", "certs", "version", "help"} {
			n := 0
			for _, line := range strings.Split(out.String(), "\n") {
				if f := strings.Fields(line); len(f) > 1 && f[0] == cmd && strings.HasPrefix(line, "  ") {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("%q: %d lines for %s in:\n%s", args, n, cmd, out.String())
			}
		}
	}
}

// tandem version prints what tandem_build_info says.
func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	b := tandem.Build()
	if want := fmt.Sprintf("tandem %s (commit %s, %s)\n", b.Version, b.Commit, b.GoVersion); out.String() != want {
		t.Fatalf("version printed %q, want %q", out.String(), want)
	}
	if err := run(context.Background(), []string{"version", "extra"}, io.Discard, io.Discard); !isUsageError(err) {
		t.Fatalf("version with an argument: %v, want a usage error", err)
	}
}

// writeConfig writes a config file and returns its path.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tandem.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tandem serve -print-config prints the effective configuration, flags
// over TANDEM_* over the config file over defaults, naming the security
// material's files but none of its secrets, and exits without starting.
func TestServePrintConfig(t *testing.T) {
	dir := t.TempDir()
	if err := run(context.Background(), []string{"certs", "-dir", dir, "-nodes", "a"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	file := writeConfig(t, `{"name": "from-file", "http": "0.0.0.0:7070", "join": "10.0.0.1:7946", "certs-dir": "`+dir+`", "min-members": 2, "drain-timeout": "45s", "log-format": "json"}`)
	t.Setenv("TANDEM_ADVERTISE", "10.0.0.9")
	t.Setenv("TANDEM_MIN_MEMBERS", "3")
	var out bytes.Buffer
	start := time.Now()
	if err := run(context.Background(), []string{"serve", "-config", file, "-name", "a", "-print-config"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("-print-config took too long: did it start a node?")
	}
	var got map[string]any
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	for key, want := range map[string]any{
		"name": "a", "advertise": "10.0.0.9", "min-members": 3.0, // flag, environment over file
		"http": "0.0.0.0:7070", "join": "10.0.0.1:7946", "certs-dir": dir, "drain-timeout": "45s", "log-format": "json", // file
		"gossip": "127.0.0.1:7946", "max-session-bytes": 1048576.0, "insecure": false, "log-level": "info", "profile": "lan", "tokens-file": "", // defaults
	} {
		if got[key] != want {
			t.Errorf("%s = %#v, want %#v", key, got[key], want)
		}
	}
	for _, key := range []string{"config", "print-config"} {
		if _, ok := got[key]; ok {
			t.Errorf("printed %s", key)
		}
	}
	// None of the material's secrets, whatever the flags point at.
	for _, name := range []string{"tokens", "gossip.key", "a.key", "ca.key"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			for _, word := range strings.Fields(line) {
				if len(word) >= 16 && strings.Contains(out.String(), word) {
					t.Fatalf("-print-config shows %s of %s:\n%s", word, name, out.String())
				}
			}
		}
	}

	// What it printed, read back as a config file, is the same configuration.
	os.Unsetenv("TANDEM_ADVERTISE")
	os.Unsetenv("TANDEM_MIN_MEMBERS")
	var again bytes.Buffer
	if err := run(context.Background(), []string{"serve", "-config", writeConfig(t, out.String()), "-print-config"}, &again, io.Discard); err != nil {
		t.Fatal(err)
	}
	if again.String() != out.String() {
		t.Fatalf("read back:\n%s\nprinted:\n%s", again.String(), out.String())
	}
}

// A config file with a key that is no flag of serve is refused, naming it.
func TestServeConfigMistakes(t *testing.T) {
	for _, tc := range []struct{ content, want string }{
		{`{"name": "a", "listen": ":7070"}`, `unknown key "listen"`},
		{`{"drain-timeout": "soon"}`, `key "drain-timeout"`},
		{`{"log-format": "yaml"}`, `-log-format "yaml"`},
	} {
		err := run(context.Background(), []string{"serve", "-insecure", "-config", writeConfig(t, tc.content)}, io.Discard, io.Discard)
		if !isUsageError(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a usage error saying %s", tc.content, err, tc.want)
		}
	}
}

// lockedBuffer is a bytes.Buffer for a command running in a goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tandem serve -log-format json writes nothing but JSON records to stderr.
func TestServeLogsJSON(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "-insecure", "-name", "json-logger", "-http", "127.0.0.1:0", "-gossip", "127.0.0.1:0", "-peer", "127.0.0.1:0",
			"-profile", "local", "-log-format", "json"}, &stdout, &stderr)
	}()
	waitFor(t, 20*time.Second, "the node to be ready", func() bool { return strings.Contains(stderr.String(), "node ready") })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	msgs := map[string]bool{}
	for _, line := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec["level"] == nil || rec["time"] == nil {
			t.Fatalf("not a JSON log record: %q (%v)", line, err)
		}
		msgs[fmt.Sprint(rec["msg"])] = true
	}
	for _, want := range []string{"node ready", "stopping"} {
		if !msgs[want] {
			t.Errorf("no %q record in:\n%s", want, stderr.String())
		}
	}
	if !strings.Contains(stderr.String(), `"level":"WARN","msg":"-insecure:`) {
		t.Errorf("no -insecure warning in:\n%s", stderr.String())
	}
}
