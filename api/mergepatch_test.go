package api

import (
	"encoding/json"
	"strings"
	"testing"
)

// The examples of RFC 7386, appendix A, plus the spec patches haxd sees.
func TestMergePatch(t *testing.T) {
	for _, tc := range []struct{ doc, patch, want string }{
		{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`, `{}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{`["a","b"]`, `["c","d"]`, `["c","d"]`},
		{`{"a":"b"}`, `["c"]`, `["c"]`},
		{`{"a":"foo"}`, `null`, `null`},
		{`{"a":"foo"}`, `"bar"`, `"bar"`},
		{`{"e":null}`, `{"a":1}`, `{"a":1,"e":null}`},
		{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
		{``, `{"command":"/bin/sleep","args":["9"]}`, `{"args":["9"],"command":"/bin/sleep"}`},
		{`{"command":"/bin/sleep","args":["9"],"env":{"A":"1"}}`, `{"args":["100"],"env":{"B":"2"}}`,
			`{"args":["100"],"command":"/bin/sleep","env":{"A":"1","B":"2"}}`},
		{`{"n":12345678901234567890}`, `{"m":1.50}`, `{"m":1.50,"n":12345678901234567890}`},
	} {
		got, err := MergePatch(json.RawMessage(tc.doc), json.RawMessage(tc.patch))
		if err != nil {
			t.Errorf("MergePatch(%s, %s): %v", tc.doc, tc.patch, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("MergePatch(%s, %s) = %s, want %s", tc.doc, tc.patch, got, tc.want)
		}
	}
}

func TestMergePatchRefusesBadInput(t *testing.T) {
	deep := strings.Repeat(`{"a":`, maxPatchDepth+2) + "1" + strings.Repeat("}", maxPatchDepth+2)
	for _, tc := range []struct{ doc, patch, want string }{
		{`{}`, `{`, "merge patch: not valid JSON"},
		{`{}`, `{} {}`, "trailing data"},
		{`{`, `{}`, "document: not valid JSON"},
		{`{}`, deep, "nested deeper than"},
	} {
		if _, err := MergePatch(json.RawMessage(tc.doc), json.RawMessage(tc.patch)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("MergePatch(%.20s, %.20s) = %v, want an error containing %q", tc.doc, tc.patch, err, tc.want)
		}
	}
}

// FuzzMergePatch: never panics; a result is valid JSON; applying the same
// patch again changes nothing (RFC 7386 patches are idempotent).
func FuzzMergePatch(f *testing.F) {
	f.Add(`{"a":"b"}`, `{"a":null,"c":{"d":1}}`)
	f.Add(``, `{"command":"x"}`)
	f.Add(`[1]`, `"s"`)
	f.Fuzz(func(t *testing.T, doc, patch string) {
		once, err := MergePatch(json.RawMessage(doc), json.RawMessage(patch))
		if err != nil {
			return
		}
		if !json.Valid(once) {
			t.Fatalf("MergePatch(%q, %q) = %q: not valid JSON", doc, patch, once)
		}
		twice, err := MergePatch(once, json.RawMessage(patch))
		if err != nil {
			t.Fatalf("second application of %q to %q: %v", patch, once, err)
		}
		if string(twice) != string(once) {
			t.Fatalf("patch %q not idempotent: %q then %q", patch, once, twice)
		}
	})
}
