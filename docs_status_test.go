package main

import (
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"haxd/api"
)

// TestDocsStatusJSONSchema: every field of the status JSON (api.View and
// the objects in it) has a row in docs/cli.md's schema, and the schema
// names no field the code does not have.
func TestDocsStatusJSONSchema(t *testing.T) {
	doc := readDoc(t, "docs/cli.md")
	top, _, ok := strings.Cut(doc, "\n##### master\n")
	if !ok {
		t.Fatal("docs/cli.md: no \"##### master\" under \"#### Status JSON\"")
	}
	for _, tc := range []struct {
		doc, heading string
		typ          reflect.Type
	}{
		{top, "#### Status JSON", reflect.TypeFor[api.View]()},
		{doc, "##### master", reflect.TypeFor[api.MasterView]()},
		{doc, "##### fencing", reflect.TypeFor[api.FencingView]()},
		{doc, "##### nodes", reflect.TypeFor[api.NodeView]()},
		{doc, "##### services", reflect.TypeFor[api.ServiceView]()},
	} {
		rows := tableRows(t, tc.doc, tc.heading)
		fields := map[string]bool{}
		for i := range tc.typ.NumField() {
			name, _, _ := strings.Cut(tc.typ.Field(i).Tag.Get("json"), ",")
			fields[name] = true
			if _, ok := rows[name]; !ok {
				t.Errorf("docs/cli.md %q: field %q of %s has no row", tc.heading, name, tc.typ.Name())
			}
		}
		for _, name := range slices.Sorted(maps.Keys(rows)) {
			if !fields[name] {
				t.Errorf("docs/cli.md %q documents %q, which %s does not have", tc.heading, name, tc.typ.Name())
			}
		}
	}
}
