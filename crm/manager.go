package crm

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"haxd/ha"
)

// manager is the master's state: it exists only while its CRM is master and
// is created fresh on every takeover (ha-semantics §1.5). Of the stored
// manager status it keeps node_status, service_status, node_request and
// disarm; everything else (last_online, caches) starts empty.
type manager struct {
	env   ha.Env
	t     ha.Timing
	log   logger
	place placer

	loaded      bool
	nodeStatus  map[string]ha.NodeState
	services    map[ha.SID]*ha.ServiceStatus
	nodeRequest map[string]*ha.NodeRequest
	disarm      *ha.Disarm
	// lastOnline is when this master last saw each node online (§6.3).
	lastOnline map[string]time.Time
	// notFenced marks the offline nodes this master does not fence because
	// their lock was released with services running (fenceDelayed), so
	// that it says so once per absence.
	notFenced map[string]bool
	// fullyDisarmed reports that the last round found the stack fully
	// disarmed (§3.5, §8.7).
	fullyDisarmed bool
	// groupRound counts down the rounds to the next group migration try.
	groupRound int
	// pendingCmds are CRM commands the daemon read before this manager
	// existed; they are processed before the queue of the first round.
	pendingCmds []string
	// sids caches the sorted keys of services between rounds (sortedSIDs).
	sids []ha.SID
	// written is the service table of the last written manager status:
	// deep copies that the manager never modifies (writeStatus).
	written map[ha.SID]*ha.ServiceStatus

	// recheckedAt is when this master last asked the LRMs to re-assert
	// their running services (ha.Timing.ServiceCheckInterval).
	recheckedAt time.Time

	// Per round.
	now time.Time
	// recheck says that this round asks every LRM to re-assert each
	// started service it reported running (a new request UID).
	recheck   bool
	results   map[string]ha.LRMResult
	modes     map[string]ha.LRMMode
	lrmStates map[string]ha.LRMState
	resources map[ha.SID]*ha.ResourceConfig
	dc        *ha.Datacenter
	// failed records the first Env error of the round's state machine; the
	// round then ends without writing the manager status.
	failed error
}

func newManager(env ha.Env, t ha.Timing, log logger, place placer) *manager {
	return &manager{
		env: env, t: t, log: log, place: place,
		nodeStatus:  map[string]ha.NodeState{},
		services:    map[ha.SID]*ha.ServiceStatus{},
		nodeRequest: map[string]*ha.NodeRequest{},
		lastOnline:  map[string]time.Time{},
		notFenced:   map[string]bool{},
		groupRound:  groupMigrationFirstRound,
	}
}

// load takes over the stored manager status. The stored maps are copied so
// that the Env's copy changes only through WriteManagerStatus.
func (m *manager) load() error {
	ms, err := m.env.ReadManagerStatus()
	if err != nil {
		return err
	}
	if ms != nil {
		maps.Copy(m.nodeStatus, ms.NodeStatus)
		for sid, sd := range ms.ServiceStatus {
			if sd != nil {
				m.services[sid] = sd.Clone()
			}
		}
		for n, r := range ms.NodeRequest {
			if r != nil {
				c := *r
				m.nodeRequest[n] = &c
			}
		}
		if ms.Disarm != nil {
			d := *ms.Disarm
			m.disarm = &d
		}
	}
	m.loaded = true
	return nil
}

