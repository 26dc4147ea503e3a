package ha

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseSID(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
		typ     string
		name    string
	}{
		{in: "vm:101", typ: "vm", name: "101"},
		{in: "exec:web-1", typ: "exec", name: "web-1"},
		{in: "fa:1001", typ: "fa", name: "1001"},
		{in: "vm101", wantErr: "expected type:name"},
		{in: ":101", wantErr: "empty type"},
		{in: "VM:101", wantErr: "lower-case"},
		{in: "vm:", wantErr: "non-empty"},
		{in: "vm:1 2", wantErr: "without blanks"},
	}
	for _, tt := range tests {
		sid, err := ParseSID(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseSID(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSID(%q): %v", tt.in, err)
			continue
		}
		if sid.Type() != tt.typ || sid.Name() != tt.name {
			t.Errorf("ParseSID(%q) = type %q name %q, want %q %q", tt.in, sid.Type(), sid.Name(), tt.typ, tt.name)
		}
	}
}

func TestTimingProfilesAreSafe(t *testing.T) {
	for _, name := range []string{"pve", "fast"} {
		tm, err := TimingProfile(name)
		if err != nil {
			t.Fatal(err)
		}
		warnings, err := tm.Validate()
		if err != nil {
			t.Errorf("profile %s: %v", name, err)
		}
		if len(warnings) > 0 {
			t.Errorf("profile %s warns: %v", name, warnings)
		}
	}
	if _, err := TimingProfile("slow"); err == nil {
		t.Error("unknown profile accepted")
	}
}

func TestTimingValidateRejectsUnsafe(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Timing)
		unsafe  bool
		wantErr string
		warn    string
	}{
		{name: "validity eats the margin", mutate: func(t *Timing) { t.LockValidity = 2 * time.Second }, unsafe: true,
			wantErr: "lock_validity (2s) + self_fence_time (100ms) + watchdog_timeout (500ms) + clock_drift_margin (200ms) = 2.8s must be less than lock_ttl (1.9s)"},
		{name: "equal is unsafe", mutate: func(t *Timing) { t.LockTTL = 1800 * time.Millisecond }, unsafe: true},
		{name: "just below is safe", mutate: func(t *Timing) { t.LockTTL = 1801 * time.Millisecond }},
		{name: "watchdog too long", mutate: func(t *Timing) { t.WatchdogTimeout = 5 * time.Second }, unsafe: true},
		{name: "negative validity", mutate: func(t *Timing) { t.LockValidity = -1 }, wantErr: "lock_validity: expected a duration >= 0"},
		{name: "zero round", mutate: func(t *Timing) { t.CRMRound = 0 }, wantErr: "crm_round: expected a positive duration"},
		{name: "zero idle rounds", mutate: func(t *Timing) { t.LRMIdleRounds = 0 }, wantErr: "lrm_idle_rounds"},
		{name: "grace shorter than an election", mutate: func(t *Timing) { t.LockValidity = 400 * time.Millisecond }, warn: "may self-fence whenever the raft leader changes"},
		{name: "grace with a thin margin", mutate: func(t *Timing) { t.LockValidity = 700 * time.Millisecond }, warn: "leaves less than 25% margin"},
		{name: "validity shorter than an election", mutate: func(t *Timing) { t.LockValidity = 900 * time.Millisecond }, warn: "may lose their lock for a moment"},
		{name: "longer ttl is fine", mutate: func(t *Timing) { t.LockTTL = 10 * time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tm := FastTiming()
			tt.mutate(&tm)
			warnings, err := tm.Validate()
			if tt.unsafe != errors.Is(err, ErrUnsafeTiming) {
				t.Fatalf("Validate() = %v, want unsafe=%v", err, tt.unsafe)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
			if tt.wantErr == "" && !tt.unsafe && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if tt.warn != "" && !strings.Contains(strings.Join(warnings, "\n"), tt.warn) {
				t.Fatalf("warnings %q, want one containing %q", warnings, tt.warn)
			}
		})
	}
}

