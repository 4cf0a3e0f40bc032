package httpapi_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The HTTP API is built on the embedding API alone, as an app's handler
// would be: of Tandem's packages it imports only the root package, never
// the engine (replica, replica/peer) or membership (cluster, ring).
func TestImportsOnlyTheRootPackage(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	const module = "github.com/tandem-io/tandem"
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, module+"/") {
				t.Errorf("%s imports %s: the HTTP API uses only %s", name, path, module)
			}
		}
	}
}
