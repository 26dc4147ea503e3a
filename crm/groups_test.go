package crm

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"haxd/ha"
)

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"9.0.0~16", "9.0.0~16", 0},
		{"9.0.0~15", "9.0.0~16", -1},
		{"9.0.0~17", "9.0.0~16", 1},
		{"9.0.0", "9.0.0~16", 1},
		{"9.0.1", "9.0.0~16", 1},
		{"8.4.1", "9.0.0~16", -1},
		{"7.4-4", "9.0.0~16", -1},
		{"9.1.2", "9.0.0~16", 1},
		{"9.0.0~2", "9.0.0~16", -1},
		{"10.0", "9.9", 1},
		{"", "9.0.0~16", -1},
	} {
		if got := compareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := compareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

const testGroups = "group: group1\n\tnodes node1\n\trestricted 1\n\ngroup: group2\n\tnodes node2:2,node3\n\tnofailback 1\n"

func TestGroupMigration(t *testing.T) {
	for _, tc := range []struct {
		name     string
		versions map[string]string
		mode3    ha.LRMMode
		want     []string
		migrated bool
	}{
		{
			name:     "old node aborts",
			versions: map[string]string{"node1": "9.1.2", "node2": "9.0.0~16", "node3": "8.4.1"},
			want: []string{
				"noti start ha group migration...",
				"noti ha groups migration: node 'node1' is in state 'online'",
				"noti ha groups migration: lrm 'node1' is in state 'active' and mode 'active'",
				"noti ha groups migration: node 'node1' has version '9.1.2'",
				"noti ha groups migration: node 'node3' has version '8.4.1'",
				"err abort ha groups migration: node 'node3' needs at least pve-manager version '9.0.0~16'",
				"err ha groups migration failed",
				"noti retry ha groups migration in 6 rounds (~ 60 seconds)",
			},
		},
		{
			name:     "restarting lrm aborts",
			versions: map[string]string{"node1": "9.0.0", "node2": "9.0.0", "node3": "9.0.0"},
			mode3:    ha.ModeRestart,
			want: []string{
				"noti ha groups migration: lrm 'node3' is in state 'active' and mode 'restart'",
				"err abort ha groups migration: lrm 'node3' is not in mode 'active'",
			},
		},
		{
			name:     "all nodes ready",
			versions: map[string]string{"node1": "9.0.0", "node2": "9.0.0", "node3": "9.0.1"},
			want: []string{
				"noti ha groups migration: node 'node3' has version '9.0.1'",
				"noti ha groups migration: migration to rules config successful",
				"noti ha groups migration: migration to resources config successful",
				"noti ha groups migration: group config deletion successful",
				"noti ha groups migration successful",
			},
			migrated: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := threeNodes()
			e.versions = tc.versions
			e.groups = []byte(testGroups)
			e.addService("vm:101", "node1", ha.RequestStarted).Group = "group1"
			e.addService("vm:102", "node2", ha.RequestStarted).Group = "group2"
			for _, n := range []string{"node1", "node2", "node3"} {
				e.lrm[n] = &ha.LRMStatus{State: ha.LRMActive, Mode: ha.ModeActive}
			}
			if tc.mode3 != "" {
				e.lrm["node3"].Mode = tc.mode3
			}
			c := startMaster(t, e)
			var logs []string
			for i := 0; i < 2; i++ {
				logs = append(logs, round(t, e, c)...)
			}
			// The first attempt is in the third round of the master.
			assertLogs(t, logs, tc.want)
			if got := len(e.migrated) == 3; got != tc.migrated {
				t.Fatalf("migrated %v, want %v", e.migrated, tc.migrated)
			}
			if !tc.migrated {
				return
			}
			wantRules := "node-affinity: ha-group-group1\n\tcomment Generated from HA group 'group1'.\n\tnodes node1\n\tresources vm:101\n\tstrict 1\n\n" +
				"node-affinity: ha-group-group2\n\tcomment Generated from HA group 'group2'.\n\tnodes node2:2,node3\n\tresources vm:102\n\tstrict 0\n"
			if string(e.rules) != wantRules {
				t.Errorf("rules written:\n%s\nwant:\n%s", e.rules, wantRules)
			}
			if c := e.resources["vm:102"]; c.Group != "" || c.Failback {
				t.Errorf("vm:102 after migration: group %q failback %v, want none and false", c.Group, c.Failback)
			}
			// No groups left: no further attempts.
			for i := 0; i < 7; i++ {
				assertNoLog(t, round(t, e, c), "group")
			}
		})
	}
}

