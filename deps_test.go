package main

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// layer says what one package may depend on: the haxd packages of its
// whole import graph (`go list -deps`, production files only; tests may
// import anything), and whether any third-party module.
type layer struct {
	deps    []string // haxd packages, without the "haxd/" prefix
	modules bool     // third-party modules allowed
	core    bool     // deterministic core: the extra rules of TestCoreHasNoOutsideDependencies
}

// layers is the dependency rule of every package. The rules it encodes,
// checked on the table itself by TestLayerTableKeepsTheRules:
//
//   - The deterministic core (ha, crm, crm/placement, lrm) reaches the
//     world only through ha.Env, and sim runs the core alone: sim never
//     depends on an adapter.
//   - Adapters (api, fence, fencedev, gossip, pki, store, resource/...)
//     never depend on crm, lrm, agent or sim: they serve the agent, which
//     wires them to the core.
//   - fence, the guard that kills services, depends on nothing of haxd
//     but the two helpers every package may use (clock, unixsock), which
//     themselves import nothing of haxd: the guard's correctness can be
//     read in fence alone. `haxd guard` hands it the agent's timing.
//   - internal/... is for tests, benchmarks (internal/benchfailover,
//     internal/faultlab) and the demo: no production package depends on
//     it, and in package main only the demo command's files (democmd*.go)
//     import it (TestOnlyTheDemoImportsInternal).
//   - agent wires everything but sim and internal; main (the commands)
//     may use everything.
var layers = map[string]layer{
	// Helpers every package may use; they import nothing of haxd.
	"clock":    {modules: true}, // golang.org/x/sys for CLOCK_MONOTONIC
	"unixsock": {},
	"logdedup": {},
	// The deterministic core.
	"ha":            {core: true},
	"crm/placement": {deps: []string{"ha"}, core: true},
	"crm":           {deps: []string{"ha", "crm/placement"}, core: true},
	"lrm":           {deps: []string{"ha"}, core: true},
	"sim":           {deps: []string{"ha", "crm", "crm/placement", "lrm"}},
	// Adapters.
	"api":              {deps: []string{"ha", "pki", "unixsock"}},
	"fence":            {deps: []string{"clock", "unixsock"}, modules: true},
	"fencedev":         {deps: []string{"clock", "ha"}, modules: true}, // clock brings golang.org/x/sys
	"gossip":           {deps: []string{"ha", "logdedup"}, modules: true},
	"pki":              {deps: []string{"ha"}},
	"store":            {deps: []string{"clock", "ha", "logdedup", "pki"}, modules: true},
	"resource":         {deps: []string{"ha"}},
	"resource/exec":    {deps: []string{"ha", "resource"}},
	"resource/ocf":     {deps: []string{"ha", "resource", "resource/exec"}},
	"resource/systemd": {deps: []string{"ha", "resource"}, modules: true},
	// The agent wires the adapters to the core.
	"agent": {deps: []string{"ha", "crm", "crm/placement", "lrm", "api", "clock", "unixsock", "logdedup", "fence", "fencedev",
		"gossip", "pki", "store", "resource", "resource/exec", "resource/ocf", "resource/systemd"}, modules: true},
	// The commands: everything (internal only from the demo's files).
	"": {deps: []string{"ha", "crm", "crm/placement", "lrm", "sim", "api", "clock", "unixsock", "logdedup", "fence", "fencedev",
		"gossip", "pki", "store", "resource", "resource/exec", "resource/ocf", "resource/systemd", "agent",
		"internal/cluster", "internal/invariant"}, modules: true},
	// Test, benchmark and demo support.
	"integration":                   {}, // tests only
	"internal/invariant":            {modules: true},
	"internal/netlab":               {},
	"internal/bmcsim":               {},
	"internal/spectest":             {deps: []string{"ha"}},
	"internal/cluster":              {deps: []string{"api", "fence", "gossip", "pki", "ha", "clock", "unixsock", "logdedup", "internal/invariant"}, modules: true},
	"internal/faultlab":             {deps: []string{"api", "ha", "fence", "gossip", "pki", "clock", "unixsock", "logdedup", "internal/cluster", "internal/invariant", "internal/netlab"}, modules: true},
	"internal/benchfailover":        {deps: []string{"api", "ha", "fence", "gossip", "pki", "clock", "unixsock", "logdedup", "internal/bmcsim", "internal/cluster", "internal/invariant"}, modules: true},
	"internal/benchscale":           {deps: []string{"api", "ha", "fence", "gossip", "pki", "clock", "unixsock", "logdedup", "internal/cluster", "internal/invariant"}, modules: true},
	"internal/benchscale/heartbeat": {deps: []string{"internal/invariant"}, modules: true},
	"internal/idlecost":             {deps: []string{"api", "ha", "fence", "gossip", "pki", "clock", "unixsock", "logdedup", "internal/cluster", "internal/invariant"}, modules: true},
}

