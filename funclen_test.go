package main

import (
	"fmt"
	"go/ast"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// maxFuncLines is the project's bound on one function outside tests,
// counted from the line of `func` to the line of the closing brace.
const maxFuncLines = 100

// longFuncAllowed lists the functions over maxFuncLines the test accepts,
// as "path/file.go:Recv.Name" (or "path/file.go:Name"), each with why.
// Remove an entry when its function is split; a stale entry fails the test.
var longFuncAllowed = map[string]string{}

// longFuncs returns every function declared in a non-test Go file below
// root that spans more than max lines: keyed "file:Recv.Name", valued
// with its position and length. Directories starting with "." or named
// testdata are skipped.
func longFuncs(root string, max int) (map[string]string, error) {
	out := map[string]string{}
	err := forEachGoFile(root, func(fset *token.FileSet, rel string, f *ast.File) {
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			start, end := fset.Position(fd.Pos()).Line, fset.Position(fd.End()).Line
			if n := end - start + 1; n > max {
				out[rel+":"+funcName(fd)] = fmt.Sprintf("%s:%d: %s is %d lines (max %d)", rel, start, funcName(fd), n, max)
			}
		}
	})
	return out, err
}

// funcName is Name, or Recv.Name for a method (pointer and type
// parameters dropped).
func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	t := fd.Recv.List[0].Type
	if s, ok := t.(*ast.StarExpr); ok {
		t = s.X
	}
	switch x := t.(type) {
	case *ast.IndexExpr:
		t = x.X
	case *ast.IndexListExpr:
		t = x.X
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name + "." + fd.Name.Name
	}
	return fd.Name.Name
}

// No function over 100 lines outside tests (the project's standard), but
// the commented entries of longFuncAllowed.
func TestNoFunctionOver100Lines(t *testing.T) {
	long, err := longFuncs(".", maxFuncLines)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range slices.Sorted(maps.Keys(long)) {
		if _, ok := longFuncAllowed[k]; !ok {
			t.Errorf("%s: split it into named steps", long[k])
		}
	}
	for k := range longFuncAllowed {
		if _, ok := long[k]; !ok {
			t.Errorf("longFuncAllowed names %s, which is no longer over %d lines (or gone): remove the entry", k, maxFuncLines)
		}
	}
}

// longFuncs counts a function from `func` to its closing brace and names
// methods by their receiver type.
func TestLongFuncsCounts(t *testing.T) {
	dir := t.TempDir()
	body := func(n int) string { return strings.Repeat("\tx++\n", n) }
	src := "package p\n\nvar x int\n\n" +
		"func short() {\n" + body(98) + "}\n\n" + // 100 lines
		"func long() {\n" + body(99) + "}\n\n" + // 101 lines
		"type T[E any] struct{}\n\n" +
		"func (t *T[E]) m() {\n" + body(150) + "}\n"
	if err := os.WriteFile(filepath.Join(dir, "p.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "p_test.go"), []byte("package p\n\nfunc inTest() {\n"+body(200)+"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := longFuncs(dir, maxFuncLines)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"p.go:T.m", "p.go:long"}
	keys := slices.Sorted(maps.Keys(got))
	if !slices.Equal(keys, want) {
		t.Errorf("longFuncs = %v, want %v", keys, want)
	}
	if !strings.Contains(got["p.go:long"], "101 lines") {
		t.Errorf("long: %q, want 101 lines", got["p.go:long"])
	}
}
