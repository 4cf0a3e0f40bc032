// Package cli holds what Tandem's commands share on the command line:
// flags that can also come from the environment and from a config file,
// usage errors, and the log handler.
package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
)

// UsageError is a mistake on the command line; commands exit 2 for it.
type UsageError struct{ Err error }

// Error describes the mistake.
func (e UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the mistake.
func (e UsageError) Unwrap() error { return e.Err }

// EnvName is the environment variable that sets flag name:
// TANDEM_<NAME>, upper case, dashes as underscores.
func EnvName(name string) string {
	return "TANDEM_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Parse parses args into fs, then sets every flag not given on the command
// line from its environment variable (EnvName), if that is set, then, if
// fs has the flags of AddConfigFlags and -config names a file, every flag
// still unset from the file (ReadConfig). So a flag's value comes from the
// command line, else TANDEM_<FLAG>, else the config file, else its
// default. It takes no positional arguments. Every error is a UsageError.
func Parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return UsageError{err}
	}
	if fs.NArg() > 0 {
		return UsageError{fmt.Errorf("unexpected arguments: %q", fs.Args())}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		env := EnvName(f.Name)
		if v, ok := os.LookupEnv(env); ok && !set[f.Name] && err == nil {
			if e := f.Value.Set(v); e != nil {
				err = UsageError{fmt.Errorf("%s=%q: %w", env, v, e)}
			}
			set[f.Name] = true
		}
	})
	if err != nil {
		return err
	}
	if f := fs.Lookup(ConfigFlag); f != nil && f.Value.String() != "" {
		return ReadConfig(fs, f.Value.String(), set)
	}
	return nil
}

// The flags AddConfigFlags registers.
const (
	ConfigFlag      = "config"
	PrintConfigFlag = "print-config"
)

// AddConfigFlags registers -config FILE, which Parse reads, and
// -print-config, whose value it returns: a command that finds it set
// prints its effective configuration (PrintConfig) and exits.
func AddConfigFlags(fs *flag.FlagSet) (printConfig *bool) {
	fs.String(ConfigFlag, "", "JSON config file: an object whose keys are flag names, e.g. {\"name\": \"a\", \"join\": \"10.0.0.1:7946\"}; command-line flags and TANDEM_* variables override it")
	return fs.Bool(PrintConfigFlag, false, "print the effective configuration (flags, environment, config file and defaults) as a config file, and exit")
}

// maxConfigBytes bounds a config file.
const maxConfigBytes = 1 << 20

// ReadConfig sets the flags of fs not in set from the config file at path:
// one JSON object whose keys are flag names (without the dash) and whose
// values are what the flag takes on the command line, as a JSON string,
// number or boolean: {"name": "a", "max-session-bytes": 1048576,
// "drain-timeout": "30s", "insecure": false}. A key that names no flag
// of fs (or names -config or -print-config) is an error naming the key.
func ReadConfig(fs *flag.FlagSet, path string, set map[string]bool) error {
	fail := func(format string, args ...any) error {
		return UsageError{fmt.Errorf("-config %s: "+format, append([]any{path}, args...)...)}
	}
	info, err := os.Stat(path)
	if err != nil {
		return UsageError{fmt.Errorf("-config: %w", err)}
	}
	if info.Size() > maxConfigBytes {
		return fail("larger than %d bytes", maxConfigBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return UsageError{fmt.Errorf("-config: %w", err)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var values map[string]any
	if err := dec.Decode(&values); err != nil {
		return fail("not a JSON object of flag names to values: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fail("more than one JSON value")
	}
	if values == nil {
		return fail("not a JSON object of flag names to values")
	}
	for _, key := range slices.Sorted(maps.Keys(values)) {
		f := fs.Lookup(key)
		switch {
		case key == ConfigFlag || key == PrintConfigFlag:
			return fail("key %q: -%s is for the command line and the environment only", key, key)
		case f == nil:
			return fail("unknown key %q: %s has no flag -%s (%s -h lists them)", key, fs.Name(), key, fs.Name())
		}
		var v string
		switch x := values[key].(type) {
		case string:
			v = x
		case json.Number:
			v = x.String()
		case bool:
			v = fmt.Sprint(x)
		default:
			return fail("key %q: want a string, number or boolean, got %s", key, jsonKind(x))
		}
		if set[key] {
			continue // the command line or the environment has it
		}
		if err := f.Value.Set(v); err != nil {
			return fail("key %q: %q: %v", key, v, err)
		}
	}
	return nil
}

// jsonKind names the kind of a decoded JSON value.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// PrintConfig writes the values of fs's flags, as they are now, in the
// format ReadConfig reads: one JSON object, keys sorted, booleans and
// numbers as JSON's own, other values as strings. -config and
// -print-config are left out. Tandem's flags hold no secrets (keys and
// tokens are only ever given as files), so every value is printed.
func PrintConfig(w io.Writer, fs *flag.FlagSet) error {
	out := map[string]any{}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == ConfigFlag || f.Name == PrintConfigFlag {
			return
		}
		var v any = f.Value.String()
		if g, ok := f.Value.(flag.Getter); ok {
			switch x := g.Get().(type) {
			case bool, int, int64, uint, uint64, float64:
				v = x
			}
		}
		out[f.Name] = v
	})
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// NewLogger returns a logger writing to w at the named level (debug,
// info, warn or error) in the named format: text (slog's key=value lines)
// or json (one JSON object per line).
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, UsageError{fmt.Errorf("-log-level: %w", err)}
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, UsageError{fmt.Errorf("-log-format %q: want text or json", format)}
}

// LogFormatUsage documents a -log-format flag.
const LogFormatUsage = "log format: text (key=value lines) or json (one object per line)"
