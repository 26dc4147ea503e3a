package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"

	"haxd/ha"
)

// logMethods are the slog.Logger methods whose arguments are attributes.
var logMethods = map[string]bool{
	"Debug": true, "Info": true, "Warn": true, "Error": true, "Log": true, "LogAttrs": true,
	"DebugContext": true, "InfoContext": true, "WarnContext": true, "ErrorContext": true, "With": true,
}

// nodeKeyProblems lists, in one parsed file, the log calls that pass the
// node key (ha.KeyNode or the literal "node") twice, and the loggers
// bound to it with With: a bound node key and the node a record is about
// would give one record two node keys (the agent's own name goes under
// ha.KeyAgent).
func nodeKeyProblems(fset *token.FileSet, f *ast.File) []string {
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || !logMethods[sel.Sel.Name] {
			return true
		}
		keys := 0
		for _, arg := range call.Args {
			if isNodeKey(arg) {
				keys++
			}
		}
		pos := fset.Position(call.Pos())
		switch {
		case sel.Sel.Name == "With" && keys > 0:
			out = append(out, fmt.Sprintf("%s:%d: a logger bound to the %q key: name the agent with ha.KeyAgent", pos.Filename, pos.Line, ha.KeyNode))
		case keys > 1:
			out = append(out, fmt.Sprintf("%s:%d: %s passes the %q key %d times", pos.Filename, pos.Line, sel.Sel.Name, ha.KeyNode, keys))
		}
		return true
	})
	return out
}

// isNodeKey reports whether e is ha.KeyNode (KeyNode inside ha) or the
// string literal "node".
func isNodeKey(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.BasicLit:
		s, err := strconv.Unquote(e.Value)
		return e.Kind == token.STRING && err == nil && s == ha.KeyNode
	case *ast.SelectorExpr:
		x, ok := e.X.(*ast.Ident)
		return ok && x.Name == "ha" && e.Sel.Name == "KeyNode"
	case *ast.Ident:
		return e.Name == "KeyNode"
	}
	return false
}

// No log record of haxd carries two node keys (issue 12 point 8).
func TestNoLogRecordHasTwoNodeKeys(t *testing.T) {
	err := forEachGoFile(".", func(fset *token.FileSet, _ string, f *ast.File) {
		for _, p := range nodeKeyProblems(fset, f) {
			t.Error(p)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNodeKeyProblems(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want string // "" for none
	}{
		{`log.Info("x", ha.KeyNode, a, "sid", s)`, ""},
		{`log.Info("x", ha.KeyNode, a, ha.KeyNode, b)`, "passes the \"node\" key 2 times"},
		{`log.Warn("x", "node", a, ha.KeyNode, b)`, "passes the \"node\" key 2 times"},
		{`l := log.With(ha.KeyNode, name); _ = l`, "bound to the \"node\" key"},
		{`l := log.With(ha.KeyAgent, name); _ = l`, ""},
		{`BadRequest("node", a, "node")`, ""},
	} {
		src := "package p\nfunc f() {\n" + tc.src + "\n}\n"
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, "x.go", src, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(nodeKeyProblems(fset, f), "; ")
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("nodeKeyProblems(%s) = %q, want %q", tc.src, got, tc.want)
		}
	}
}
