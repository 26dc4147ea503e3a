package sim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"haxd/ha"
)

// addSeeds adds the content of file from every shared pve-tests scenario
// and from our own scenarios to the fuzz corpus, plus extra seeds.
func addSeeds(f *testing.F, file string, extra ...string) {
	for _, root := range []string{pveTestsDir, "testdata/scenarios"} {
		dirs, _ := filepath.Glob(filepath.Join(root, "*", file))
		for _, p := range dirs {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	for _, s := range extra {
		f.Add([]byte(s))
	}
}

func FuzzParseCmdlist(f *testing.F) {
	addSeeds(f, "cmdlist", `[]`, `[[]]`, `[["delay 1", 2]]`, `{}`)
	f.Fuzz(func(t *testing.T, b []byte) {
		steps, err := ParseCmdlist(b)
		if err == nil && steps == nil {
			t.Error("nil steps without error")
		}
	})
}

func FuzzParseHardwareStatus(f *testing.F) {
	addSeeds(f, "hardware_status", `{}`, `{"n": {"power": "on", "maxcpu": "8"}}`, `{"a b": {}}`)
	f.Fuzz(func(t *testing.T, b []byte) {
		hw, err := ParseHardwareStatus(b)
		if err == nil && len(hw) == 0 {
			t.Error("no nodes without error")
		}
	})
}

func FuzzParseManagerStatus(f *testing.F) {
	addSeeds(f, "manager_status", `{}`, `{"node_request": {"node1": {"maintenance": 1}}, "disarm": {"mode": "freeze", "state": "disarmed"}}`,
		`{"service_status": {"vm:1": {"running": "1", "timeout": "5", "cmd": ["stop", "0"]}}}`)
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := ParseManagerStatus(b)
		if err == nil {
			_ = cloneManagerStatus(ms)
		}
	})
}

func FuzzParseServiceConfig(f *testing.F) {
	addSeeds(f, "service_config", `{"vm:1": {"node": "n", "state": "bogus", "failback": "0"}}`, `{"vm:x": {}}`)
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := ParseServiceConfig(b)
		if err != nil {
			return
		}
		for sid, c := range cfg {
			if c.Node == "" || !sidPattern.MatchString(string(sid)) {
				t.Errorf("accepted %s with node %q", sid, c.Node)
			}
		}
	})
}

func FuzzParseDatacenter(f *testing.F) {
	addSeeds(f, "datacenter.cfg", `{"crs": {"ha-auto-rebalance-threshold": "0.5"}}`, `{"ha": 1}`)
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseDatacenter(b) })
}

func FuzzParseStats(f *testing.F) {
	addSeeds(f, "static_service_stats", `{"vm:1": {"maxcpu": "2"}}`)
	addSeeds(f, "dynamic_service_stats", `{"vm:1": {"cpu": 1.5, "mem": 1e9}}`)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseStats("static_service_stats", b, "maxcpu", "maxmem")
		_, _ = ParseStats("dynamic_service_stats", b, "cpu", "mem")
	})
}

func FuzzParseServiceStatus(f *testing.F) {
	f.Add([]byte(`{"vm:101": 1, "vm:102": 0}`))
	f.Add([]byte(`{"vm:101": "1"}`))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseServiceStatus("service_status_node1", b) })
}

func FuzzParseCommand(f *testing.F) {
	dirs, _ := filepath.Glob(filepath.Join(pveTestsDir, "*", "cmdlist"))
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		steps, err := ParseCmdlist(b)
		if err != nil {
			continue
		}
		for _, st := range steps {
			for _, c := range st {
				f.Add(c.Raw)
			}
		}
	}
	for _, s := range []string{"delay x", "skip-round lrm", "skip-round crm 99999999999999999999", "service vm:1 add node1 started 1",
		"service vm:1 set-static-stats maxcpu 1 maxmem", "crm node1 disarm-ha", "", "   "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommand(s)
		if c.Raw != s {
			t.Errorf("Raw = %q, want %q", c.Raw, s)
		}
		if err == nil && c.Verb != "delay" && c.Verb != "skip-round" && c.Object == "" {
			t.Errorf("%q accepted without object", s)
		}
		if (err == nil) != (c.ObjectErr == nil && c.Err == nil) {
			t.Errorf("%q: err %v but ObjectErr %v, Err %v", s, err, c.ObjectErr, c.Err)
		}
	})
}

// FuzzLoadScenario loads arbitrary scenario files and, when they load,
// replays them with trivial daemons: neither may panic, and a run must end.
func FuzzLoadScenario(f *testing.F) {
	dirs, _ := filepath.Glob(filepath.Join(pveTestsDir, "test-*"))
	for _, d := range dirs {
		read := func(name string) []byte { b, _ := os.ReadFile(filepath.Join(d, name)); return b }
		f.Add(read("cmdlist"), read("hardware_status"), read("service_config"), read("manager_status"))
	}
	f.Add([]byte(`[["service vm:1 add node1 started 1", "service vm:1 manual-migrate node1", "delay 9999999"]]`),
		[]byte(`{"node1": {"power": "on", "network": "on"}}`), []byte(`{}`), []byte(`{}`))
	f.Fuzz(func(t *testing.T, cmdlist, hw, svc, ms []byte) {
		fsys := fstest.MapFS{"cmdlist": {Data: cmdlist}}
		for name, b := range map[string][]byte{"hardware_status": hw, "service_config": svc, "manager_status": ms} {
			if len(b) > 0 {
				fsys[name] = &fstest.MapFile{Data: b}
			}
		}
		sc, err := LoadScenarioFS(fsys)
		if err != nil {
			if strings.TrimSpace(err.Error()) == "" {
				t.Error("empty error message")
			}
			return
		}
		lrm := func(d *fakeDaemon) {
			for _, sid := range []ha.SID{"vm:1", "vm:101"} {
				_ = d.env.ResourceAgent("vm").Start(t.Context(), sid)
			}
		}
		res, err := Run(sc, Options{Timing: ha.FastTiming(), Daemons: fakeFactory(nil, lrm)})
		if err != nil {
			return
		}
		round, _ := Units(ha.FastTiming())
		if res.End > 501*round+time.Duration(len(sc.Nodes))*round {
			t.Errorf("run ended at %v, after the maximum time", res.End)
		}
	})
}
