package tandem

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestBuildInfoFindsTandemsVersion(t *testing.T) {
	vcs := []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}}
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want BuildInfo
	}{
		{"tandem's own command, tagged", debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Path: modulePath, Version: "v1.2.3"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "false"}}},
			BuildInfo{"v1.2.3", "go1.25.1", "abc123"}},
		{"tandem's own command, dirty", debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Path: modulePath, Version: "v0.0.0-20250101000000-abc123+dirty"}, Settings: vcs},
			BuildInfo{"v0.0.0-20250101000000-abc123+dirty", "go1.25.1", "abc123-dirty"}},
		{"go run or go test", debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Path: modulePath, Version: "(devel)"}},
			BuildInfo{"devel", "go1.25.1", "unknown"}},
		{"embedded", debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Path: "example.com/app", Version: "v9.9.9"}, Settings: vcs,
			Deps: []*debug.Module{{Path: "example.com/other", Version: "v1.0.0"}, {Path: modulePath, Version: "v1.4.0"}}},
			BuildInfo{"v1.4.0", "go1.25.1", "unknown"}},
		{"embedded, replaced", debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Path: "example.com/app"},
			Deps: []*debug.Module{{Path: modulePath, Version: "v1.4.0", Replace: &debug.Module{Path: "example.com/fork", Version: "v1.4.1"}}}},
			BuildInfo{"v1.4.1", "go1.25.1", "unknown"}},
		{"embedded from a local directory", debug.BuildInfo{GoVersion: "go1.25.1", Main: debug.Module{Path: "example.com/app"},
			Deps: []*debug.Module{{Path: modulePath, Version: "v1.4.0", Replace: &debug.Module{Path: "../tandem"}}}},
			BuildInfo{"v1.4.0", "go1.25.1", "unknown"}},
		{"no go version", debug.BuildInfo{Main: debug.Module{Path: "example.com/app"}},
			BuildInfo{"devel", runtime.Version(), "unknown"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := buildInfoOf(&tc.bi); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	if b := Build(); b.Version == "" || b.GoVersion != runtime.Version() || b.Commit == "" {
		t.Fatalf("Build() = %+v", b)
	}
}
