package main

import (
	"bytes"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kong"

	"haxd/agent"
	"haxd/gossip"
	"haxd/ha"
	"haxd/resource/exec"
	"haxd/store"
)

// The operator documentation in docs/ is a reference: these tests fail when
// a config key, timing field, exec spec field or CLI command is missing
// from it, or when it shows a value the code does not have.

var updateCLIDocs = flag.Bool("update-cli-docs", false, "rewrite the help blocks of docs/cli.md from the kong command tree")

// configKeys returns every `cfg` key of agent.Config with its field.
func configKeys(t *testing.T) map[string]reflect.StructField {
	t.Helper()
	out := map[string]reflect.StructField{}
	typ := reflect.TypeFor[agent.Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if key := f.Tag.Get("cfg"); key != "" && key != "-" {
			out[key] = f
		}
	}
	if len(out) < 20 {
		t.Fatalf("found only %d config keys in agent.Config; did the cfg tag change?", len(out))
	}
	return out
}

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return string(b)
}

// tableRows returns the cells of every markdown table row whose first cell
// is a single backquoted name, keyed by that name. A name in two rows of
// one document is reported.
func tableRows(t *testing.T, doc, section string) map[string][]string {
	t.Helper()
	text := mdSection(t, doc, section)
	rows := map[string][]string{}
	for line := range strings.SplitSeq(text, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		var cells []string
		for c := range strings.SplitSeq(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.TrimSpace(c))
		}
		name := strings.Trim(cells[0], "`")
		if _, dup := rows[name]; dup {
			t.Errorf("section %q: %q has two rows", section, name)
		}
		rows[name] = cells
	}
	return rows
}

// mdSection returns the text below the heading line `heading` up to the next
// heading of the same or a higher level.
func mdSection(t *testing.T, doc, heading string) string {
	t.Helper()
	level := strings.Index(heading, " ")
	lines := strings.Split(doc, "\n")
	start := slices.Index(lines, heading)
	if start < 0 {
		t.Fatalf("heading %q not found", heading)
	}
	end := len(lines)
	for i := start + 1; i < len(lines); i++ {
		if l := headingLevel(lines[i]); l > 0 && l <= level {
			end = i
			break
		}
	}
	return strings.Join(lines[start+1:end], "\n")
}

func headingLevel(line string) int {
	n := 0
	for n < len(line) && line[n] == '#' {
		n++
	}
	if n == 0 || n >= len(line) || line[n] != ' ' {
		return 0
	}
	return n
}

// docDuration renders a duration as the docs write it: "120 s", "0.25 s",
// "1 h".
func docDuration(d time.Duration) string {
	if d >= time.Hour && d%time.Hour == 0 {
		return fmt.Sprintf("%d h", d/time.Hour)
	}
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + " s"
}

// snake turns a Go field name into its config spelling: CRMRound ->
// crm_round, LRMRestartGiveUp -> lrm_restart_give_up.
func snake(name string) string {
	var b strings.Builder
	for i, r := range name {
		upper := r >= 'A' && r <= 'Z'
		if upper && i > 0 {
			prevLower := name[i-1] >= 'a' && name[i-1] <= 'z'
			nextLower := i+1 < len(name) && name[i+1] >= 'a' && name[i+1] <= 'z'
			prevUpper := name[i-1] >= 'A' && name[i-1] <= 'Z'
			if prevLower || prevUpper && nextLower {
				b.WriteByte('_')
			}
		}
		b.WriteString(strings.ToLower(string(r)))
	}
	return b.String()
}

