package cli

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

func TestFlagsComeFromTheCommandLineThenTheEnvironment(t *testing.T) {
	t.Setenv("TANDEM_JOIN", "127.0.0.1:1")
	t.Setenv("TANDEM_MAX_SESSION_BYTES", "42")
	t.Setenv("TANDEM_NAME", "from-env")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	join := fs.String("join", "", "")
	size := fs.Int("max-session-bytes", 1, "")
	name := fs.String("name", "", "")
	if err := Parse(fs, []string{"-name", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	if *join != "127.0.0.1:1" || *size != 42 || *name != "from-flag" {
		t.Fatalf("join %q, size %d, name %q", *join, *size, *name)
	}
}

func TestMistakesAreUsageErrors(t *testing.T) {
	t.Setenv("TANDEM_N", "lots")
	cases := map[string][]string{"unknown flag": {"-nope"}, "positional": {"extra"}, "bad environment": nil}
	for name, args := range cases {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Int("n", 0, "")
		var u UsageError
		if err := Parse(fs, args); !errors.As(err, &u) {
			t.Errorf("%s: %v, want a UsageError", name, err)
		}
	}
	if _, err := NewLogger(io.Discard, "loud", "text"); !errors.As(err, new(UsageError)) {
		t.Errorf("bad level: %v", err)
	}
	if _, err := NewLogger(io.Discard, "warn", "yaml"); !errors.As(err, new(UsageError)) || !strings.Contains(err.Error(), "-log-format") {
		t.Errorf("bad format: %v", err)
	}
	if _, err := NewLogger(io.Discard, "warn", "text"); err != nil {
		t.Errorf("warn: %v", err)
	}
}
