package chaos

import (
	"bufio"
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
)

// Module is the import path of Tandem's module; TandemPackage is its node
// command, the binary the harness runs.
const (
	Module        = "github.com/tandem-io/tandem"
	TandemPackage = Module + "/cmd/tandem"
)

// ErrNoChaosHooks says a tandem binary was built without the build tag
// chaos, so it has no fault-injection hooks (a release build).
var ErrNoChaosHooks = errors.New("built without the build tag chaos, so it has no fault-injection hooks")

// BinaryInfo is what a binary's Go build information says about it.
type BinaryInfo struct {
	// Package is the main package's import path.
	Package string
	// Version is the main module's version: a tag or pseudo-version for
	// `go install ...@VERSION`, "(devel)" for a build in a source tree.
	Version string
	// Tags are the build tags it was built with.
	Tags []string
}

// Chaos reports whether the binary was built with the build tag chaos.
func (b BinaryInfo) Chaos() bool { return slices.Contains(b.Tags, "chaos") }

// IsTandem reports whether the binary is a build of the tandem command
// (Tandem's, or a fork's: any package path ending in /cmd/tandem).
func (b BinaryInfo) IsTandem() bool {
	return b.Package == TandemPackage || strings.HasSuffix(b.Package, "/cmd/tandem")
}

// InspectBinary reads the Go build information recorded in the binary at
// path, without running it.
func InspectBinary(path string) (BinaryInfo, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return BinaryInfo{}, fmt.Errorf("read Go build information of %s: %w", path, err)
	}
	return infoOf(bi), nil
}

// infoOf extracts a BinaryInfo from build information.
func infoOf(bi *debug.BuildInfo) BinaryInfo {
	info := BinaryInfo{Package: bi.Path, Version: bi.Main.Version}
	for _, s := range bi.Settings {
		if s.Key == "-tags" {
			for _, t := range strings.Split(s.Value, ",") {
				if t = strings.TrimSpace(t); t != "" {
					info.Tags = append(info.Tags, t)
				}
			}
		}
	}
	return info
}

