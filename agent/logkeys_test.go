package agent

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"haxd/ha"
)

// jsonKeys returns the top-level keys of one JSON object in order,
// duplicates kept (json.Unmarshal into a map would fold them).
func jsonKeys(t *testing.T, line string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("record %q: not a JSON object: %v", line, err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("record %q: value of %v: %v", line, tok, err)
		}
	}
	return keys
}

// An agent's records name the agent under ha.KeyAgent, so that a record
// about another node carries exactly one ha.KeyNode: through the CRM's
// and LRM's env logger and through a component's logger alike.
func TestAgentLogRecordHasOneNodeKey(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n := &node{name: "n1", log: agentLogger(base, "n1")}
	for _, tc := range []struct {
		name string
		log  *slog.Logger
	}{
		{"crm env", newEnv(n, "crm", nil).Logger()},
		{"lrm env", newEnv(n, "lrm", nil).Logger()},
		{"component", n.log.With("component", "fence")},
		{"agent", n.log},
	} {
		buf.Reset()
		tc.log.Info("node fenced", ha.KeyNode, "n2")
		line, _ := buf.ReadString('\n')
		keys := jsonKeys(t, line)
		count := map[string]int{}
		for _, k := range keys {
			count[k]++
		}
		if count[ha.KeyNode] != 1 || count[ha.KeyAgent] != 1 {
			t.Errorf("%s: record %q has keys %v: want one %q and one %q", tc.name, line, keys, ha.KeyNode, ha.KeyAgent)
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		if rec[ha.KeyAgent] != "n1" || rec[ha.KeyNode] != "n2" {
			t.Errorf("%s: record %q: want %s=n1 (the writer) and %s=n2 (the subject)", tc.name, line, ha.KeyAgent, ha.KeyNode)
		}
	}
}
