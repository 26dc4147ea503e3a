package agent

import (
	"errors"
	"strings"
	"testing"

	"haxd/api"
	"haxd/crm/placement"
)

// TestRulesParseErrorSaysNothingChanged: the API refuses a whole rules
// text on a parse problem, so its message must not claim that only the
// section is ignored.
func TestRulesParseErrorSaysNothingChanged(t *testing.T) {
	_, diags := placement.ParseRules([]byte("bogus: r1\n\tresources exec:a\n"))
	if len(diags) == 0 {
		t.Fatal("the parser accepted an unknown rule type")
	}
	err := diagError("rules", diags[0])
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != 400 {
		t.Fatalf("diagError = %v, want a 400", err)
	}
	if strings.Contains(ae.Message, "section ignored") || !strings.Contains(ae.Message, "nothing was changed") ||
		!strings.Contains(ae.Message, "line 1") || !strings.Contains(ae.Message, "bogus") {
		t.Errorf("message %q: want line, the bad type and 'nothing was changed', not 'section ignored'", ae.Message)
	}
}