func TestSnakeCase(t *testing.T) {
	for in, want := range map[string]string{
		"CRMRound": "crm_round", "LRMMaintenanceRound": "lrm_maintenance_round",
		"LockTTL": "lock_ttl", "LRMRestartGiveUp": "lrm_restart_give_up", "ClockDriftMargin": "clock_drift_margin",
	} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDocsConfigReferenceListsEveryKey: docs/configuration.md has one row
// per agent config key, no row for a key that does not exist, and shows
// each fixed default as DefaultConfig has it.
func TestDocsConfigReferenceListsEveryKey(t *testing.T) {
	keys := configKeys(t)
	rows := tableRows(t, readDoc(t, "docs/configuration.md"), "## Agent keys")
	def := reflect.ValueOf(agent.DefaultConfig())
	for _, key := range slices.Sorted(maps.Keys(keys)) {
		row, ok := rows[key]
		if !ok {
			t.Errorf("docs/configuration.md: config key %q has no row under \"## Agent keys\"", key)
			continue
		}
		if len(row) != 4 {
			t.Errorf("docs/configuration.md: row %q has %d cells, want 4 (key, type, default, meaning)", key, len(row))
			continue
		}
		if key == "node_name" {
			continue // the host name
		}
		var want string
		switch v := def.FieldByIndex(keys[key].Index); v.Kind() {
		case reflect.String:
			if v.String() != "" {
				want = "`" + v.String() + "`"
			}
		case reflect.Int:
			want = strconv.Itoa(int(v.Int()))
		case reflect.Int64: // time.Duration
			want = docDuration(time.Duration(v.Int()))
		case reflect.Bool:
			want = strconv.FormatBool(v.Bool())
		case reflect.Pointer:
			if v.IsNil() {
				want = "from `timing`"
			} else if d, ok := v.Interface().(*time.Duration); ok {
				want = d.String()
			}
		}
		if want == "" {
			want = "empty"
		}
		if row[2] != want {
			t.Errorf("docs/configuration.md: default of %q is %q, the code's is %q", key, row[2], want)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(rows)) {
		if _, ok := keys[name]; !ok {
			t.Errorf("docs/configuration.md documents config key %q, which agent.Config does not have", name)
		}
	}
}

// TestDocsTimingTableMatchesTheProfiles: every ha.Timing field has a row
// with its pve and fast values, and "config key" says yes exactly for the
// fields the agent config can override.
func TestDocsTimingTableMatchesTheProfiles(t *testing.T) {
	keys := configKeys(t)
	rows := tableRows(t, readDoc(t, "docs/configuration.md"), "## Timing")
	pve, fast := reflect.ValueOf(ha.PVETiming()), reflect.ValueOf(ha.FastTiming())
	typ := reflect.TypeFor[ha.Timing]()
	seen := map[string]bool{}
	for i := range typ.NumField() {
		name := snake(typ.Field(i).Name)
		seen[name] = true
		row, ok := rows[name]
		if !ok {
			t.Errorf("docs/configuration.md: timing field %s (%s) has no row under \"## Timing\"", typ.Field(i).Name, name)
			continue
		}
		if len(row) != 5 {
			t.Errorf("docs/configuration.md: timing row %q has %d cells, want 5", name, len(row))
			continue
		}
		render := func(v reflect.Value) string {
			if d, ok := v.Interface().(time.Duration); ok {
				return docDuration(d)
			}
			return strconv.Itoa(int(v.Int()))
		}
		if want := render(pve.Field(i)); row[2] != want {
			t.Errorf("docs/configuration.md: pve %s is %q, ha.PVETiming has %q", name, row[2], want)
		}
		if want := render(fast.Field(i)); row[3] != want {
			t.Errorf("docs/configuration.md: fast %s is %q, ha.FastTiming has %q", name, row[3], want)
		}
		_, overridable := keys[name]
		if want := map[bool]string{true: "yes", false: "no"}[overridable]; row[1] != want {
			t.Errorf("docs/configuration.md: timing %s: config key column says %q, want %q", name, row[1], want)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(rows)) {
		if !seen[name] {
			t.Errorf("docs/configuration.md documents timing %q, which ha.Timing does not have", name)
		}
	}
}

// TestDocsSafetyTableMatchesTheProfiles: the table of docs/safety.md shows
// the profiles' values and sums, and each profile satisfies the inequality.
func TestDocsSafetyTableMatchesTheProfiles(t *testing.T) {
	rows := tableRows(t, readDoc(t, "docs/safety.md"), "## The argument")
	for name, tm := range map[string]ha.Timing{"pve": ha.PVETiming(), "fast": ha.FastTiming()} {
		row, ok := rows[name]
		if !ok {
			t.Errorf("docs/safety.md: no row for profile %q", name)
			continue
		}
		sum := tm.LockValidity + tm.SelfFenceTime + tm.WatchdogTimeout + tm.ClockDriftMargin
		want := []string{"`" + name + "`", docDuration(tm.LockValidity), docDuration(tm.SelfFenceTime),
			docDuration(tm.WatchdogTimeout), docDuration(tm.ClockDriftMargin), docDuration(sum), docDuration(tm.LockTTL)}
		if !slices.Equal(row, want) {
			t.Errorf("docs/safety.md: row %q is %q, want %q", name, row, want)
		}
		if sum >= tm.LockTTL {
			t.Errorf("profile %s breaks the safety inequality: %v >= %v", name, sum, tm.LockTTL)
		}
	}
}

// TestDocsExecSpecFields: every exec spec field has a row, and no row names
// a field the spec does not have.
func TestDocsExecSpecFields(t *testing.T) {
	rows := tableRows(t, readDoc(t, "docs/configuration.md"), "## Exec resources")
	typ := reflect.TypeFor[exec.Spec]()
	fields := map[string]bool{}
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		fields[name] = true
		if _, ok := rows[name]; !ok {
			t.Errorf("docs/configuration.md: exec spec field %q has no row under \"## Exec resources\"", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(rows)) {
		if !fields[name] {
			t.Errorf("docs/configuration.md documents exec spec field %q, which exec.Spec does not have", name)
		}
	}
}

// commentedKey matches an example line such as "# lock_ttl = 3s".
var commentedKey = regexp.MustCompile(`^# ([a-z_]+) = (.*)$`)

// TestDocsExampleConfig: docs/haxd.conf.example parses, mentions every key
// (set, or commented out with a value), its commented-out values are the
// defaults (timings: the fast profile's) unless the default is empty, and
// with a real key in place of the placeholder the agent accepts it without
// a timing warning.
func TestDocsExampleConfig(t *testing.T) {
	const path = "docs/haxd.conf.example"
	data := []byte(readDoc(t, path))
	cfg := agent.DefaultConfig()
	if err := agent.ParseConfig(path, data, &cfg); err != nil {
		t.Fatalf("haxd agent --config %s would refuse it: %v", path, err)
	}
	if _, err := cfg.Finish(); err == nil || !strings.Contains(err.Error(), "encrypt_key") {
		t.Errorf("the example's placeholder key must be refused (encrypt_key error), got %v", err)
	}
	key, err := gossip.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg.EncryptKey = key
	warnings, err := cfg.Finish()
	if err != nil {
		t.Fatalf("the example with a real key is refused: %v", err)
	}
	if len(warnings) > 0 {
		t.Errorf("the example draws timing warnings: %q", warnings)
	}
	scfg := store.DefaultConfig()
	scfg.LockTTL = cfg.Timing.LockTTL
	if w, err := scfg.CheckTiming(cfg.Timing); err != nil || len(w) > 0 {
		t.Errorf("the example fails the store's timing check: err %v, warnings %q", err, w)
	}

	keys := configKeys(t)
	mentioned := map[string]bool{}
	for i, line := range strings.Split(string(data), "\n") {
		if m := commentedKey.FindStringSubmatch(line); m != nil {
			key, value := m[1], m[2]
			f, ok := keys[key]
			if !ok {
				t.Errorf("%s:%d: commented-out key %q does not exist", path, i+1, key)
				continue
			}
			mentioned[key] = true
			one := agent.DefaultConfig()
			if err := agent.ParseConfig(path, []byte(key+" = "+value), &one); err != nil {
				t.Errorf("%s:%d: uncommented, the line is refused: %v", path, i+1, err)
				continue
			}
			def := reflect.ValueOf(agent.DefaultConfig()).FieldByIndex(f.Index)
			got := reflect.ValueOf(one).FieldByIndex(f.Index)
			switch {
			case f.Type.Kind() == reflect.Pointer:
				one.Insecure = true
				one.AdvertiseIP = "10.0.0.11"
				if _, err := one.Finish(); err != nil {
					t.Errorf("%s:%d: %v", path, i+1, err)
				} else if one.Timing != ha.FastTiming() {
					t.Errorf("%s:%d: %s = %s is not the fast profile's value", path, i+1, key, value)
				}
			case def.IsZero():
				// An example value for a key whose default is empty/false.
			case !reflect.DeepEqual(got.Interface(), def.Interface()):
				t.Errorf("%s:%d: commented-out %s = %s, but the default is %v", path, i+1, key, value, def.Interface())
			}
			continue
		}
		if k, _, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			k = strings.TrimSpace(k)
			mentioned[k] = true
		}
	}
	for _, key := range slices.Sorted(maps.Keys(keys)) {
		if !mentioned[key] {
			t.Errorf("%s does not mention config key %q (set it or add a commented-out `# %s = value` line)", path, key, key)
		}
	}
}

// cliParser builds the kong parser of main() with help written to w.
func cliParser(t *testing.T, w *bytes.Buffer) *kong.Kong {
	t.Helper()
	var cli CLI
	k, err := kong.New(&cli, append(kongOptions(), kong.Writers(w, w), kong.Exit(func(int) {}))...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// commandPath returns "haxd ha add" for a node.
func commandPath(n *kong.Node) string {
	var parts []string
	for ; n != nil; n = n.Parent {
		parts = append(parts, n.Name)
	}
	slices.Reverse(parts)
	return strings.Join(parts, " ")
}

// helpText renders `haxd <args> --help` at 80 columns.
func helpText(t *testing.T, args []string) string {
	t.Helper()
	var buf bytes.Buffer
	k := cliParser(t, &buf)
	_, _ = k.Parse(append(slices.Clone(args), "--help")) // help calls Exit, which does not exit here
	return strings.TrimRight(buf.String(), "\n")
}

// TestDocsCLIReferenceIsComplete: docs/cli.md has a section per command
// (every visible leaf of the kong tree, and the root), each holding the
// command's --help output verbatim in its first ```text block, and no
// section for a command that does not exist. Run
// `go test -run TestDocsCLI -update-cli-docs .` to refresh the blocks.
func TestDocsCLIReferenceIsComplete(t *testing.T) {
	t.Setenv("COLUMNS", "80")
	const path = "docs/cli.md"
	doc := readDoc(t, path)
	k := cliParser(t, &bytes.Buffer{})
	commands := map[string]bool{"haxd": true}
	leaves := []*kong.Node{k.Model.Node}
	for _, n := range k.Model.Node.Leaves(true) {
		leaves = append(leaves, n)
		for p := n; p != nil; p = p.Parent {
			commands[commandPath(p)] = true
		}
	}
	if len(leaves) < 15 {
		t.Fatalf("only %d commands found in the kong tree", len(leaves))
	}
	lines := strings.Split(doc, "\n")
	headings := map[string]int{}
	for i, l := range lines {
		if lv := headingLevel(l); lv >= 2 {
			title := strings.TrimSpace(l[lv:])
			if strings.HasPrefix(title, "haxd") {
				if !commands[title] {
					t.Errorf("%s:%d: section %q, but there is no such command", path, i+1, title)
				}
				headings[title] = i
			}
		}
	}
	changed := false
	for _, n := range leaves {
		cmd := commandPath(n)
		want := helpText(t, strings.Fields(strings.TrimPrefix(cmd, "haxd")))
		at, ok := headings[cmd]
		if !ok {
			t.Errorf("%s: no section \"## %s\" (or ###); its --help is:\n%s", path, cmd, want)
			continue
		}
		open, closeAt := -1, -1
		for i := at + 1; i < len(lines) && headingLevel(lines[i]) == 0; i++ {
			if open < 0 && lines[i] == "```text" {
				open = i
			} else if open >= 0 && lines[i] == "```" {
				closeAt = i
				break
			}
		}
		if closeAt < 0 {
			t.Errorf("%s: section %q has no ```text block for its --help output", path, cmd)
			continue
		}
		got := strings.Join(lines[open+1:closeAt], "\n")
		if got == want {
			continue
		}
		if *updateCLIDocs {
			lines = slices.Concat(lines[:open+1], strings.Split(want, "\n"), lines[closeAt:])
			changed = true
			// Line numbers after this block moved: recompute headings.
			for i, l := range lines {
				if lv := headingLevel(l); lv >= 2 {
					headings[strings.TrimSpace(l[lv:])] = i
				}
			}
			continue
		}
		t.Errorf("%s: the help block of %q is out of date (go test -run TestDocsCLI -update-cli-docs . rewrites it); want:\n%s", path, cmd, want)
	}
	if changed {
		if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDocsConfigExamplesAreAccepted: every ```conf block of
// docs/configuration.md parses, passes the agent's checks without a
// warning, and the guard the agent would start for it accepts its timing.
func TestDocsConfigExamplesAreAccepted(t *testing.T) {
	doc := readDoc(t, "docs/configuration.md")
	blocks := 0
	for rest := doc; ; {
		_, after, ok := strings.Cut(rest, "\n```conf\n")
		if !ok {
			break
		}
		block, tail, ok := strings.Cut(after, "\n```\n")
		if !ok {
			t.Fatal("docs/configuration.md: unterminated ```conf block")
		}
		rest = tail
		blocks++
		cfg := agent.DefaultConfig()
		cfg.Insecure = true
		cfg.AdvertiseIP = "10.0.0.11" // the blocks are fragments of a node's config
		if err := agent.ParseConfig("configuration.md example", []byte(block), &cfg); err != nil {
			t.Errorf("example %d is refused: %v", blocks, err)
			continue
		}
		warnings, err := cfg.Finish()
		if err != nil || len(warnings) > 0 {
			t.Errorf("example %d: err %v, warnings %q", blocks, err, warnings)
			continue
		}
		scfg := store.DefaultConfig()
		scfg.LockTTL = cfg.Timing.LockTTL
		if w, err := scfg.CheckTiming(cfg.Timing); err != nil || len(w) > 0 {
			t.Errorf("example %d: the store's timing check says err %v, warnings %q", blocks, err, w)
		}
		g := GuardCmd{Socket: "/run/haxd/guard.sock", Timing: cfg.Timing.Encode()}
		if _, _, err := g.config(slog.New(slog.DiscardHandler)); err != nil {
			t.Errorf("example %d: the guard the agent starts would refuse it: %v", blocks, err)
		}
	}
	if blocks == 0 {
		t.Error("docs/configuration.md has no ```conf example")
	}
}
