package chaos

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

// The lookup tests run on fake executables: shell scripts whose second
// line says what the fake inspector reports, "# fake-tandem chaos v1.2.3"
// or "# fake-tandem release v1.2.3"; any other file reads as no Go
// program. Nothing is built or run.

// fakeExe writes an executable fake tandem of the given kind ("chaos",
// "release" or "" for no Go build information) to dir/name.
func fakeExe(t *testing.T, dir, name, kind, version string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	body := "#!/bin/sh\nexit 0\n"
	if kind != "" {
		body = "#!/bin/sh\n# fake-tandem " + kind + " " + version + "\nexit 0\n"
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeInspect reads what fakeExe wrote.
func fakeInspect(path string) (BinaryInfo, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return BinaryInfo{}, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[1] == "fake-tandem" {
			info := BinaryInfo{Package: TandemPackage, Version: f[3]}
			if f[2] == "chaos" {
				info.Tags = []string{"chaos"}
			}
			return info, nil
		}
	}
	return BinaryInfo{}, errors.New("not a Go executable")
}

// fakeLookup is a temporary layout to look in: a directory holding the
// harness's executable, one on PATH, a checkout of the source and a
// directory outside any checkout, and a locator that records builds.
type fakeLookup struct {
	exeDir, pathDir, checkout, outside string
	built                              []string // the source directories built in
	lc                                 locator
}

func newFakeLookup(t *testing.T) *fakeLookup {
	t.Helper()
	root := t.TempDir()
	f := &fakeLookup{
		exeDir:   filepath.Join(root, "gobin"),
		pathDir:  filepath.Join(root, "usr-bin"),
		checkout: filepath.Join(root, "src", "tandem"),
		outside:  filepath.Join(root, "elsewhere"),
	}
	for _, d := range []string{f.exeDir, f.pathDir, filepath.Join(f.checkout, "cmd", "tandem-chaos"), f.outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.checkout, "go.mod"), []byte("module "+Module+" // the root\n\ngo 1.25.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fakeExe(t, f.exeDir, "tandem-chaos", "", "")
	t.Setenv("PATH", f.pathDir)
	f.lc = locator{inspect: fakeInspect, build: func(_ context.Context, src, out string) (string, error) {
		f.built = append(f.built, src)
		return fakeExe(t, out, "tandem", "chaos", "(devel)"), nil
	}}
	return f
}

// config is a LocateConfig for the layout, run from workDir.
func (f *fakeLookup) config(t *testing.T, workDir string) LocateConfig {
	return LocateConfig{Executable: filepath.Join(f.exeDir, "tandem-chaos"), WorkDir: workDir, BuildDir: t.TempDir(), Version: "v1.2.3"}
}

func (f *fakeLookup) locate(t *testing.T, cfg LocateConfig) (Located, error) {
	t.Helper()
	return f.lc.locate(context.Background(), cfg)
}

func TestLocateGivenBinaryComesFirst(t *testing.T) {
	f := newFakeLookup(t)
	fakeExe(t, f.exeDir, "tandem", "chaos", "v1.2.3")
	fakeExe(t, f.pathDir, "tandem", "chaos", "v1.2.3")
	cfg := f.config(t, f.checkout)
	cfg.Binary = fakeExe(t, t.TempDir(), "my-tandem", "chaos", "v1.2.3")
	l, err := f.locate(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if l.Source != FromFlag || l.Path != cfg.Binary || len(f.built) != 0 {
		t.Fatalf("got %+v (built %v), want the given binary", l, f.built)
	}
	if !strings.Contains(l.String(), "using "+cfg.Binary+" (given with -binary") {
		t.Errorf("line %q", l)
	}
}

// A binary given explicitly is the only candidate: if it is unusable the
// lookup fails rather than falling back to another.
func TestLocateGivenBinaryIsNeverReplaced(t *testing.T) {
	f := newFakeLookup(t)
	fakeExe(t, f.exeDir, "tandem", "chaos", "v1.2.3")
	cfg := f.config(t, f.checkout)

	cfg.Binary = fakeExe(t, t.TempDir(), "tandem", "release", "v1.2.3")
	_, err := f.locate(t, cfg)
	var nb *NoBinaryError
	if !errors.As(err, &nb) || !nb.Given || !errors.Is(err, ErrNoChaosHooks) {
		t.Fatalf("a release build given: %v, want a NoBinaryError wrapping ErrNoChaosHooks", err)
	}
	for _, want := range []string{cfg.Binary, "without the build tag chaos", "go install -tags chaos " + TandemPackage + "@v1.2.3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}

	cfg.Binary = filepath.Join(t.TempDir(), "missing")
	if _, err := f.locate(t, cfg); !errors.As(err, &nb) || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("a missing binary given: %v", err)
	}
	if len(f.built) != 0 {
		t.Fatalf("built in %v", f.built)
	}
}

// A binary given whose build information cannot be read (a wrapper
// script, say) is used as given, with a warning.
func TestLocateGivenScriptIsUsedWithAWarning(t *testing.T) {
	f := newFakeLookup(t)
	cfg := f.config(t, f.outside)
	cfg.Binary = fakeExe(t, t.TempDir(), "wrapper.sh", "", "")
	l, err := f.locate(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if l.Path != cfg.Binary || len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "cannot check") {
		t.Fatalf("got %+v", l)
	}
}

func TestLocateBesideComesBeforeSourceTreeAndPath(t *testing.T) {
	f := newFakeLookup(t)
	beside := fakeExe(t, f.exeDir, "tandem", "chaos", "v1.2.3")
	fakeExe(t, f.pathDir, "tandem", "chaos", "v1.2.3")
	l, err := f.locate(t, f.config(t, f.checkout))
	if err != nil {
		t.Fatal(err)
	}
	if l.Source != FromBeside || l.Path != beside || len(f.built) != 0 || len(l.PassedOver) != 0 || len(l.Warnings) != 0 {
		t.Fatalf("got %+v (built %v), want %s", l, f.built, beside)
	}
	want := "using " + beside + " (found next to " + filepath.Join(f.exeDir, "tandem-chaos") + "; chaos build, version v1.2.3)"
	if l.String() != want {
		t.Errorf("line\n%q, want\n%q", l, want)
	}
}

// Within a checkout the source tree comes before PATH, so the code there
// is what is tested; a release build beside the harness is passed over,
// and said so.
func TestLocateSourceTreeComesBeforePath(t *testing.T) {
	f := newFakeLookup(t)
	fakeExe(t, f.exeDir, "tandem", "release", "v1.2.3")
	fakeExe(t, f.pathDir, "tandem", "chaos", "v1.2.3")
	var progress strings.Builder
	cfg := f.config(t, filepath.Join(f.checkout, "cmd", "tandem-chaos"))
	cfg.Progress = &progress
	l, err := f.locate(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if l.Source != FromSource || len(f.built) != 1 || f.built[0] != f.checkout || l.Path != filepath.Join(cfg.BuildDir, "tandem") {
		t.Fatalf("got %+v, built in %v; want a build in %s", l, f.built, f.checkout)
	}
	if len(l.PassedOver) != 1 || !strings.Contains(l.PassedOver[0], "without the build tag chaos") {
		t.Errorf("passed over %q, want the release build beside", l.PassedOver)
	}
	if !strings.Contains(progress.String(), "building tandem with go build -tags chaos from the source tree at "+f.checkout) {
		t.Errorf("progress %q", progress.String())
	}
	if !strings.Contains(l.String(), "built with go build -tags chaos from the source tree at "+f.checkout) {
		t.Errorf("line %q", l)
	}

	cfg.NoBuild = true
	l, err = f.locate(t, cfg)
	if err != nil || l.Source != FromSource || l.Path != "" || len(f.built) != 1 {
		t.Fatalf("NoBuild: %+v, %v, built %v", l, err, f.built)
	}
}

func TestLocatePathOutsideTheSourceTree(t *testing.T) {
	f := newFakeLookup(t)
	onPath := fakeExe(t, f.pathDir, "tandem", "chaos", "v1.2.4")
	l, err := f.locate(t, f.config(t, f.outside))
	if err != nil {
		t.Fatal(err)
	}
	if l.Source != FromPath || l.Path != onPath || len(f.built) != 0 {
		t.Fatalf("got %+v (built %v), want %s", l, f.built, onPath)
	}
	// Nothing beside the harness is not worth a line; no checkout is.
	if len(l.PassedOver) != 1 || !strings.Contains(l.PassedOver[0], "not within a checkout") {
		t.Errorf("passed over %q", l.PassedOver)
	}
	if len(l.Warnings) != 1 || !strings.Contains(l.Warnings[0], "v1.2.4 but tandem-chaos is v1.2.3") {
		t.Errorf("warnings %q, want one on the versions", l.Warnings)
	}
}

func TestLocateNothingUsableSaysHowToInstall(t *testing.T) {
	f := newFakeLookup(t)
	fakeExe(t, f.exeDir, "tandem", "release", "v1.2.3")
	fakeExe(t, f.pathDir, "tandem", "", "")
	_, err := f.locate(t, f.config(t, f.outside))
	var nb *NoBinaryError
	if !errors.As(err, &nb) || nb.Given {
		t.Fatalf("got %v, want a NoBinaryError", err)
	}
	if len(nb.Tried) != 3 {
		t.Errorf("tried %q, want beside, source tree, PATH", nb.Tried)
	}
	for _, want := range []string{
		filepath.Join(f.exeDir, "tandem") + " (next to", "version v1.2.3, built without the build tag chaos",
		"not within a checkout of " + Module,
		filepath.Join(f.pathDir, "tandem") + " (on PATH): ", "not a Go executable",
		"go install -tags chaos " + TandemPackage + "@v1.2.3",
		"GOBIN=", Module + "/cmd/tandem-chaos@v1.2.3",
		"-binary",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if len(f.built) != 0 {
		t.Errorf("built outside a checkout: %v", f.built)
	}
}

// The same file found beside the harness and on PATH is looked at once.
func TestLocateSameFileBesideAndOnPath(t *testing.T) {
	f := newFakeLookup(t)
	fakeExe(t, f.exeDir, "tandem", "release", "v1.2.3")
	t.Setenv("PATH", f.exeDir)
	_, err := f.locate(t, f.config(t, f.outside))
	var nb *NoBinaryError
	if !errors.As(err, &nb) || len(nb.Tried) != 3 || !strings.Contains(nb.Tried[2], "the same file as above") {
		t.Fatalf("got %v", err)
	}
}

func TestSourceRoot(t *testing.T) {
	root := t.TempDir()
	write := func(dir, gomod string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	checkout := filepath.Join(root, "tandem")
	write(checkout, "// Tandem\nmodule \""+Module+"\"\n\ngo 1.25.0\n")
	write(filepath.Join(checkout, "contrib", "scs"), "module "+Module+"/contrib/scs\n")
	write(filepath.Join(root, "other"), "module example.com/other\n")
	write(filepath.Join(root, "prefix"), "module "+Module+"x\n")
	for _, c := range []struct {
		dir, want string
	}{
		{checkout, checkout},
		{filepath.Join(checkout, "contrib", "scs"), checkout},
		{filepath.Join(checkout, "no", "such", "dir"), checkout},
		{filepath.Join(root, "other"), ""},
		{filepath.Join(root, "prefix"), ""},
		{root, ""},
	} {
		got, ok := sourceRoot(c.dir)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("sourceRoot(%s) = %q, %v; want %q", c.dir, got, ok, c.want)
		}
	}
}

func TestBinaryInfoFromBuildInformation(t *testing.T) {
	bi := &debug.BuildInfo{Path: TandemPackage, Main: debug.Module{Path: Module, Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "-compiler", Value: "gc"}, {Key: "-tags", Value: "netgo,chaos"}}}
	info := infoOf(bi)
	if !info.Chaos() || !info.IsTandem() || info.Version != "v1.2.3" || info.check() != nil {
		t.Fatalf("chaos build: %+v, %v", info, info.check())
	}
	bi.Settings = bi.Settings[:1]
	if info := infoOf(bi); info.Chaos() || !errors.Is(info.check(), ErrNoChaosHooks) {
		t.Fatalf("release build: %+v, %v", info, info.check())
	}
	bi.Path = Module + "/cmd/tandem-load"
	bi.Settings = []debug.BuildSetting{{Key: "-tags", Value: "chaos"}}
	if err := infoOf(bi).check(); err == nil || errors.Is(err, ErrNoChaosHooks) {
		t.Fatalf("another command: %v", err)
	}
}

// InspectBinary reads a real Go binary (this test's) and refuses a file
// that is not one.
func TestInspectBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	info, err := InspectBinary(exe)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(info.Package, Module+"/chaos") || info.IsTandem() {
		t.Fatalf("test binary: %+v", info)
	}
	if _, err := CheckBinary(exe); err == nil {
		t.Fatal("the test binary passed as tandem")
	}
	if _, err := InspectBinary(fakeExe(t, t.TempDir(), "tandem", "chaos", "v1")); err == nil {
		t.Fatal("a shell script has Go build information")
	}
}

func TestVersionWarnings(t *testing.T) {
	for _, c := range []struct {
		bin, harness string
		warn         bool
	}{
		{"v1.2.3", "v1.2.3", false},
		{"v1.2.3", "v1.3.0", true},
		{"(devel)", "v1.3.0", false},
		{"v1.2.3", "latest", false},
		{"", "v1.2.3", false},
	} {
		if got := versionWarnings(BinaryInfo{Version: c.bin}, c.harness); (len(got) > 0) != c.warn {
			t.Errorf("tandem %q, harness %q: warnings %q", c.bin, c.harness, got)
		}
	}
}