func TestServiceStatusJSON(t *testing.T) {
	in := `{"state":"request_stop","node":"node1","uid":"x","timeout":"5","running":1,
	        "cmd":["migrate","node2"],"failed_nodes":["node1","node3"],"maintenance_node":"node1"}`
	var sd ServiceStatus
	if err := json.Unmarshal([]byte(in), &sd); err != nil {
		t.Fatal(err)
	}
	if sd.State != StateRequestStop || *sd.Timeout != 5 || !sd.Running || sd.Cmd.Name != "migrate" ||
		sd.Cmd.Target != "node2" || len(sd.FailedNodes) != 2 || sd.MaintenanceNode != "node1" {
		t.Fatalf("decoded %+v", sd)
	}
	out, err := json.Marshal(&sd)
	if err != nil {
		t.Fatal(err)
	}
	var back ServiceStatus
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatalf("round trip %s: %v", out, err)
	}
	if back.Cmd.Target != "node2" || *back.Timeout != 5 {
		t.Fatalf("round trip lost data: %s", out)
	}
	stop := ServiceCmd{Name: "stop", Timeout: 10}
	b, _ := json.Marshal(stop)
	if string(b) != `["stop",10]` {
		t.Fatalf("stop cmd encodes as %s", b)
	}
	for _, bad := range []string{`{"timeout":"x"}`, `{"cmd":"migrate"}`, `{"cmd":[]}`, `{"running":"yes"}`} {
		var sd ServiceStatus
		if err := json.Unmarshal([]byte(bad), &sd); err == nil {
			t.Errorf("Unmarshal(%s) accepted bad input", bad)
		}
	}
}

func TestServiceStatusCloneIsDeep(t *testing.T) {
	to := 3
	sd := &ServiceStatus{State: StateStarted, Node: "n1", Timeout: &to, FailedNodes: []string{"n1"}, Cmd: &ServiceCmd{Name: "stop"}}
	c := sd.Clone()
	*c.Timeout = 9
	c.FailedNodes[0] = "n2"
	c.Cmd.Name = "migrate"
	if *sd.Timeout != 3 || sd.FailedNodes[0] != "n1" || sd.Cmd.Name != "stop" {
		t.Fatalf("Clone shares memory with the original: %+v", sd)
	}
}