// manage runs one manage round (ha-semantics §3.6). A returned error comes
// unwrapped from the Env, because the daemon logs its text verbatim
// ("got unexpected error - <err>", §11.2).
func (m *manager) manage() error {
	if !m.loaded {
		if err := m.load(); err != nil {
			return err
		}
		// A new master states its scheduler mode before anything else
		// (PVE does so when the manager is created).
		dc, err := m.env.ReadDatacenter()
		if err != nil {
			return err
		}
		m.logLines(m.place.updateMode(dc))
	}
	m.now = m.env.Now()
	m.recheck = m.t.ServiceCheckInterval <= 0 || m.recheckedAt.IsZero() || m.now.Sub(m.recheckedAt) >= m.t.ServiceCheckInterval || m.now.Before(m.recheckedAt)
	if m.recheck {
		m.recheckedAt = m.now
	}
	m.failed = nil

	// Step 1: membership and LRM statuses.
	info := m.env.NodeInfo()
	if err := m.readLRMStatus(); err != nil {
		return err
	}
	// Step 2.
	m.updateNodes(info)
	// Step 3.
	if st := m.nodeStatus[m.env.NodeName()]; st != ha.NodeOnline && st != ha.NodeMaintenance {
		m.log.info("master seems offline")
		return nil
	}
	// Step 4: scheduler mode and group migration.
	dc, err := m.env.ReadDatacenter()
	if err != nil {
		return err
	}
	if dc == nil {
		dc = &ha.Datacenter{}
	}
	m.dc = dc
	m.logLines(m.place.updateMode(dc))
	m.migrateGroups()
	// Step 5.
	sc, err := m.env.ReadResources()
	if err != nil {
		return err
	}
	m.resources = make(map[ha.SID]*ha.ResourceConfig, len(sc))
	maps.Copy(m.resources, sc)
	rules, err := m.env.ReadRules()
	if err != nil {
		return err
	}
	groups, err := m.env.ReadGroups()
	if err != nil {
		return err
	}
	// Step 6.
	if m.disarm == nil {
		m.addRemoveServices()
	}
	// Step 7.
	m.logLines(m.place.beginRound(roundView{NodeStatus: m.nodeStatus, Services: m.services, Resources: m.resources, Datacenter: m.dc, Rules: rules, Groups: groups}))
	// Step 8.
	cmds, err := m.env.ReadCRMCommands()
	if err != nil {
		return err
	}
	cmds = append(m.pendingCmds, cmds...)
	m.pendingCmds = nil
	m.processCommands(cmds)
	// Step 9.
	var deferred map[ha.SID]bool
	if m.disarm != nil {
		var handled bool
		if handled, deferred = m.handleDisarm(); handled {
			return m.writeStatus()
		}
	} else {
		// Automatic rebalancing queues its move like an operator
		// command; basic placement never issues one.
		cmd, logs := m.place.autoRebalance()
		m.logLines(logs)
		if cmd != nil {
			m.queueMove(*cmd)
		}
	}
	// Step 10.
	m.fullyDisarmed = false
	// Step 11.
	m.fixpoint(deferred)
	if m.failed != nil {
		return m.failed
	}
	// Step 12.
	return m.writeStatus()
}

// readLRMStatus reads the LRM status of every known node: results merged
// by UID, and the mode of each node.
func (m *manager) readLRMStatus() error {
	m.results = map[string]ha.LRMResult{}
	m.modes = make(map[string]ha.LRMMode, len(m.nodeStatus))
	m.lrmStates = make(map[string]ha.LRMState, len(m.nodeStatus))
	for _, node := range slices.Sorted(maps.Keys(m.nodeStatus)) {
		st, err := m.env.ReadLRMStatus(node)
		if err != nil {
			return err
		}
		m.modes[node] = st.EffectiveMode()
		if st == nil {
			continue
		}
		m.lrmStates[node] = st.State
		for uid, res := range st.Results {
			if _, dup := m.results[uid]; !dup {
				m.results[uid] = res
			}
		}
	}
	return nil
}

// addRemoveServices is §3.6 step 6. Only the SIDs that are added or
// removed are sorted; the common round changes nothing.
func (m *manager) addRemoveServices() {
	var add, stale []ha.SID
	for sid, cd := range m.resources {
		if _, ok := m.services[sid]; !ok && cd.Requested() != ha.RequestIgnored {
			add = append(add, sid)
		}
	}
	for sid := range m.services {
		if cd := m.resources[sid]; cd == nil || cd.Requested() == ha.RequestIgnored {
			stale = append(stale, sid)
		}
	}
	slices.Sort(add)
	slices.Sort(stale)
	for _, sid := range add {
		cd := m.resources[sid]
		m.log.info(fmt.Sprintf("adding new service '%s' on node '%s'", sid, cd.Node), ha.KeySID, sid)
		state := ha.StateRequestStop
		if cd.Requested() == ha.RequestStarted {
			state = ha.StateRequestStart
		}
		m.services[sid] = &ha.ServiceStatus{State: state, Node: cd.Node, UID: m.env.UID()}
	}
	for _, sid := range stale {
		reason := "no config"
		if m.resources[sid] != nil {
			reason = "ignored state requested"
		}
		m.log.info(fmt.Sprintf("removing stale service '%s' (%s)", sid, reason), ha.KeySID, sid)
		delete(m.services, sid)
	}
}

