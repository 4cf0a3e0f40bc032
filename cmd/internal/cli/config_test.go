package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testFlags is a command's flags, with the config flags.
type testFlags struct {
	fs      *flag.FlagSet
	name    *string
	join    *string
	size    *int
	drain   *time.Duration
	plain   *bool
	printIt *bool
}

func newTestFlags() *testFlags {
	fs := flag.NewFlagSet("tandem serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := &testFlags{fs: fs}
	f.name = fs.String("name", "default-name", "")
	f.join = fs.String("join", "", "")
	f.size = fs.Int("max-session-bytes", 1024, "")
	f.drain = fs.Duration("drain-timeout", 30*time.Second, "")
	f.plain = fs.Bool("http-plain", false, "")
	f.printIt = AddConfigFlags(fs)
	return f
}

// writeFile writes content to a file in a new directory and returns its path.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tandem.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Each flag's value comes from the command line, else the environment,
// else the config file, else its default.
func TestConfigPrecedence(t *testing.T) {
	file := writeFile(t, `{"name": "from-file", "join": "10.0.0.1:7946", "max-session-bytes": 2048, "drain-timeout": "1m", "http-plain": true}`)
	for _, tc := range []struct {
		name  string
		args  []string
		env   map[string]string
		want  string // name join size drain plain
		usage bool
	}{
		{"defaults", nil, nil, "default-name  1024 30s false", false},
		{"file", []string{"-config", file}, nil, "from-file 10.0.0.1:7946 2048 1m0s true", false},
		{"file named by the environment", nil, map[string]string{"TANDEM_CONFIG": file}, "from-file 10.0.0.1:7946 2048 1m0s true", false},
		{"environment over file", []string{"-config", file}, map[string]string{"TANDEM_NAME": "from-env", "TANDEM_HTTP_PLAIN": "false"}, "from-env 10.0.0.1:7946 2048 1m0s false", false},
		{"flags over environment and file", []string{"-config", file, "-name", "from-flag", "-max-session-bytes", "4096"}, map[string]string{"TANDEM_NAME": "from-env"}, "from-flag 10.0.0.1:7946 4096 1m0s true", false},
		{"flag set to its default still wins", []string{"-config", file, "-http-plain=false", "-drain-timeout", "30s"}, nil, "from-file 10.0.0.1:7946 2048 30s false", false},
		{"missing file", []string{"-config", file + ".missing"}, nil, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			f := newTestFlags()
			err := Parse(f.fs, tc.args)
			if tc.usage {
				if !errors.As(err, new(UsageError)) {
					t.Fatalf("%v, want a usage error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join([]string{*f.name, *f.join, f.fs.Lookup("max-session-bytes").Value.String(), f.drain.String(), f.fs.Lookup("http-plain").Value.String()}, " ")
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// A config file's mistakes are usage errors that name the key.
func TestConfigFileMistakes(t *testing.T) {
	for _, tc := range []struct {
		name, content, want string
	}{
		{"unknown key", `{"name": "a", "nmae": "b"}`, `unknown key "nmae"`},
		{"config in config", `{"config": "other.json"}`, `key "config"`},
		{"print-config in config", `{"print-config": true}`, `key "print-config"`},
		{"array", `{"join": ["a:1", "b:2"]}`, `key "join": want a string, number or boolean, got an array`},
		{"null", `{"name": null}`, `key "name": want a string, number or boolean, got null`},
		{"object", `{"name": {}}`, `got an object`},
		{"bad value", `{"max-session-bytes": "lots"}`, `key "max-session-bytes"`},
		{"bad duration", `{"drain-timeout": 30}`, `key "drain-timeout"`},
		{"not an object", `["name"]`, "not a JSON object"},
		{"null document", `null`, "not a JSON object"},
		{"two documents", `{"name": "a"} {"name": "b"}`, "more than one JSON value"},
		{"not JSON", "name = a", "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, tc.content)
			f := newTestFlags()
			err := Parse(f.fs, []string{"-config", path})
			if !errors.As(err, new(UsageError)) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("%v, want a usage error naming %s and saying %s", err, path, tc.want)
			}
		})
	}
	// A key the command line overrides is still checked.
	f := newTestFlags()
	if err := Parse(f.fs, []string{"-config", writeFile(t, `{"name": ["x"]}`), "-name", "b"}); err == nil {
		t.Fatal("a malformed value overridden by a flag passed")
	}
}

// -print-config prints the effective configuration in the config file's
// format, and reading it back gives the same configuration.
func TestPrintConfigRoundTrips(t *testing.T) {
	t.Setenv("TANDEM_JOIN", "10.0.0.2:7946")
	f := newTestFlags()
	if err := Parse(f.fs, []string{"-config", writeFile(t, `{"max-session-bytes": 2048}`), "-name", "a", "-http-plain", "-print-config"}); err != nil {
		t.Fatal(err)
	}
	if !*f.printIt {
		t.Fatal("-print-config not returned")
	}
	var out bytes.Buffer
	if err := PrintConfig(&out, f.fs); err != nil {
		t.Fatal(err)
	}
	var printed map[string]any
	if err := json.Unmarshal(out.Bytes(), &printed); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	want := map[string]any{"name": "a", "join": "10.0.0.2:7946", "max-session-bytes": 2048.0, "drain-timeout": "30s", "http-plain": true}
	if len(printed) != len(want) {
		t.Fatalf("printed %v, want %v", printed, want)
	}
	for k, v := range want {
		if printed[k] != v {
			t.Fatalf("printed %s = %#v, want %#v (all: %s)", k, printed[k], v, out.String())
		}
	}
	t.Setenv("TANDEM_JOIN", "")
	again := newTestFlags()
	if err := Parse(again.fs, []string{"-config", writeFile(t, out.String()), "-join", "10.0.0.2:7946"}); err != nil {
		t.Fatal(err)
	}
	var out2 bytes.Buffer
	if err := PrintConfig(&out2, again.fs); err != nil {
		t.Fatal(err)
	}
	if out2.String() != out.String() {
		t.Fatalf("read back:\n%s\nwas\n%s", out2.String(), out.String())
	}
}

func TestLogFormats(t *testing.T) {
	for _, tc := range []struct {
		format string
		check  func(line string) bool
	}{
		{"text", func(line string) bool {
			return strings.Contains(line, "level=WARN") && strings.Contains(line, "msg=hello") && strings.Contains(line, "k=v")
		}},
		{"json", func(line string) bool {
			var m map[string]any
			return json.Unmarshal([]byte(line), &m) == nil && m["level"] == "WARN" && m["msg"] == "hello" && m["k"] == "v"
		}},
	} {
		var out bytes.Buffer
		log, err := NewLogger(&out, "warn", tc.format)
		if err != nil {
			t.Fatal(err)
		}
		log.Info("below the level")
		log.Warn("hello", slog.String("k", "v"))
		if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); len(lines) != 1 || !tc.check(lines[0]) {
			t.Errorf("%s: %q", tc.format, out.String())
		}
	}
}
