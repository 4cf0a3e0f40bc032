// Command modproxy writes a file-based Go module proxy (the layout GOPROXY
// serves, read with GOPROXY=file://DIR) holding one module: the module in
// the -src directory, under the version -version. CI uses it to build the
// contrib modules the way an outside user does, against the root module by
// version, when no public proxy has that version:
//
//	go run . -src ../.. -version v0.1.0 -out /tmp/proxy
//
// It writes DIR/<module>/@v/list, VERSION.info, VERSION.mod and VERSION.zip.
// The zip is made by golang.org/x/mod/zip from the directory as it is on
// disk (uncommitted changes included), leaving out what the go command leaves
// out of a module zip: nested modules (contrib/*), vendor directories and
// version-control metadata.
//
// It is a module of its own so that golang.org/x/mod is a dependency of this
// CI tool only, not of the Tandem module users fetch.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/zip"
)

func main() {
	src := flag.String("src", ".", "directory of the module to serve (holds its go.mod)")
	version := flag.String("version", "v0.1.0", "version to serve the module under")
	out := flag.String("out", "", "directory to write the proxy into (required)")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "modproxy: -out is required")
		os.Exit(2)
	}
	if err := run(*src, *version, *out); err != nil {
		fmt.Fprintln(os.Stderr, "modproxy:", err)
		os.Exit(1)
	}
}

func run(src, version, out string) error {
	gomod, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		return err
	}
	path := modfile.ModulePath(gomod)
	if path == "" {
		return fmt.Errorf("%s/go.mod names no module", src)
	}
	mv := module.Version{Path: path, Version: version}
	if err := module.Check(path, version); err != nil {
		return err
	}
	esc, err := module.EscapePath(path)
	if err != nil {
		return err
	}
	escVer, err := module.EscapeVersion(version)
	if err != nil {
		return err
	}
	dir := filepath.Join(out, filepath.FromSlash(esc), "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base := filepath.Join(dir, escVer)

	f, err := os.Create(base + ".zip")
	if err != nil {
		return err
	}
	if err := zip.CreateFromDir(f, mv, src); err != nil {
		f.Close()
		return fmt.Errorf("zip %s: %w", src, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(base+".mod", gomod, 0o644); err != nil {
		return err
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{version, time.Now().UTC().Truncate(time.Second)})
	if err != nil {
		return err
	}
	if err := os.WriteFile(base+".info", info, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "list"), []byte(version+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Printf("%s@%s served from file://%s\n", path, version, out)
	return nil
}