// fixpoint is §3.6 step 11: the service pass and the fencing pass, repeated
// until a pass changes nothing. With deferred set, only those services take
// part (deferred disarm, §8.7).
func (m *manager) fixpoint(deferred map[ha.SID]bool) {
	sids := m.sortedSIDs()
	if deferred != nil {
		sids = slices.DeleteFunc(slices.Clone(sids), func(s ha.SID) bool { return !deferred[s] })
	}
	for {
		repeat := false
		for _, sid := range sids {
			sd := m.services[sid]
			last := sd.State
			m.handleService(sid, sd)
			if m.failed != nil {
				return
			}
			// §5.5.10: freeze on LRM restart.
			if m.modes[sd.Node] == ha.ModeRestart {
				switch sd.State {
				case ha.StateStarted, ha.StateStopped, ha.StateRequestStop:
					m.changeState(sid, sd, ha.StateFreeze)
				}
			}
			if sd.State != last {
				repeat = true
			}
		}
		// Fencing pass (§6.4).
		fenced := map[string]bool{}
		for _, sid := range sids {
			sd := m.services[sid]
			if sd.State != ha.StateFence {
				continue
			}
			ok, tried := fenced[sd.Node]
			if !tried {
				ok = m.fenceNode(sd.Node)
				fenced[sd.Node] = ok
			}
			if !ok {
				continue
			}
			m.changeState(sid, sd, ha.StateRecovery)
			repeat = true
		}
		for _, node := range slices.Sorted(maps.Keys(m.nodeStatus)) {
			if _, tried := fenced[node]; tried || m.nodeStatus[node] != ha.NodeFence {
				continue
			}
			m.log.notice(fmt.Sprintf("node '%s' in fence state but no services to-fence! admin interference?!", node), ha.KeyNode, node)
			if m.fenceNode(node) {
				repeat = true
			}
		}
		if !repeat {
			return
		}
	}
}

// sortedSIDs returns the SIDs of the service table, sorted. The slice is
// kept between rounds and sorted again only when the set of SIDs changed;
// callers must not modify it.
func (m *manager) sortedSIDs() []ha.SID { return ha.SortedSIDs(&m.sids, m.services) }

// writeStatus writes the manager status (§3.6 step 12). The written value
// is a deep copy, so later rounds cannot change what was written. A service
// whose status equals its last written copy shares that copy: the manager
// never modifies a written copy, and the comparison is against its content
// at this write, so the written table always equals the service table.
func (m *manager) writeStatus() error {
	ms := &ha.ManagerStatus{
		MasterNode:    m.env.NodeName(),
		Timestamp:     m.now.Unix(),
		NodeStatus:    maps.Clone(m.nodeStatus),
		ServiceStatus: make(map[ha.SID]*ha.ServiceStatus, len(m.services)),
	}
	for sid, sd := range m.services {
		if w := m.written[sid]; w != nil && sameStatus(w, sd) {
			ms.ServiceStatus[sid] = w
		} else {
			ms.ServiceStatus[sid] = sd.Clone()
		}
	}
	m.written = ms.ServiceStatus
	for n, r := range m.nodeRequest {
		if r != nil && *r != (ha.NodeRequest{}) {
			if ms.NodeRequest == nil {
				ms.NodeRequest = map[string]*ha.NodeRequest{}
			}
			c := *r
			ms.NodeRequest[n] = &c
		}
	}
	if m.disarm != nil {
		d := *m.disarm
		ms.Disarm = &d
	}
	return m.env.WriteManagerStatus(ms)
}

