package fencedev

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fencedev stays a leaf: of haxd it imports only package ha, and no
// third-party module.
func TestImportsOnlyHAAndTheStandardLibrary(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			switch {
			case path == "haxd/ha":
			case first == "haxd":
				t.Errorf("%s imports %q: fencedev may import only haxd/ha", f, path)
			case strings.Contains(first, "."):
				t.Errorf("%s imports the module %q: fencedev uses the standard library only", f, path)
			}
		}
	}
}
