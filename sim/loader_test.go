package sim

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"haxd/ha"
)

func loadFiles(files map[string]string) (*Scenario, error) {
	fsys := fstest.MapFS{}
	for name, content := range files {
		fsys[name] = &fstest.MapFile{Data: []byte(content)}
	}
	return LoadScenarioFS(fsys)
}

func TestLoadDefaults(t *testing.T) {
	sc, err := loadFiles(map[string]string{"cmdlist": "[]"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(sc.Nodes, ",") != "node1,node2,node3" {
		t.Errorf("default nodes %v", sc.Nodes)
	}
	if len(sc.Services) != 6 || sc.Services["vm:104"].Node != "node1" || sc.Services["vm:106"].State != ha.RequestDisabled {
		t.Errorf("default services wrong: %d, vm:104 %+v", len(sc.Services), sc.Services["vm:104"])
	}
	if got := sc.StaticStats["vm:101"]; got["maxcpu"] != 4 || got["maxmem"] != 4096*mib {
		t.Errorf("default static stats %v", got)
	}
	if got := sc.DynamicStats["vm:101"]; got["cpu"] != 2 || got["mem"] != 2048*mib {
		t.Errorf("default dynamic stats %v", got)
	}
	if sc.Rules != nil || sc.Groups != nil || len(sc.ManagerStatus.ServiceStatus) != 0 {
		t.Errorf("absent files not empty")
	}
}

func TestLoadCoercionsAndStates(t *testing.T) {
	sc, err := loadFiles(map[string]string{
		"cmdlist": "[]",
		"hardware_status": `{"node10": {"power": "on", "network": "on", "maxcpu": "8", "maxmem": 1e9, "pve-manager-version": "8.4.1"},
			"node2": {"power": "off", "network": "off"}}`,
		"service_config": `{"vm:101": {"node": "node2", "state": "enabled", "max_restart": "0", "max_relocate": 3, "failback": 0},
			"fa:1001": {"node": "node10"}, "ct:102": {"node": "node2", "state": "weird"}}`,
		"static_service_stats": `{"vm:101": {"maxcpu": "2", "maxmem": 1024}}`,
		"datacenter.cfg":       `{"ha": {"shutdown_policy": "migrate"}, "crs": {"ha": "static", "ha-rebalance-on-start": 1, "ha-auto-rebalance-threshold": "0.5"}}`,
		"manager_status":       `{"master_node": "node2", "timestamp": "700", "node_request": {"node2": {"maintenance": 1}}, "service_status": {"vm:101": {"state": "started", "node": "node2", "running": 1}}}`,
		"service_status_node2": `{"vm:101": 1, "ct:102": 0}`,
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(sc.Nodes, ",") != "node10,node2" {
		t.Errorf("nodes not byte-sorted: %v", sc.Nodes)
	}
	if hw := sc.Hardware["node10"]; !hw.Power || *hw.MaxCPU != 8 || hw.Version != "8.4.1" || sc.Hardware["node2"].MaxCPU != nil {
		t.Errorf("hardware %+v", hw)
	}
	v := sc.Services["vm:101"]
	if v.State != ha.RequestStarted || v.MaxRestart != 0 || v.MaxRelocate != 3 || v.Failback {
		t.Errorf("vm:101 %+v", v)
	}
	if sc.Services["fa:1001"].State != ha.RequestDisabled || sc.Services["fa:1001"].MaxRestart != 1 {
		t.Errorf("fa:1001 defaults %+v", sc.Services["fa:1001"])
	}
	if sc.Services["ct:102"].State != "weird" {
		t.Errorf("unknown state not kept for the CRM to report: %q", sc.Services["ct:102"].State)
	}
	if _, ok := sc.StaticStats["fa:1001"]; ok {
		t.Error("static stats defaulted although the file exists")
	}
	if _, ok := sc.DynamicStats["vm:101"]; !ok {
		t.Error("dynamic defaults missing for a sid of the static file")
	}
	if sc.Datacenter.ShutdownPolicy != ha.ShutdownMigrate || sc.Datacenter.CRS.Mode != "static" ||
		!sc.Datacenter.CRS.RebalanceOnStart || sc.Datacenter.CRS.AutoRebalanceThreshold != 0.5 ||
		!sc.Datacenter.CRS.Set["ha-auto-rebalance-threshold"] {
		t.Errorf("datacenter %+v", sc.Datacenter)
	}
	ms := sc.ManagerStatus
	if ms.Timestamp != 700 || !ms.NodeRequest["node2"].Maintenance || !ms.ServiceStatus["vm:101"].Running {
		t.Errorf("manager status %+v", ms)
	}
	if !sc.Running["node2"]["vm:101"] || sc.Running["node2"]["ct:102"] {
		t.Errorf("running %v", sc.Running)
	}
}

func TestLoadErrorsNameFileFieldAndValue(t *testing.T) {
	tests := []struct {
		file, content, want string
	}{
		{"cmdlist", `{"a": 1}`, "cmdlist: expected a JSON list"},
		{"cmdlist", `[["ok"], [1]]`, "cmdlist: step 2: expected a list of strings, found [1]"},
		{"hardware_status", `[]`, "hardware_status: expected a JSON object"},
		{"hardware_status", `{}`, "hardware_status: no nodes"},
		{"hardware_status", `{"node1": {"maxmem": "lots"}}`, `hardware_status: node node1: field maxmem: expected a number, found "lots"`},
		{"hardware_status", `{"a/b": {}}`, `invalid node name "a/b"`},
		{"service_config", `{"vm:101": {}}`, "service_config: vm:101: field node: required"},
		{"service_config", `{"vm:abc": {"node": "node1"}}`, `service_config: invalid service id "vm:abc"`},
		{"service_config", `{"vm:101": {"node": "node1", "failback": "yes"}}`, `service_config: vm:101: field failback: expected a boolean or 0/1, found "yes"`},
		{"manager_status", `{"timestamp": "soon"}`, `manager_status: field timestamp: expected a number, found "soon"`},
		{"manager_status", `{"service_status": {"bad": {}}}`, `manager_status: service_status: invalid service id "bad"`},
		{"datacenter.cfg", `{"crs": {"ha-auto-rebalance-hold-duration": "x"}}`, `datacenter.cfg: field crs.ha-auto-rebalance-hold-duration: expected a number, found "x"`},
		{"static_service_stats", `{"vm:101": {"maxcpu": true}}`, "static_service_stats: vm:101: field maxcpu: expected a number, found true"},
		{"service_status_node1", `{"vm:101": "on"}`, `service_status_node1: vm:101: expected a boolean or 0/1, found "on"`},
		{"service_status_node9", `{}`, `service_status_node9: node "node9" is not in hardware_status`},
	}
	for _, tt := range tests {
		files := map[string]string{"cmdlist": "[]", tt.file: tt.content}
		_, err := loadFiles(files)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s %s: error %v, want one containing %q", tt.file, tt.content, err, tt.want)
		}
	}
	if _, err := loadFiles(map[string]string{}); err == nil || !strings.Contains(err.Error(), "cmdlist") {
		t.Errorf("missing cmdlist: %v", err)
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		in                   string
		verb, object, action string
		objectErr, err       string
		seconds, skip        int
	}{
		{in: "power node1 on", verb: "power", object: "node1", action: "on"},
		{in: "delay 200", verb: "delay", seconds: 200},
		{in: "skip-round lrm  ", verb: "skip-round", skip: 1},
		{in: "skip-round crm 3", verb: "skip-round", skip: 3},
		{in: "service vm:101 add node1 stopped 1", verb: "service", object: "vm:101", action: "add"},
		{in: "service vm:101 set-static-stats maxcpu 2.5 maxmem 1024", verb: "service", object: "vm:101", action: "set-static-stats"},
		{in: "service vm:101 set-dynamic-stats cpu x", verb: "service", object: "vm:101", action: "set-dynamic-stats", err: `expected a number, found "x"`},
		{in: "service vm:101 stop -1", verb: "service", object: "vm:101", action: "stop", err: "expected a number of seconds"},
		{in: "service VM:1 started", verb: "service", object: "VM:1", action: "started", objectErr: "invalid service id"},
		{in: "reboot", verb: "reboot", objectErr: "expected '<command> <node|sid>"},
		{in: "reboot node1 now", verb: "reboot", object: "node1", action: "now", err: `unexpected parameter "now"`},
		{in: "cfs node1 rw broken", verb: "cfs", object: "node1", action: "rw", err: "unknown cfs state"},
		{in: "delay 5 s", verb: "delay", object: "5", action: "s", err: `unknown command "delay"`},
	}
	for _, tt := range tests {
		c, err := ParseCommand(tt.in)
		if c.Verb != tt.verb || c.Object != tt.object || c.Action != tt.action || c.Seconds != tt.seconds || c.SkipRounds != tt.skip {
			t.Errorf("ParseCommand(%q) = %+v", tt.in, c)
		}
		check := func(what string, got error, want string) {
			if (want == "") != (got == nil) || (got != nil && !strings.Contains(got.Error(), want)) {
				t.Errorf("ParseCommand(%q) %s = %v, want %q", tt.in, what, got, want)
			}
		}
		check("ObjectErr", c.ObjectErr, tt.objectErr)
		check("Err", c.Err, tt.err)
		if (err == nil) != (tt.objectErr == "" && tt.err == "") {
			t.Errorf("ParseCommand(%q) error = %v", tt.in, err)
		}
	}
}

func TestFormatPVE(t *testing.T) {
	tests := []struct {
		r    Record
		want string
	}{
		{Record{Time: 20 * time.Second, Level: slog.LevelInfo, Origin: "node1/crm", Daemon: true, Msg: "x"}, "info     20    node1/crm: x\n"},
		{Record{Time: 160 * time.Second, Level: LevelEmail, Origin: "node1/crm", Daemon: true, Msg: "FENCE: y"}, "emai    160    node1/crm: FENCE: y\n"},
		{Record{Level: ha.LevelNotice, Origin: "node1/lrm", Daemon: true, Msg: "n"}, "noti      0    node1/lrm: n\n"},
		{Record{Level: slog.LevelWarn, Origin: "node1/lrm", Daemon: true, Msg: "w"}, "warn      0    node1/lrm: w\n"},
		{Record{Level: slog.LevelWarn, Origin: "hardware", Msg: "overcommitted cpu on 'node1'"}, "warning     0     hardware: overcommitted cpu on 'node1'\n"},
		{Record{Level: slog.LevelError, Origin: "hardware", Msg: "exit simulation - boom", Trailer: " "}, "err       0     hardware: exit simulation - boom\n \n"},
		{Record{Level: slog.LevelDebug, Origin: "node1/crm", Daemon: true, Msg: "hidden"}, ""},
		{Record{Time: 1500 * time.Millisecond, Level: slog.LevelInfo, Origin: "a-very-long-origin", Msg: "m"}, "info      1 a-very-long-origin: m\n"},
		{Record{Time: 5 * time.Second, Level: slog.LevelInfo, Origin: "node1/lrm", Daemon: true, Msg: malformedLRMLine},
			"\n\t        5    node1/lrm: " + malformedLRMLine + "\n"},
	}
	for _, tt := range tests {
		if got := FormatPVE(tt.r); got != tt.want {
			t.Errorf("FormatPVE(%+v) = %q, want %q", tt.r, got, tt.want)
		}
	}
}

func TestResourceAgents(t *testing.T) {
	s, envs := newTestSim(t)
	var log []string
	s.sink = SinkFunc(func(r Record) { log = append(log, r.Msg) })
	ctx := context.Background()
	s.services["ct:102"] = &ha.ResourceConfig{SID: "ct:102", Node: "node1"}
	s.services["vm:103"] = &ha.ResourceConfig{SID: "vm:103", Node: "node1", Lock: "backup"}
	ct := envs["node1"].ResourceAgent("ct")
	_ = ct.Start(ctx, "ct:102")
	if err := ct.Migrate(ctx, "ct:102", "node2", true); err != nil {
		t.Fatal(err)
	}
	want := []string{"unable to live migrate running container, fallback to relocate",
		"service ct:102 - start relocate to node 'node2'", "stopping service ct:102 (relocate)",
		"service status ct:102 stopped", "service ct:102 - end relocate to node 'node2'"}
	if strings.Join(log, "|") != strings.Join(want, "|") {
		t.Errorf("ct migrate logged %q, want %q", log, want)
	}
	if s.services["ct:102"].Node != "node2" || s.byName["node1"].running["ct:102"] || s.byName["node2"].running["ct:102"] {
		t.Error("relocated container must be on node2 and not running")
	}
	log = nil
	vm := envs["node1"].ResourceAgent("vm")
	if err := vm.Migrate(ctx, "vm:103", "node2", true); err == nil {
		t.Error("locked vm migrated")
	}
	_ = vm.Start(ctx, "vm:103")
	if s.byName["node1"].running["vm:103"] || !strings.Contains(strings.Join(log, "|"), "service 'vm:103' locked (backup), unable to start!") {
		t.Errorf("locked vm started, log %q", log)
	}
	if got := vm.RemoveLocks("vm:103", []string{"snapshot", "backup"}); got != "backup" || s.services["vm:103"].Lock != "" {
		t.Errorf("RemoveLocks = %q", got)
	}
	if !vm.LiveMigratable() || ct.LiveMigratable() || envs["node1"].ResourceAgent("fa").LiveMigratable() {
		t.Error("only vm is live-migratable")
	}
	if envs["node1"].ResourceAgent("exec") != nil {
		t.Error("unknown type has an agent")
	}
}

func TestDynamicNodeStats(t *testing.T) {
	s, envs := newTestSim(t)
	var log []string
	s.sink = SinkFunc(func(r Record) { log = append(log, FormatPVE(r)) })
	two := 2.0
	s.byName["node1"].maxCPU = &two
	s.static = map[ha.SID]Stats{"vm:101": {"maxcpu": 1, "maxmem": 100}, "vm:102": {"maxcpu": 4, "maxmem": 100}}
	s.dynamic = map[ha.SID]Stats{"vm:101": {"cpu": 1.5, "mem": 50}, "vm:102": {"cpu": 1}}
	s.byName["node1"].running["vm:101"] = true
	s.byName["node1"].running["vm:102"] = true
	ns, err := envs["node1"].DynamicNodeStats()
	if err != nil {
		t.Fatal(err)
	}
	// Only running services count; node capacity defaults apply.
	if got := ns["node1"]; got.CPU != 2.5 || got.Mem != 50 || got.MaxCPU != 2 || got.MaxMem != defaultMaxMem {
		t.Errorf("node1 stats %+v", got)
	}
	if got := ns["node2"]; got.CPU != 0 || got.MaxCPU != defaultMaxCPU {
		t.Errorf("node2 stats %+v", got)
	}
	want := "warning     0     hardware: overcommitted cpu on 'vm:101'\n" +
		"warning     0     hardware: overcommitted cpu on 'node1'\n"
	if strings.Join(log, "") != want {
		t.Errorf("log %q, want %q", strings.Join(log, ""), want)
	}
	if _, err := envs["node1"].StaticNodeStats(); err == nil {
		t.Error("static stats without capacities in hardware_status must fail")
	}
	if st, ok := envs["node1"].ServiceStats("vm:102"); !ok || st.MaxCPU != 4 || st.CPU != 1 || st.Mem != 0 {
		t.Errorf("merged stats %+v %v", st, ok)
	}
}