// sameStatus reports whether a and b hold the same service status, pointed-to
// values and failed nodes included (nil and empty failed nodes are equal, as
// ServiceStatus.Clone makes them). TestSameStatusCoversEveryField keeps it in
// step with ha.ServiceStatus.
func sameStatus(a, b *ha.ServiceStatus) bool {
	return a.State == b.State && a.Node == b.Node && a.UID == b.UID && a.Target == b.Target &&
		a.Running == b.Running && a.MaintenanceNode == b.MaintenanceNode &&
		samePtr(a.Timeout, b.Timeout) && samePtr(a.Cmd, b.Cmd) && slices.Equal(a.FailedNodes, b.FailedNodes)
}

// samePtr reports whether a and b are both nil or point to equal values.
func samePtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// setNodeState changes a node state, logging the change (§6.1).
func (m *manager) setNodeState(node string, st ha.NodeState) {
	old, ok := m.nodeStatus[node]
	if !ok {
		old = ha.NodeUnknown
	}
	if ok && old == st {
		return
	}
	m.nodeStatus[node] = st
	if old == st {
		return
	}
	m.log.info(fmt.Sprintf("node '%s': state changed from '%s' => '%s'", node, old, st), ha.KeyNode, node)
}

func (m *manager) nodeState(node string) ha.NodeState {
	if st, ok := m.nodeStatus[node]; ok {
		return st
	}
	return ha.NodeUnknown
}

func (m *manager) online(node string) bool { return m.nodeState(node) == ha.NodeOnline }

// updateNodes is the node state update of §6.2.
func (m *manager) updateNodes(info map[string]ha.NodeInfo) {
	for _, node := range slices.Sorted(maps.Keys(info)) {
		if !info[node].Online {
			continue
		}
		m.lastOnline[node] = m.now
		mode := m.modes[node]
		switch m.nodeState(node) {
		case ha.NodeOnline:
			if mode == ha.ModeMaintenance {
				m.setNodeState(node, ha.NodeMaintenance)
			}
		case ha.NodeUnknown, ha.NodeGone:
			m.setNodeState(node, ha.NodeOnline)
		case ha.NodeMaintenance:
			if mode != ha.ModeMaintenance {
				m.setNodeState(node, ha.NodeOnline)
			}
		}
	}
	for _, node := range slices.Sorted(maps.Keys(m.nodeStatus)) {
		d, member := info[node]
		if member && d.Online {
			continue
		}
		switch m.nodeStatus[node] {
		case ha.NodeOnline:
			m.setNodeState(node, ha.NodeUnknown)
		case ha.NodeMaintenance:
			if m.modes[node] != ha.ModeMaintenance {
				m.setNodeState(node, ha.NodeUnknown)
			}
		case ha.NodeUnknown:
			if !member {
				m.setNodeState(node, ha.NodeGone)
			}
		case ha.NodeGone:
			if m.offlineDelayed(node, m.t.GoneNodeDelete) {
				m.log.notice(fmt.Sprintf("deleting gone node '%s', not a cluster member anymore.", node), ha.KeyNode, node)
				delete(m.lastOnline, node)
				delete(m.nodeStatus, node)
			}
		}
	}
}

// offlineDelayed is §6.3: whether node has not been seen online for delay.
func (m *manager) offlineDelayed(node string, delay time.Duration) bool {
	if m.nodeState(node) == ha.NodeOnline {
		return false
	}
	last, ok := m.lastOnline[node]
	if !ok {
		m.lastOnline[node] = m.now
		return false
	}
	return m.now.Sub(last) >= delay
}

// fenceDelayed reports whether the services of node must now be fenced:
// the node has been offline for the fence delay (§6.3) and its agent lock
// can prove a self-fence.
// A node passed over for that reason is logged once per absence.
func (m *manager) fenceDelayed(node string) bool {
	if !m.offlineDelayed(node, m.t.FenceDelay) {
		delete(m.notFenced, node)
		return false
	}
	if !m.unprotected(node) {
		delete(m.notFenced, node)
		return true
	}
	if !m.notFenced[node] {
		m.notFenced[node] = true
		m.log.warn(fmt.Sprintf("not fencing node '%s': its LRM released its agent lock with services running, which proves nothing; its services wait for it to take its lock again", node), ha.KeyNode, node)
	}
	return false
}

