package tandem

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// modulePath is Tandem's module, looked up in the build information of
// the program that embeds it.
const modulePath = "github.com/tandem-io/tandem"

// BuildInfo names the build of Tandem a program runs, as the Go toolchain
// recorded it in the binary (runtime/debug.ReadBuildInfo).
type BuildInfo struct {
	// Version is Tandem's module version: the tag or pseudo-version the
	// binary was built at, "devel" when the build did not record one (go
	// run, go test, a build outside version control).
	Version string `json:"version"`
	// GoVersion is the toolchain that built the binary.
	GoVersion string `json:"go_version"`
	// Commit is the version-control revision the binary was built from,
	// with "-dirty" if the work tree had changes, "unknown" when not
	// recorded (Tandem built as a dependency of another module, go test).
	Commit string `json:"commit"`
}

// Build returns the build of Tandem running. tandem version prints it and
// httpapi exports it as tandem_build_info.
func Build() BuildInfo { return build() }

// build reads the build information once.
var build = sync.OnceValue(func() BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return BuildInfo{Version: "devel", GoVersion: runtime.Version(), Commit: "unknown"}
	}
	return buildInfoOf(bi)
})

// buildInfoOf finds Tandem's version and commit in a binary's build
// information: the main module's when Tandem is the main module (its own
// commands), else the dependency's.
func buildInfoOf(bi *debug.BuildInfo) BuildInfo {
	out := BuildInfo{Version: "devel", GoVersion: bi.GoVersion, Commit: "unknown"}
	if out.GoVersion == "" {
		out.GoVersion = runtime.Version()
	}
	mod := &bi.Main
	if mod.Path != modulePath {
		mod = nil
		for _, d := range bi.Deps {
			if d.Path == modulePath {
				mod = d
				if d.Replace != nil && d.Replace.Version != "" {
					mod = d.Replace
				}
				break
			}
		}
	}
	if mod != nil && mod.Version != "" && mod.Version != "(devel)" {
		out.Version = mod.Version
	}
	if bi.Main.Path != modulePath {
		return out // the settings describe the embedding program's build
	}
	var revision, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			revision = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if revision != "" {
		out.Commit = revision
		if modified == "true" {
			out.Commit += "-dirty"
		}
	}
	return out
}