func TestGroupMigrationRetriesEverySixRounds(t *testing.T) {
	e := threeNodes()
	e.groups = []byte(testGroups)
	e.addService("vm:101", "node1", ha.RequestStarted).Group = "group1"
	c := startMaster(t, e)
	var tries []int
	for r := 2; r <= 16; r++ {
		for _, l := range round(t, e, c) {
			if strings.HasPrefix(l, "noti start ha group migration") {
				tries = append(tries, r)
			}
		}
	}
	if want := []int{3, 9, 15}; !slices.Equal(tries, want) {
		t.Errorf("migration tried in rounds %v, want %v", tries, want)
	}
}

// readyForMigration makes every node online, active and rules-capable.
func readyForMigration(e *fakeEnv) {
	e.versions = map[string]string{"node1": "9.0.0", "node2": "9.0.0", "node3": "9.0.0"}
	for _, n := range []string{"node1", "node2", "node3"} {
		e.lrm[n] = &ha.LRMStatus{State: ha.LRMActive, Mode: ha.ModeActive}
	}
}

// A group that no service uses yet is neither migrated nor deleted (issue
// 10: `ha groups set` then `ha set SID --group g` lost the group in
// between); a used group is migrated as PVE does, next to it.
func TestGroupMigrationKeepsGroupsNoServiceUses(t *testing.T) {
	const unused = "group: spare\n\tnodes node3:5\n\trestricted 1\n"
	for _, tc := range []struct {
		name       string
		useGroup1  bool
		wantTried  bool
		wantGroups string
		wantLog    string
	}{
		{name: "no group used: nothing to migrate", wantGroups: testGroups + "\n" + unused},
		{name: "one group used: only it is migrated", useGroup1: true, wantTried: true,
			wantGroups: "group: group2\n\tnofailback 1\n\tnodes node2:2,node3\n\ngroup: spare\n\tnodes node3:5\n\trestricted 1\n",
			wantLog:    "noti ha groups migration: kept group(s) 'group2', 'spare' that no service uses yet in the group config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := threeNodes()
			readyForMigration(e)
			e.groups = []byte(testGroups + "\n" + unused)
			s := e.addService("vm:101", "node1", ha.RequestStarted)
			if tc.useGroup1 {
				s.Group = "group1"
			}
			c := startMaster(t, e)
			var logs []string
			for range 8 {
				logs = append(logs, round(t, e, c)...)
			}
			tried := slices.Contains(logs, "noti start ha group migration...")
			if tried != tc.wantTried {
				t.Fatalf("migration tried %v, want %v; logs:\n%s", tried, tc.wantTried, strings.Join(logs, "\n"))
			}
			if string(e.groups) != tc.wantGroups {
				t.Errorf("groups config:\n%s\nwant:\n%s", e.groups, tc.wantGroups)
			}
			if !tc.wantTried {
				return
			}
			assertLogs(t, logs, []string{tc.wantLog, "noti ha groups migration successful"})
			assertNoLog(t, logs, "group config deletion")
			want := "node-affinity: ha-group-group1\n\tcomment Generated from HA group 'group1'.\n\tnodes node1\n\tresources vm:101\n\tstrict 1\n"
			if string(e.rules) != want {
				t.Errorf("rules:\n%s\nwant:\n%s", e.rules, want)
			}
			// The kept groups are not tried again while no service uses them.
			for range 7 {
				assertNoLog(t, round(t, e, c), "group migration")
			}
		})
	}
}

// A migration whose write is refused (the configs changed since the master
// read them, or it lost its term) is aborted and tried again 6 rounds
// later, with nothing half written.
func TestGroupMigrationRefusedWriteIsRetried(t *testing.T) {
	e := threeNodes()
	readyForMigration(e)
	e.groups = []byte(testGroups)
	e.addService("vm:101", "node1", ha.RequestStarted).Group = "group1"
	e.addService("vm:102", "node2", ha.RequestStarted).Group = "group2"
	e.failMigration = fmt.Errorf("write group migration: migrate_groups: the rules config changed since it was read: conflicting state")
	c := startMaster(t, e)
	var logs []string
	for range 2 {
		logs = append(logs, round(t, e, c)...)
	}
	assertLogs(t, logs, []string{
		"err abort ha groups migration: write group migration: migrate_groups: the rules config changed since it was read: conflicting state",
		"err ha groups migration failed",
		"noti retry ha groups migration in 6 rounds (~ 60 seconds)",
	})
	assertNoLog(t, logs, "migration to rules config successful")
	if string(e.groups) != testGroups || len(e.rules) != 0 || e.resources["vm:101"].Group != "group1" {
		t.Fatalf("a refused migration changed the configs: groups %q rules %q", e.groups, e.rules)
	}
	e.failMigration = nil
	logs = nil
	for range 6 {
		logs = append(logs, round(t, e, c)...)
	}
	assertLogs(t, logs, []string{"noti ha groups migration: group config deletion successful", "noti ha groups migration successful"})
	if len(e.groups) != 0 || e.resources["vm:101"].Group != "" {
		t.Fatalf("after the retry: groups %q, vm:101 group %q", e.groups, e.resources["vm:101"].Group)
	}
}