// listedPackage is what `go list -deps` says of one package.
type listedPackage struct {
	haxd    []string // haxd dependencies, transitive, without the prefix
	modules []string // third-party packages, transitive
}

// goListDeps returns every package of the module (without the "haxd/"
// prefix; "" for main) with its dependencies, from one `go list`.
func goListDeps(t *testing.T) map[string]listedPackage {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}|{{join .Deps " "}}`, "./...").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string]listedPackage{}
	for line := range strings.Lines(strings.TrimSpace(string(out))) {
		path, deps, _ := strings.Cut(strings.TrimSpace(line), "|")
		var p listedPackage
		for _, d := range strings.Fields(deps) {
			switch first, _, _ := strings.Cut(d, "/"); {
			case first == "haxd":
				p.haxd = append(p.haxd, strings.TrimPrefix(d, "haxd/"))
			case strings.Contains(first, "."):
				p.modules = append(p.modules, d)
			}
		}
		pkgs[strings.TrimPrefix(strings.TrimPrefix(path, "haxd"), "/")] = p
	}
	return pkgs
}

func TestEveryPackageKeepsItsLayer(t *testing.T) {
	pkgs := goListDeps(t)
	for _, name := range slices.Sorted(maps.Keys(pkgs)) {
		p, show := pkgs[name], name
		if show == "" {
			show = "main"
		}
		l, ok := layers[name]
		if !ok {
			t.Errorf("package %s has no entry in deps_test.go's layers table: say what it may depend on", show)
			continue
		}
		for _, d := range p.haxd {
			if !slices.Contains(l.deps, d) {
				t.Errorf("package %s depends on haxd/%s: its layer allows only %v", show, d, l.deps)
			}
		}
		if !l.modules && len(p.modules) > 0 {
			t.Errorf("package %s depends on the third-party %v: its layer allows the standard library only", show, p.modules)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(layers)) {
		if _, ok := pkgs[name]; !ok {
			t.Errorf("the layers table names %q, which is no package (any more): remove it", name)
		}
	}
}

// The table itself keeps the rules stated above it.
func TestLayerTableKeepsTheRules(t *testing.T) {
	adapters := []string{"api", "fence", "fencedev", "gossip", "pki", "store", "resource", "resource/exec", "resource/ocf", "resource/systemd"}
	helpers := []string{"clock", "unixsock", "logdedup"}
	for _, a := range adapters {
		for _, d := range []string{"crm", "crm/placement", "lrm", "agent", "sim"} {
			if slices.Contains(layers[a].deps, d) {
				t.Errorf("adapter %s may depend on %s", a, d)
			}
		}
		if slices.Contains(layers["sim"].deps, a) {
			t.Errorf("sim may depend on the adapter %s", a)
		}
	}
	for _, d := range layers["fence"].deps {
		if !slices.Contains(helpers, d) {
			t.Errorf("fence may depend on %s: only on the helpers %v", d, helpers)
		}
	}
	for _, h := range helpers {
		if len(layers[h].deps) > 0 {
			t.Errorf("helper %s may depend on %v: helpers import nothing of haxd", h, layers[h].deps)
		}
	}
	for name, l := range layers {
		if strings.HasPrefix(name, "internal/") || name == "" || name == "integration" {
			continue
		}
		for _, d := range l.deps {
			if strings.HasPrefix(d, "internal/") {
				t.Errorf("production package %s may depend on %s", name, d)
			}
		}
	}
}

// In package main, only the demo command imports internal/...
func TestOnlyTheDemoImportsInternal(t *testing.T) {
	for name, f := range parseDir(t, ".") {
		if strings.HasPrefix(filepath.Base(name), "democmd") {
			continue
		}
		for _, imp := range f.Imports {
			if path, _ := strconv.Unquote(imp.Path.Value); strings.HasPrefix(path, "haxd/internal/") {
				t.Errorf("%s imports %s: internal/... is for tests, benchmarks and the demo (democmd*.go)", name, path)
			}
		}
	}
}

var forbiddenStd = []string{"os", "os/exec", "os/signal", "net", "net/http", "syscall", "math/rand", "math/rand/v2", "crypto/rand", "unsafe", "runtime"}

var forbiddenCalls = []string{"time.Now", "time.Since", "time.Until", "time.Sleep", "time.After", "time.Tick", "time.NewTimer", "time.NewTicker", "time.AfterFunc"}

// The deterministic core (ha, crm, crm/placement, lrm) must not reach the
// outside world: no OS, network, wall clock, goroutines or unseeded
// randomness. Everything goes through ha.Env so that the simulator replays
// the same code deterministically. Its haxd imports and third-party
// modules are checked with the other layers.
func TestCoreHasNoOutsideDependencies(t *testing.T) {
	for _, dir := range slices.Sorted(maps.Keys(layers)) {
		if !layers[dir].core {
			continue
		}
		files := parseDir(t, dir)
		if len(files) == 0 {
			t.Errorf("core package %s has no files", dir)
		}
		for name, f := range files {
			for _, v := range coreViolations(f) {
				t.Errorf("%s: %s", name, v)
			}
		}
	}
}

// coreViolations lists what in f the core forbids. Calls are matched by
// the imported package, so a renamed import (`import t "time"`) is caught
// as well; a dot import of time is refused outright.
func coreViolations(f *ast.File) []string {
	var out []string
	local := map[string]string{} // local name -> import path
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		if slices.Contains(forbiddenStd, path) {
			out = append(out, fmt.Sprintf("imports %q: the core must reach the world only through ha.Env", path))
		}
		name := path[strings.LastIndex(path, "/")+1:]
		if imp.Name != nil {
			name = imp.Name.Name
		}
		if name == "." && path == "time" {
			out = append(out, `dot-imports "time": time comes from ha.Env`)
		}
		local[name] = path
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.GoStmt:
			out = append(out, "go statement: the core runs no goroutines")
		case *ast.SelectorExpr:
			// An identifier that resolves to a local object (a variable
			// named time) is not the package.
			if id, ok := n.X.(*ast.Ident); ok && id.Obj == nil {
				if path, ok := local[id.Name]; ok && slices.Contains(forbiddenCalls, path+"."+n.Sel.Name) {
					out = append(out, fmt.Sprintf("uses %s.%s (%s.%s): time comes from ha.Env", id.Name, n.Sel.Name, path, n.Sel.Name))
				}
			}
		}
		return true
	})
	return out
}

func TestCoreViolationsCatchesRenamedImports(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want string // "" for none
	}{
		{"package p\nimport \"time\"\nvar _ = time.Now()\n", "uses time.Now"},
		{"package p\nimport tm \"time\"\nvar _ = tm.Now()\n", "uses tm.Now (time.Now)"},
		{"package p\nimport . \"time\"\nvar _ = Now()\n", `dot-imports "time"`},
		{"package p\nimport \"time\"\nvar _ = time.Duration(1)\n", ""},
		{"package p\nimport \"time\"\nfunc f(time struct{ Now int }) int { return time.Now }\n", ""},
		{"package p\nfunc f() { go f() }\n", "go statement"},
		{"package p\nimport \"os\"\nvar _ = os.Args\n", `imports "os"`},
	} {
		f, err := parser.ParseFile(token.NewFileSet(), "x.go", tc.src, 0)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(coreViolations(f), "; ")
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("coreViolations(%q) = %q, want %q", tc.src, got, tc.want)
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
