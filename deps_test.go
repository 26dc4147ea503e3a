package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The deterministic core (ha, crm, crm/placement, lrm) must not reach the
// outside world: no OS, network, wall clock, goroutines or unseeded
// randomness, and none of the adapter libraries. Everything goes through
// ha.Env so that the simulator replays the same code deterministically.
var coreImports = map[string][]string{
	"ha":            nil,
	"crm":           {"haxd/ha", "haxd/crm/placement"},
	"crm/placement": {"haxd/ha"},
	"lrm":           {"haxd/ha"},
}

var forbiddenStd = []string{"os", "os/exec", "os/signal", "net", "net/http", "syscall", "math/rand", "math/rand/v2", "crypto/rand", "unsafe", "runtime"}

var forbiddenCalls = []string{"time.Now", "time.Since", "time.Until", "time.Sleep", "time.After", "time.Tick", "time.NewTimer", "time.NewTicker", "time.AfterFunc"}

func TestCoreHasNoOutsideDependencies(t *testing.T) {
	for dir, allowed := range coreImports {
		files := parseDir(t, dir)
		if len(files) == 0 {
			t.Logf("package %s does not exist yet", dir)
			continue
		}
		for name, f := range files {
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				if slices.Contains(forbiddenStd, path) {
					t.Errorf("%s imports %q: the core must reach the world only through ha.Env", name, path)
				}
				if strings.Contains(strings.SplitN(path, "/", 2)[0], ".") {
					t.Errorf("%s imports %q: the core imports no third-party module", name, path)
				}
				if strings.HasPrefix(path, "haxd/") || path == "haxd" {
					if !slices.Contains(allowed, path) {
						t.Errorf("%s imports %q: %s may import only %v", name, path, dir, allowed)
					}
				}
			}
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.GoStmt:
					t.Errorf("%s: go statement at %v: the core runs no goroutines", name, n.Pos())
				case *ast.SelectorExpr:
					if id, ok := n.X.(*ast.Ident); ok && slices.Contains(forbiddenCalls, id.Name+"."+n.Sel.Name) {
						t.Errorf("%s uses %s.%s: time comes from ha.Env", name, id.Name, n.Sel.Name)
					}
				}
				return true
			})
		}
	}
}

// Every package has a doc comment and every exported top-level name in a
// non-test file has a doc comment.
func TestEveryExportedNameIsDocumented(t *testing.T) {
	var dirs []string
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != "." || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range dirs {
		files := parseDir(t, dir)
		if len(files) == 0 {
			continue
		}
		hasPkgDoc := false
		for _, f := range files {
			if f.Doc != nil {
				hasPkgDoc = true
			}
		}
		if !hasPkgDoc {
			t.Errorf("package in %s has no package doc comment", dir)
		}
		for name, f := range files {
			for _, decl := range f.Decls {
				switch d := decl.(type) {
				case *ast.FuncDecl:
					if d.Name.IsExported() && d.Doc == nil && (d.Recv == nil || recvExported(d.Recv)) {
						t.Errorf("%s: exported func %s has no doc comment", name, d.Name.Name)
					}
				case *ast.GenDecl:
					for _, spec := range d.Specs {
						switch s := spec.(type) {
						case *ast.TypeSpec:
							if s.Name.IsExported() && d.Doc == nil && s.Doc == nil {
								t.Errorf("%s: exported type %s has no doc comment", name, s.Name.Name)
							}
						case *ast.ValueSpec:
							for _, n := range s.Names {
								if n.IsExported() && d.Doc == nil && s.Doc == nil && s.Comment == nil {
									t.Errorf("%s: exported %s has no doc comment", name, n.Name)
								}
							}
						}
					}
				}
			}
		}
	}
}

func recvExported(fl *ast.FieldList) bool {
	if len(fl.List) == 0 {
		return false
	}
	typ := fl.List[0].Type
	if s, ok := typ.(*ast.StarExpr); ok {
		typ = s.X
	}
	if ix, ok := typ.(*ast.IndexExpr); ok {
		typ = ix.X
	}
	id, ok := typ.(*ast.Ident)
	return ok && id.IsExported()
}

// parseDir parses the non-test Go files of dir, keyed by path.
func parseDir(t *testing.T, dir string) map[string]*ast.File {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatal(err)
	}
	out := map[string]*ast.File{}
	fset := token.NewFileSet()
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		p := filepath.Join(dir, n)
		f, err := parser.ParseFile(fset, p, nil, parser.ParseComments)
		if err != nil {
			t.Fatalf("parse %s: %v", p, err)
		}
		out[p] = f
	}
	return out
}
