package api

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// maxPatchDepth bounds the nesting of a merge patch and of the document it
// applies to, so that hostile input cannot exhaust the stack.
const maxPatchDepth = 64

// MergePatch applies the JSON merge patch patch (RFC 7386) to doc and
// returns the result: a patch that is an object sets each of its keys in
// doc (recursively for objects) and removes the keys it sets to null; any
// other patch replaces doc. An empty doc is read as null. Numbers keep
// their text. The result has sorted keys.
func MergePatch(doc, patch json.RawMessage) (json.RawMessage, error) {
	p, err := decodeJSON(patch)
	if err != nil {
		return nil, fmt.Errorf("merge patch: %w", err)
	}
	var d any
	if len(bytes.TrimSpace(doc)) > 0 {
		if d, err = decodeJSON(doc); err != nil {
			return nil, fmt.Errorf("document: %w", err)
		}
	}
	if depth(p, 0) > maxPatchDepth || depth(d, 0) > maxPatchDepth {
		return nil, fmt.Errorf("merge patch: nested deeper than %d levels", maxPatchDepth)
	}
	out, err := json.Marshal(mergeValue(d, p))
	if err != nil {
		return nil, fmt.Errorf("encode merged document: %w", err)
	}
	return out, nil
}

// decodeJSON decodes exactly one JSON value, keeping numbers as text.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("not valid JSON: trailing data after the value")
	}
	return v, nil
}

// depth returns the nesting depth of v, stopping past maxPatchDepth.
func depth(v any, d int) int {
	if d > maxPatchDepth {
		return d
	}
	best := d
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			best = max(best, depth(e, d+1))
		}
	case []any:
		for _, e := range x {
			best = max(best, depth(e, d+1))
		}
	}
	return best
}

// mergeValue is RFC 7386's MergePatch(Target, Patch).
func mergeValue(target, patch any) any {
	p, isObj := patch.(map[string]any)
	if !isObj {
		return patch
	}
	t, isObj := target.(map[string]any)
	if !isObj {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergeValue(t[k], v)
	}
	return t
}