func FuzzServiceStatusJSON(f *testing.F) {
	f.Add([]byte(`{"state":"started","node":"node1","uid":"a","running":1}`))
	f.Add([]byte(`{"state":"request_stop","node":"n","timeout":"0","cmd":["stop",0]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var sd ServiceStatus
		if err := json.Unmarshal(b, &sd); err != nil {
			return
		}
		out, err := json.Marshal(&sd)
		if err != nil {
			t.Fatalf("marshal of decoded value failed: %v", err)
		}
		var back ServiceStatus
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("re-decode of %s failed: %v", out, err)
		}
	})
}

func TestCheckConfigID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want string // "" for valid
	}{
		{"g1", ""},
		{"a", ""},
		{"Ab-c_9", ""},
		{strings.Repeat("x", MaxConfigIDLen), ""},
		{"", "empty group id"},
		{"1g", `invalid group id "1g"`},
		{"g.1", `invalid group id "g.1"`},
		{"g 1", `invalid group id "g 1"`},
		{"-g", `invalid group id "-g"`},
		{"gö", `invalid group id "gö"`},
		{strings.Repeat("x", MaxConfigIDLen+1), "129 bytes long"},
	} {
		err := CheckConfigID("group", tc.id)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckConfigID(%q) = %v, want nil", tc.id, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("CheckConfigID(%q) = %v, want an error containing %q", tc.id, err, tc.want)
		}
		if ValidConfigID(tc.id) != (tc.want == "") {
			t.Errorf("ValidConfigID(%q) = %v", tc.id, !(tc.want == ""))
		}
	}
}

// One node-name validator serves the agent config, the API and the
// certificate tooling.
func TestCheckNodeName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"node1", true}, {"a", true}, {"A-9", true}, {strings.Repeat("a", MaxNodeNameLen), true},
		{"", false}, {"-a", false}, {"a-", false}, {"a.b", false}, {"a b", false}, {"nö", false},
		{strings.Repeat("a", MaxNodeNameLen+1), false},
	} {
		err := CheckNodeName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("CheckNodeName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), strconv.Quote(tc.name)) {
			t.Errorf("CheckNodeName(%q) = %v: the error does not name the value", tc.name, err)
		}
		if ValidNodeName(tc.name) != tc.ok {
			t.Errorf("ValidNodeName(%q) = %v, want %v", tc.name, !tc.ok, tc.ok)
		}
	}
}

// A watchdog device whose timeout breaks the safety inequality is refused
// with every term named.
func TestCheckDeviceTimeoutAgainstTheSafetyInequality(t *testing.T) {
	pve, fast := PVETiming(), FastTiming()
	tests := []struct {
		name    string
		timing  Timing
		granted time.Duration
		ok      bool
	}{
		{"pve with 10s", pve, 10 * time.Second, true},
		{"pve with softdog's default 60s", pve, 60 * time.Second, false},
		{"pve at the limit", pve, pve.MaxDeviceTimeout(), false},
		{"fast with 1s, the shortest any driver grants", fast, time.Second, false},
	}
	for _, tt := range tests {
		err := tt.timing.CheckDeviceTimeout("/dev/watchdog", time.Second, tt.granted)
		if (err == nil) != tt.ok {
			t.Errorf("%s: CheckDeviceTimeout = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && (!errors.Is(err, ErrUnsafeTiming) || !strings.Contains(err.Error(), "/dev/watchdog") || !strings.Contains(err.Error(), "granted "+tt.granted.String())) {
			t.Errorf("%s: error %q does not name the device and the granted timeout", tt.name, err)
		}
	}
}

func TestNodeNameRuleNamesTheLimit(t *testing.T) {
	if !strings.Contains(NodeNameRule, strconv.Itoa(MaxNodeNameLen)) {
		t.Errorf("NodeNameRule %q does not name MaxNodeNameLen %d", NodeNameRule, MaxNodeNameLen)
	}
}

func TestSortedSIDsReusesTheCacheOnlyForTheSameSet(t *testing.T) {
	var cache []SID
	m := map[SID]int{"vm:2": 0, "vm:1": 0}
	first := SortedSIDs(&cache, m)
	if !slices.Equal(first, []SID{"vm:1", "vm:2"}) {
		t.Fatalf("SortedSIDs = %v", first)
	}
	if again := SortedSIDs(&cache, m); &again[0] != &first[0] {
		t.Error("the same set was sorted again")
	}
	delete(m, "vm:1")
	m["vm:3"] = 0 // same size, other set
	if got := SortedSIDs(&cache, m); !slices.Equal(got, []SID{"vm:2", "vm:3"}) {
		t.Errorf("after a swap: %v, want [vm:2 vm:3]", got)
	}
	m["ct:0"] = 0
	if got := SortedSIDs(&cache, m); !slices.Equal(got, []SID{"ct:0", "vm:2", "vm:3"}) {
		t.Errorf("after an add: %v", got)
	}
}

// Encode carries every field; DecodeTiming takes nothing from a profile
// and names the key and value it refuses.
func TestTimingEncodeDecode(t *testing.T) {
	odd := FastTiming()
	odd.LockValidity, odd.ElectionTimeout, odd.LRMIdleRounds = 0, 1234*time.Microsecond, 7
	for _, tm := range []Timing{PVETiming(), FastTiming(), odd} {
		got, err := DecodeTiming(tm.Encode())
		if err != nil || got != tm {
			t.Errorf("DecodeTiming(Encode(%+v)) = %+v, %v", tm, got, err)
		}
	}
	full := FastTiming().Encode()
	for _, tc := range []struct{ in, want string }{
		{strings.Replace(full, `"lock_ttl":"1.9s"`, `"lock_ttl":"soon"`, 1), `timing lock_ttl "soon": expected a duration`},
		{strings.Replace(full, `"lock_ttl":"1.9s",`, ``, 1), "timing lock_ttl: missing"},
		{strings.Replace(full, `{`, `{"lock_tll":"1s",`, 1), `timing: unknown key "lock_tll"`},
		{strings.Replace(full, `"crm_idle_rounds":90`, `"crm_idle_rounds":"90"`, 1), `timing crm_idle_rounds "90"`},
		{"fast", "expected a JSON object"},
	} {
		if _, err := DecodeTiming(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DecodeTiming(%s) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}