// unprotected reports whether node's agent lock was released by node itself
// while its services may still run (a disarm, an LRM restart: anything but
// a clean stop of all its services), and not taken since. Such a lock was
// given up, not taken away: it proves nothing about those services, and the
// lock refuses it to everyone but node. Its services are therefore not
// fenced while node is away; like frozen services they wait until node
// takes its lock again, after which the lock times out as usual. The rule
// lives in the lock (Env.AgentLockReleasedRunning), not in the node's last
// LRM status, which may be stale: an LRM writes its status after it
// released its lock, and a node cut off in between still reads active.
// haxd addition: PVE fences such a node after arm-ha and can run its
// services twice.
func (m *manager) unprotected(node string) bool {
	return m.env.AgentLockReleasedRunning(node)
}

// fenceNode is §6.4. Taking the node's agent lock is the only proof that
// the node is fenced; nothing is recovered before it succeeded. The lock
// is granted after the lock TTL (the node fenced itself), or at once when
// a fence device confirmed the node powered off and the store recorded
// it (haxd extension, ha-semantics §6.8): FenceNode starts and follows
// that job, without blocking, before every attempt at the lock.
func (m *manager) fenceNode(node string) bool {
	if m.nodeState(node) != ha.NodeFence {
		m.setNodeState(node, ha.NodeFence)
		m.env.Notify(ha.NotifyFence, fmt.Sprintf("Try to fence node '%s'", node))
	}
	fr := m.env.FenceNode(node)
	if !m.holdsAgentLock(node) {
		if m.unprotected(node) {
			m.unfence(node)
		}
		return false
	}
	if fr.Status == ha.FenceConfirmed {
		m.log.info(fmt.Sprintf("fencing: fence device '%s' confirmed node '%s' powered off", fr.Device, node), ha.KeyNode, node)
	}
	msg := fmt.Sprintf("fencing: acknowledged - got agent lock for node '%s'", node)
	m.log.info(msg, ha.KeyNode, node)
	m.setNodeState(node, ha.NodeUnknown)
	m.env.Notify(ha.NotifySucceed, msg)
	return true
}

// unfence gives up fencing node because its agent lock was released with
// services running after the fencing began (the node could still reach the
// store while the CRM saw it offline). Taking that lock would prove
// nothing, and the node's LRM does not take its lock while services of it
// are to be fenced, so waiting in fence would wait forever. Its services
// are frozen instead: they stay where they are until the node's LRM is
// active again and takes its lock (§5.5.9), and the node is unknown again.
func (m *manager) unfence(node string) {
	m.log.warn(fmt.Sprintf("not fencing node '%s': its LRM released its agent lock with services running, which proves nothing; its services wait for it to take its lock again", node), ha.KeyNode, node)
	m.notFenced[node] = true
	for _, sid := range m.sortedSIDs() {
		if sd := m.services[sid]; sd.Node == node && sd.State == ha.StateFence {
			m.changeState(sid, sd, ha.StateFreeze)
		}
	}
	m.setNodeState(node, ha.NodeUnknown)
}

// logLines logs the lines a placer returned, in order.
func (m *manager) logLines(lines []logLine) {
	for _, l := range lines {
		m.log.at(l.level, l.msg)
	}
}

// fail records the first Env error of the state machine.
func (m *manager) fail(err error) {
	if m.failed == nil {
		m.failed = err
	}
}

// joinNodes renders a node list as the logs do.
func joinNodes(nodes []string) string { return strings.Join(nodes, ", ") }

// holdsAgentLock takes or refreshes node's agent lock for this master
// (ha.Env.AcquireAgentLock) and reports whether it holds it; the grant's
// validity is the holder LRM's business, not the master's.
func (m *manager) holdsAgentLock(node string) bool {
	_, ok := m.env.AcquireAgentLock(node)
	return ok
}