// CheckBinary checks that the binary at path is a tandem built with the
// build tag chaos, from its Go build information, without running it.
// It wraps ErrNoChaosHooks for a release build.
func CheckBinary(path string) (BinaryInfo, error) {
	info, err := InspectBinary(path)
	if err != nil {
		return info, err
	}
	if err := info.check(); err != nil {
		return info, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

// check says what makes info unusable, if anything.
func (b BinaryInfo) check() error {
	if !b.IsTandem() {
		return fmt.Errorf("a Go program, but %s rather than %s", b.Package, TandemPackage)
	}
	if !b.Chaos() {
		return ErrNoChaosHooks
	}
	return nil
}

// BinarySource says where LocateBinary found the tandem binary.
type BinarySource string

// The places LocateBinary looks, in its order.
const (
	// FromFlag is a binary given explicitly (LocateConfig.Binary).
	FromFlag BinarySource = "given"
	// FromBeside is a tandem in the directory of the running executable.
	FromBeside BinarySource = "beside"
	// FromSource is a tandem built from the source tree the working
	// directory is in.
	FromSource BinarySource = "source"
	// FromPath is a tandem found on PATH.
	FromPath BinarySource = "path"
)

// LocateConfig says where LocateBinary looks.
type LocateConfig struct {
	// Binary is a binary given explicitly (tandem-chaos -binary). If set,
	// it is the only candidate.
	Binary string
	// Executable is the running harness's path; a tandem in its directory
	// is the first candidate. Empty: os.Executable.
	Executable string
	// WorkDir is where the source-tree lookup starts: it or a parent
	// directory must hold a go.mod of module github.com/tandem-io/tandem.
	// Empty: the current directory.
	WorkDir string
	// BuildDir receives a tandem built from the source tree. Empty: a new
	// temporary directory.
	BuildDir string
	// Version is the version of Tandem the harness was built at, compared
	// with the binary's and used in the install hint. Empty: read from the
	// running program's build information ("latest" if it records none).
	Version string
	// Progress receives a line before a build, which can take a while.
	// Nil discards it.
	Progress io.Writer
	// NoBuild makes a source tree found the answer without building in
	// it: the Located has Source FromSource and an empty Path.
	NoBuild bool
}

// Located is the tandem binary LocateBinary chose, and why.
type Located struct {
	// Path is the binary's path.
	Path string
	// Source says where it was found.
	Source BinarySource
	// Why says, in words, where it was found or how it was made.
	Why string
	// Info is its build information; zero when it could not be read (a
	// binary given explicitly that is not a Go program, say a wrapper
	// script).
	Info BinaryInfo
	// PassedOver lists the files looked at before it, and why each was
	// not used; places where there was none are left out.
	PassedOver []string
	// Warnings are doubts about it: build information that could not be
	// read, or a version other than the harness's.
	Warnings []string
}

// String is the line saying which binary is used and why.
func (l Located) String() string {
	if l.Path == "" {
		return "a tandem " + l.Why
	}
	s := fmt.Sprintf("using %s (%s", l.Path, l.Why)
	if l.Info.Package != "" {
		s += fmt.Sprintf("; chaos build, version %s", l.Info.Version)
	}
	return s + ")"
}

// NoBinaryError says that LocateBinary found no usable binary: what it
// looked at, and how to install one.
type NoBinaryError struct {
	// Tried lists each candidate and why it was not used.
	Tried []string
	// Version is the version to install.
	Version string
	// Given is set when the candidate was given explicitly.
	Given bool
	// Err is the reason when there was a single candidate, given
	// explicitly (it wraps ErrNoChaosHooks for a release build).
	Err error
}

// Error says what was tried and how to install a usable tandem.
func (e *NoBinaryError) Error() string {
	var b strings.Builder
	if e.Given {
		fmt.Fprintf(&b, "the tandem binary given is not usable: %s\n", e.Tried[0])
	} else {
		b.WriteString("no usable tandem binary (a build with the build tag chaos, which has the fault-injection hooks):\n")
		for _, t := range e.Tried {
			fmt.Fprintf(&b, "  - %s\n", t)
		}
	}
	fmt.Fprintf(&b, "Install one where go install put tandem-chaos (GOBIN, or GOPATH/bin):\n  go install -tags chaos %s@%s\n", TandemPackage, e.Version)
	b.WriteString("That replaces a release tandem installed there; to keep the two apart, install tandem-chaos and its tandem into a directory of their own:\n")
	fmt.Fprintf(&b, "  GOBIN=$HOME/tandem-chaos go install -tags chaos %s@%s %s/cmd/tandem-chaos@%s\n", TandemPackage, e.Version, Module, e.Version)
	b.WriteString("Or pass -binary PATH, or run tandem-chaos from within a checkout of the source, where it builds one.")
	return b.String()
}

// Unwrap returns the reason a binary given explicitly is not usable.
func (e *NoBinaryError) Unwrap() error { return e.Err }

// LocateBinary finds the tandem binary to run: the one given
// (cfg.Binary) if any, else the first usable of a tandem beside the
// running executable; one built with `go build -tags chaos` from the
// source tree of Tandem that the working directory is in; a tandem on
// PATH. A found binary is usable if its Go build information says it is
// tandem built with the build tag chaos; one given explicitly only if it
// does not say otherwise. With none usable it returns a *NoBinaryError
// saying how to install one.
//
// The source tree comes before PATH so that, in a checkout, the code
// there is what is tested, not whatever tandem happens to be installed.
func LocateBinary(ctx context.Context, cfg LocateConfig) (Located, error) {
	return locator{inspect: InspectBinary, build: buildIn}.locate(ctx, cfg)
}

// locator is LocateBinary with its effects replaceable by tests.
type locator struct {
	inspect func(path string) (BinaryInfo, error)
	build   func(ctx context.Context, srcDir, outDir string) (string, error)
}

// locate implements LocateBinary.
func (lc locator) locate(ctx context.Context, cfg LocateConfig) (Located, error) {
	if cfg.Version == "" {
		cfg.Version = ownVersion()
	}
	if cfg.Binary != "" {
		return lc.given(cfg)
	}
	var tried, passed []string // every candidate not used; those that exist
	var seen []os.FileInfo
	// candidate checks the binary at path, found where says; ok is false
	// with the reason added to tried (and, if the file exists, to passed)
	// when it is not usable.
	candidate := func(path string, src BinarySource, where string) (Located, bool) {
		why := "found " + where
		fi, err := os.Stat(path)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s (%s): %v", path, where, errors.Unwrap(err)))
			return Located{}, false
		}
		pass := func(reason string) (Located, bool) {
			r := fmt.Sprintf("%s (%s): %s", path, where, reason)
			tried, passed = append(tried, r), append(passed, r)
			return Located{}, false
		}
		for _, s := range seen {
			if os.SameFile(fi, s) {
				return pass("the same file as above")
			}
		}
		seen = append(seen, fi)
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return pass("not an executable file")
		}
		info, err := lc.inspect(path)
		if err == nil {
			err = info.check()
		}
		if err != nil {
			if errors.Is(err, ErrNoChaosHooks) {
				err = fmt.Errorf("version %s, %w", info.Version, err)
			}
			return pass(err.Error())
		}
		return Located{Path: path, Source: src, Why: why, Info: info, PassedOver: slices.Clone(passed),
			Warnings: versionWarnings(info, cfg.Version)}, true
	}

	exe := cfg.Executable
	if exe == "" {
		if p, err := os.Executable(); err == nil {
			exe = p
		}
	}
	if exe != "" {
		if p, err := filepath.EvalSymlinks(exe); err == nil {
			exe = p
		}
		dir := filepath.Dir(exe)
		if l, ok := candidate(filepath.Join(dir, "tandem"), FromBeside, "next to "+exe); ok {
			return l, nil
		}
	} else {
		tried = append(tried, "next to tandem-chaos: its own path is unknown")
	}

	workDir := cfg.WorkDir
	if workDir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return Located{}, fmt.Errorf("chaos: locate binary: %w", err)
		}
		workDir = wd
	}
	if root, ok := sourceRoot(workDir); ok {
		why := "built with go build -tags chaos from the source tree at " + root + ", the working directory's"
		if cfg.NoBuild {
			return Located{Source: FromSource, Why: "would be " + why, PassedOver: slices.Clone(passed)}, nil
		}
		outDir := cfg.BuildDir
		if outDir == "" {
			d, err := os.MkdirTemp("", "tandem-chaos-bin-")
			if err != nil {
				return Located{}, fmt.Errorf("chaos: locate binary: %w", err)
			}
			outDir = d
		}
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "building tandem with go build -tags chaos from the source tree at %s into %s\n", root, outDir)
		}
		bin, err := lc.build(ctx, root, outDir)
		if err != nil {
			return Located{}, fmt.Errorf("chaos: locate binary: in the source tree at %s: %w", root, err)
		}
		l := Located{Path: bin, Source: FromSource, Why: why, PassedOver: slices.Clone(passed)}
		if info, err := lc.inspect(bin); err == nil {
			l.Info = info
		}
		return l, nil
	}
	r := fmt.Sprintf("source tree: %s is not within a checkout of %s", workDir, Module)
	tried, passed = append(tried, r), append(passed, r)

	if p, err := exec.LookPath("tandem"); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		if l, ok := candidate(p, FromPath, "on PATH"); ok {
			return l, nil
		}
	} else {
		tried = append(tried, fmt.Sprintf("PATH: %v", errors.Unwrap(err)))
	}
	return Located{}, &NoBinaryError{Tried: tried, Version: cfg.Version}
}

// given checks a binary given explicitly. It is refused if its build
// information says it is not a chaos build of tandem; a file without
// readable build information (a wrapper script, say) is used with a
// warning.
func (lc locator) given(cfg LocateConfig) (Located, error) {
	path := cfg.Binary
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	l := Located{Path: path, Source: FromFlag, Why: "given with -binary"}
	fi, err := os.Stat(path)
	if err == nil && (fi.IsDir() || fi.Mode()&0o111 == 0) {
		err = errors.New("not an executable file")
	}
	if err != nil {
		return Located{}, &NoBinaryError{Tried: []string{fmt.Sprintf("%s: %v", path, err)}, Version: cfg.Version, Given: true, Err: err}
	}
	info, err := lc.inspect(path)
	if err != nil {
		l.Warnings = append(l.Warnings, fmt.Sprintf("cannot read Go build information of %s, so cannot check it has the chaos hooks; using it as given", path))
		return l, nil
	}
	if err := info.check(); err != nil {
		if errors.Is(err, ErrNoChaosHooks) {
			err = fmt.Errorf("version %s, %w", info.Version, err)
		}
		return Located{}, &NoBinaryError{Tried: []string{fmt.Sprintf("%s: %v", path, err)}, Version: cfg.Version, Given: true, Err: err}
	}
	l.Info, l.Warnings = info, versionWarnings(info, cfg.Version)
	return l, nil
}

// versionWarnings warns when a binary's version is not the harness's,
// both being released versions: the fault-control endpoint they share may
// differ between versions.
func versionWarnings(info BinaryInfo, harness string) []string {
	if !released(info.Version) || !released(harness) || info.Version == harness {
		return nil
	}
	return []string{fmt.Sprintf("tandem is version %s but tandem-chaos is %s; install matching versions if faults fail to inject", info.Version, harness)}
}

// released reports whether v names a version a module proxy serves.
func released(v string) bool { return v != "" && v != "(devel)" && v != "latest" }

// ownVersion returns the version of Tandem's module the running program
// was built with, or "latest" when it records none (a build in a source
// tree, a test).
func ownVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "latest"
	}
	mod := &bi.Main
	if mod.Path != Module {
		mod = nil
		for _, d := range bi.Deps {
			if d.Path == Module {
				mod = d
				break
			}
		}
	}
	if mod == nil || !released(mod.Version) {
		return "latest"
	}
	return mod.Version
}

// sourceRoot returns the closest directory at or above dir holding the
// go.mod of Tandem's module, if any.
func sourceRoot(dir string) (string, bool) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", false
	}
	for {
		if modulePath(filepath.Join(dir, "go.mod")) == Module {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// modulePath returns the module path a go.mod file declares, or "".
func modulePath(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "//")
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
