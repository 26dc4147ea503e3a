package fence

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"haxd/clock"
	"haxd/unixsock"
)

// DefaultSocketPath is where `haxd guard` listens unless told otherwise.
const DefaultSocketPath = "/run/haxd/guard.sock"

// protocolVersion is the version in the guard's greeting. Version 2 made
// "arm" and "feed" carry the expiry of the agent's lock validity.
const protocolVersion = 2

// GuardConfig configures a Guard.
type GuardConfig struct {
	// SocketPath is the unix socket the agent connects to. The guard
	// creates it with mode 0600 and refuses to start when another guard
	// answers on it. Required.
	SocketPath string
	// WatchdogTimeout is how long an armed client may go without a feed
	// before the guard kills every service. It must equal (or be less
	// than) the agent's watchdog_timeout in the safety inequality
	// (docs/safety.md). Required.
	WatchdogTimeout time.Duration
	// SelfFenceTime bounds how long the guard keeps re-killing and
	// checking targets after it fenced, and logs which ones survived.
	// 0 means 1 s.
	SelfFenceTime time.Duration
	// Device is an optional watchdog device (e.g. /dev/watchdog). The
	// guard opens (arms) it once at start, sets its timeout, feeds it
	// every DeviceKeepalive while no armed client expired, stops feeding
	// it when it fences (the machine resets) and disarms it with the magic
	// close only on a clean stop with no client armed. Empty: no device.
	Device string
	// DeviceTimeout is the timeout requested from the device with
	// WDIOC_SETTIMEOUT (whole seconds; softdog allows 1..65535 s). 0 means
	// SelfFenceTime rounded up to whole seconds, at least 1 s: with a
	// device, the reset is the self-fence. The guard reads the timeout
	// back (WDIOC_GETTIMEOUT) and refuses to start when
	// CheckDeviceTimeout refuses the driver's timeout.
	DeviceTimeout time.Duration
	// DeviceKeepalive is the period of device feeds. It must be less than
	// half of the device's timeout. 0 means 1 s.
	DeviceKeepalive time.Duration
	// OpenDevice opens Device; nil means OpenWatchdogFile (the real
	// ioctls). Tests pass a fake.
	OpenDevice OpenDeviceFunc
	// CheckDeviceTimeout decides whether the device timeout the driver
	// granted (after being asked for requested) keeps the safety
	// inequality; with a Device it is required. `haxd guard` passes
	// ha.Timing.CheckDeviceTimeout of the agent's timing: a frozen
	// guard's last device feed can come as late as a client's deadline,
	// and the reset follows one device timeout later.
	CheckDeviceTimeout func(device string, requested, granted time.Duration) error
	// Cgroups are cgroup v2 directories killed on every fence, in addition
	// to what clients register (e.g. a slice holding all services).
	Cgroups []string
	// PGIDs are process groups killed on every fence, in addition to what
	// clients register.
	PGIDs []int
	// MaxClients caps the connections (watchdog handles) at once.
	// 0 means 16.
	MaxClients int
	// Clock decides every timing, and its Mono is the clock of the
	// expiries clients send with "arm" and "feed"; nil means
	// clock.System.
	Clock clock.Clock
}

// Validate reports the first field that cannot work.
func (c GuardConfig) Validate() error {
	if c.SocketPath == "" {
		return errors.New("guard socket_path: must not be empty")
	}
	if c.WatchdogTimeout <= 0 {
		return fmt.Errorf("guard watchdog_timeout: expected a positive duration, found %v", c.WatchdogTimeout)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"self_fence_time", c.SelfFenceTime}, {"device_timeout", c.DeviceTimeout}, {"device_keepalive", c.DeviceKeepalive}} {
		if d.v < 0 {
			return fmt.Errorf("guard %s: expected a duration >= 0, found %v", d.name, d.v)
		}
	}
	if c.DeviceTimeout > 0 && c.DeviceTimeout < time.Second {
		return fmt.Errorf("guard device_timeout %v: watchdog devices count whole seconds, expected >= 1s", c.DeviceTimeout)
	}
	if c.DeviceTimeout > 0 && c.keepalive() >= c.DeviceTimeout/2 {
		return fmt.Errorf("guard device_keepalive (%v): must be less than half of device_timeout (%v)", c.keepalive(), c.DeviceTimeout)
	}
	if c.Device != "" && c.CheckDeviceTimeout == nil {
		return fmt.Errorf("guard device %s: the agent's timing is required to check the device timeout against the safety inequality", c.Device)
	}
	if c.MaxClients < 0 {
		return fmt.Errorf("guard max_clients %d: expected >= 0", c.MaxClients)
	}
	for _, t := range c.staticTargets() {
		if err := t.checkSyntax(); err != nil {
			return fmt.Errorf("guard: %w", err)
		}
	}
	return nil
}

func (c GuardConfig) keepalive() time.Duration {
	if c.DeviceKeepalive == 0 {
		return time.Second
	}
	return c.DeviceKeepalive
}

// RequestedDeviceTimeout is the timeout the guard requests from its
// device: DeviceTimeout, or SelfFenceTime rounded up to whole seconds, at
// least 1 s.
func (c GuardConfig) RequestedDeviceTimeout() time.Duration {
	if c.DeviceTimeout > 0 {
		return c.DeviceTimeout
	}
	return max(time.Second, (c.SelfFenceTime+time.Second-1)/time.Second*time.Second)
}

func (c GuardConfig) selfFenceTime() time.Duration {
	if c.SelfFenceTime == 0 {
		return time.Second
	}
	return c.SelfFenceTime
}

func (c GuardConfig) staticTargets() []Target {
	var ts []Target
	for _, p := range c.PGIDs {
		ts = append(ts, PGID(p))
	}
	for _, d := range c.Cgroups {
		ts = append(ts, Cgroup(d))
	}
	return ts
}

// Guard is the self-fencing watchdog process. Create it with Listen, run
// it with Serve.
type Guard struct {
	cfg    GuardConfig
	logger *slog.Logger
	clock  clock.Clock
	ln     *net.UnixListener
	dev    *Device
	// check, kill and alive act on targets; tests replace them.
	check func(Target) error
	kill  func(Target) error
	alive func(Target) (bool, error)

	wake chan struct{}
	wg   sync.WaitGroup

	mu            sync.Mutex
	handles       map[uint64]*handle
	conns         map[net.Conn]struct{}
	nextID        uint64
	fences        int
	deviceStopped bool
	stopping      bool
}

// handle is one client connection's watchdog. It is armed by the
// client's first "arm", "feed" or "fence", so that a connection that says
// nothing (a probe) arms nothing. Targets registered before that are
// killed by any fence but forgotten if the connection ends unarmed.
type handle struct {
	id        uint64
	armed     bool
	deadline  time.Time
	targets   []Target
	connected bool
	fenced    bool
}

// newGuard returns a Guard for cfg without socket or device: Listen
// adds them, tests drive its enforcement directly.
func newGuard(cfg GuardConfig, logger *slog.Logger) *Guard {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Guard{
		cfg:     cfg,
		logger:  logger,
		clock:   cfg.Clock,
		check:   Target.validate,
		kill:    Target.kill,
		alive:   Target.alive,
		wake:    make(chan struct{}, 1),
		handles: map[uint64]*handle{},
		conns:   map[net.Conn]struct{}{},
	}
	if g.clock == nil {
		g.clock = clock.System{}
	}
	return g
}

// Listen validates cfg, opens (arms) the watchdog device if one is
// configured and binds the socket. logger may be nil.
func Listen(cfg GuardConfig, logger *slog.Logger) (*Guard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := newGuard(cfg, logger)
	logger = g.logger
	for _, t := range cfg.staticTargets() {
		if err := t.validate(); err != nil {
			logger.Warn("guard: static target not usable now, will still try it when fencing", "target", t.String(), "err", err)
		}
	}
	ln, err := unixsock.Listen(cfg.SocketPath, 0o600, 0o700)
	if err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	g.ln = ln
	if cfg.Device != "" {
		want := cfg.RequestedDeviceTimeout()
		dev, err := OpenDevice(cfg.Device, want, cfg.OpenDevice)
		if err != nil {
			ln.Close()
			return nil, err
		}
		err = cfg.CheckDeviceTimeout(cfg.Device, want, dev.Timeout())
		if err == nil && cfg.keepalive() >= dev.Timeout()/2 {
			err = fmt.Errorf("watchdog device %s: device_keepalive (%v) must be less than half of the granted timeout %v (requested %v)", cfg.Device, cfg.keepalive(), dev.Timeout(), want)
		}
		if err != nil {
			// No client can be armed yet: disarming guards nothing less.
			if derr := dev.Disarm(); derr != nil {
				err = errors.Join(err, derr)
			}
			ln.Close()
			return nil, err
		}
		logger.Info("guard: watchdog device armed", "device", cfg.Device, "identity", dev.Info().Identity,
			"requested_timeout", want, "timeout", dev.Timeout(), "keepalive", cfg.keepalive())
		g.dev = dev
	}
	logger.Info("guard listening", "socket", cfg.SocketPath, "watchdog_timeout", cfg.WatchdogTimeout, "device", cfg.Device)
	return g, nil
}

// Addr is the socket path the guard listens on.
func (g *Guard) Addr() string { return g.cfg.SocketPath }

// Fences returns how many times the guard has fenced.
func (g *Guard) Fences() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.fences
}

// Serve accepts clients and enforces their deadlines until ctx is done.
// On the way out it fences if any client is still armed (the services
// would be unguarded otherwise), and disarms the device only if it never
// fenced. It returns nil after ctx is done.
func (g *Guard) Serve(ctx context.Context) error {
	g.wg.Add(1)
	go g.acceptLoop()
	g.enforce(ctx)
	return nil
}

// enforce fences when an armed handle passes its deadline and feeds the
// device, until ctx is done; then it shuts the guard down.
func (g *Guard) enforce(ctx context.Context) {
	var keepalive clock.Timer
	if g.dev != nil {
		keepalive = g.clock.NewTimer(g.cfg.keepalive())
	}
	for {
		var expiry clock.Timer
		var expiryC, keepaliveC <-chan time.Time
		if next, ok := g.nextDeadline(); ok {
			expiry = g.clock.NewTimer(max(0, next.Sub(g.clock.Now())))
			expiryC = expiry.C()
		}
		if keepalive != nil {
			keepaliveC = keepalive.C()
		}
		select {
		case <-ctx.Done():
			if expiry != nil {
				expiry.Stop()
			}
			if keepalive != nil {
				keepalive.Stop()
			}
			g.shutdown()
			return
		case <-expiryC:
			g.checkExpiry()
		case <-keepaliveC:
			g.feedDevice()
			keepalive = g.clock.NewTimer(g.cfg.keepalive())
		case <-g.wake:
		}
		if expiry != nil {
			expiry.Stop()
		}
	}
}

func (g *Guard) nextDeadline() (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var next time.Time
	found := false
	for _, h := range g.handles {
		if h.armed && !h.fenced && (!found || h.deadline.Before(next)) {
			next, found = h.deadline, true
		}
	}
	return next, found
}

func (g *Guard) poke() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// feedDevice feeds the device unless a handle expired: an expiry due at
// the same instant as the keepalive is handled first.
func (g *Guard) feedDevice() {
	g.checkExpiry()
	g.mu.Lock()
	stopped := g.deviceStopped
	g.mu.Unlock()
	if stopped {
		return
	}
	if err := g.dev.Keepalive(); err != nil {
		g.logger.Error("guard: cannot feed watchdog device", "err", err)
	}
}

// checkExpiry fences if any armed handle is past its deadline.
func (g *Guard) checkExpiry() {
	g.mu.Lock()
	now := g.clock.Now()
	var late []string
	for _, id := range slices.Sorted(maps.Keys(g.handles)) {
		h := g.handles[id]
		if h.armed && !h.fenced && !now.Before(h.deadline) {
			late = append(late, strconv.FormatUint(id, 10))
		}
	}
	var targets []Target
	if len(late) > 0 {
		targets = g.fenceLocked("watchdog expired: client " + strings.Join(late, ", ") + " not fed for " + g.cfg.WatchdogTimeout.String())
	}
	g.mu.Unlock()
	if len(late) > 0 {
		g.verify(targets)
	}
}

// fenceLocked kills every target of every live handle and the static
// targets, marks every handle fenced and stops feeding the device. It
// returns the targets for verify. g.mu must be held.
func (g *Guard) fenceLocked(reason string) []Target {
	g.fences++
	var targets []Target
	for _, id := range slices.Sorted(maps.Keys(g.handles)) {
		h := g.handles[id]
		if !h.fenced {
			targets = append(targets, h.targets...)
		}
		h.fenced = true
		if !h.connected {
			delete(g.handles, id)
		}
	}
	targets = append(targets, g.cfg.staticTargets()...)
	targets = sortTargets(targets)
	g.logger.Error("guard: self-fence, killing every service", "reason", reason, "targets", len(targets))
	for _, t := range targets {
		if err := g.kill(t); err != nil {
			g.logger.Error("guard: kill failed", "target", t.String(), "err", err)
		} else {
			g.logger.Info("guard: killed", "target", t.String())
		}
	}
	if g.dev != nil && !g.deviceStopped {
		g.deviceStopped = true
		g.logger.Error("guard: watchdog device no longer fed, the machine will reset", "device", g.cfg.Device)
	}
	return targets
}

// verify re-kills targets until none is alive or SelfFenceTime passed, in
// the background, and logs the outcome.
func (g *Guard) verify(targets []Target) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		deadline := g.clock.Now().Add(g.cfg.selfFenceTime())
		for {
			var alive []string
			for _, t := range targets {
				ok, err := g.alive(t)
				if err != nil || ok {
					alive = append(alive, t.String())
					g.kill(t) //nolint:errcheck // logged when the time is up
				}
			}
			if len(alive) == 0 {
				g.logger.Info("guard: self-fence complete, no registered service is alive", "targets", len(targets))
				return
			}
			if !g.clock.Now().Before(deadline) {
				g.logger.Error("guard: services survived the self-fence", "alive", strings.Join(alive, "; "), "self_fence_time", g.cfg.selfFenceTime())
				return
			}
			t := g.clock.NewTimer(20 * time.Millisecond)
			<-t.C()
		}
	}()
}

func (g *Guard) acceptLoop() {
	defer g.wg.Done()
	for {
		conn, err := g.ln.Accept()
		if err != nil {
			g.mu.Lock()
			stopping := g.stopping
			g.mu.Unlock()
			if !stopping {
				g.logger.Error("guard: accept", "err", err)
			}
			return
		}
		g.mu.Lock()
		if g.stopping {
			g.mu.Unlock()
			conn.Close()
			return
		}
		g.conns[conn] = struct{}{}
		g.wg.Add(1)
		g.mu.Unlock()
		go g.serveConn(conn)
	}
}

// arm creates the handle of a new connection, or returns nil when there
// are too many.
func (g *Guard) arm() *handle {
	g.mu.Lock()
	defer g.mu.Unlock()
	max := g.cfg.MaxClients
	if max == 0 {
		max = 16
	}
	if len(g.handles) >= max {
		return nil
	}
	g.nextID++
	h := &handle{id: g.nextID, connected: true}
	g.handles[h.id] = h
	return h
}

func (g *Guard) serveConn(conn net.Conn) {
	defer g.wg.Done()
	defer func() {
		g.mu.Lock()
		delete(g.conns, conn)
		g.mu.Unlock()
		conn.Close()
	}()
	write := func(s string) bool {
		conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, err := conn.Write([]byte(s + "\n"))
		return err == nil
	}
	pid, uid, err := peerCred(conn)
	if err != nil || (uid != 0 && uid != os.Getuid()) {
		g.logger.Warn("guard: client refused: not root or the guard's user", "uid", uid, "pid", pid, "err", err)
		write("err permission denied")
		return
	}
	h := g.arm()
	if h == nil {
		g.logger.Warn("guard: client refused, too many clients")
		write("err too many clients")
		return
	}
	log := g.logger.With("client", h.id, "pid", pid)
	log.Debug("guard: client connected")
	closed := false
	defer func() {
		if !closed {
			g.disconnect(h, log)
		}
	}()
	if !write(fmt.Sprintf("haxd-guard %d timeout_ms=%d", protocolVersion, g.cfg.WatchdogTimeout.Milliseconds())) {
		return
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 4096), 4096)
	for sc.Scan() {
		reply, done := g.command(h, strings.TrimSpace(sc.Text()), log)
		if done {
			closed = true
		}
		if !write(reply) || done {
			return
		}
	}
}

// disconnect handles a connection that ended without "close": an armed
// handle stays armed and expires at its deadline.
func (g *Guard) disconnect(h *handle, log *slog.Logger) {
	g.mu.Lock()
	defer g.mu.Unlock()
	h.connected = false
	if h.fenced || !h.armed || g.stopping {
		delete(g.handles, h.id)
		return
	}
	log.Warn("guard: client went away without closing, it expires unless it was fed in time", "deadline_in", h.deadline.Sub(g.clock.Now()))
}

// deadlineFor returns the deadline a feed with the given expiry earns: one
// WatchdogTimeout after the feed, but never later than one WatchdogTimeout
// after the expiry (CLOCK_MONOTONIC nanoseconds, the end of the agent's
// lock validity). A feed that arrives late, after the expiry, so counts as
// if it had arrived at the expiry: a client stalled between checking its
// validity and feeding earns nothing beyond the safety bound.
func (g *Guard) deadlineFor(expiry int64) time.Time {
	now := g.clock.Now()
	if mono := g.clock.Mono(); expiry < mono {
		now = now.Add(-time.Duration(mono - expiry))
	}
	return now.Add(g.cfg.WatchdogTimeout)
}

// parseExpiry reads the expiry argument of "arm" and "feed".
func parseExpiry(verb, arg string) (int64, error) {
	n, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s %q: expected the lock's validity end in CLOCK_MONOTONIC nanoseconds (protocol %d)", verb, arg, protocolVersion)
	}
	return n, nil
}

// armOnce arms h on its first command, with deadline unless it is zero,
// else one WatchdogTimeout from now.
func (g *Guard) armOnce(h *handle, deadline time.Time, log *slog.Logger) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if h.armed || h.fenced {
		return
	}
	if deadline.IsZero() {
		deadline = g.clock.Now().Add(g.cfg.WatchdogTimeout)
	}
	h.armed = true
	h.deadline = deadline
	log.Info("guard: client armed its watchdog", "timeout", g.cfg.WatchdogTimeout, "deadline_in", deadline.Sub(g.clock.Now()))
	g.poke()
}

// command executes one client line and returns the reply, and whether the
// connection ends.
func (g *Guard) command(h *handle, line string, log *slog.Logger) (string, bool) {
	verb, arg, _ := strings.Cut(line, " ")
	var deadline time.Time
	if verb == "arm" || verb == "feed" {
		expiry, err := parseExpiry(verb, arg)
		if err != nil {
			return "err " + oneLine(err.Error()), false
		}
		deadline = g.deadlineFor(expiry)
	}
	if verb == "arm" || verb == "feed" || verb == "fence" {
		g.armOnce(h, deadline, log)
	}
	switch verb {
	case "arm", "feed":
		g.mu.Lock()
		defer g.mu.Unlock()
		if h.fenced {
			return "err fenced", false
		}
		now := g.clock.Now()
		if !now.Before(h.deadline) {
			targets := g.fenceLocked(fmt.Sprintf("watchdog expired: client %d fed %v after its deadline", h.id, now.Sub(h.deadline)))
			g.verify(targets)
			return "err fenced", false
		}
		// Never move a deadline back: a feed delayed on the way may carry
		// an older expiry than one already received.
		if deadline.After(h.deadline) {
			h.deadline = deadline
		}
		g.poke()
		return "ok", false
	case "register", "unregister":
		t, err := parseTarget(arg)
		if err == nil && verb == "register" {
			err = g.check(t)
		} else if err == nil {
			err = t.checkSyntax()
		}
		if err != nil {
			return "err " + oneLine(err.Error()), false
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		if h.fenced {
			return "err fenced", false
		}
		i := slices.Index(h.targets, t)
		switch {
		case verb == "register" && i < 0:
			h.targets = append(h.targets, t)
			log.Info("guard: registered", "target", t.String())
		case verb == "unregister" && i >= 0:
			h.targets = slices.Delete(h.targets, i, i+1)
			log.Info("guard: unregistered", "target", t.String())
		}
		return "ok", false
	case "fence":
		g.mu.Lock()
		defer g.mu.Unlock()
		targets := g.fenceLocked(fmt.Sprintf("requested by client %d", h.id))
		g.verify(targets)
		return "ok", false
	case "close":
		g.mu.Lock()
		defer g.mu.Unlock()
		delete(g.handles, h.id)
		if h.fenced {
			return "err fenced", true
		}
		log.Info("guard: client closed, watchdog disarmed", "targets_forgotten", len(h.targets))
		return "ok", true
	}
	return "err " + oneLine(fmt.Sprintf("unknown command %q", verb)), false
}

// shutdown stops accepting, fences if any client is still armed, closes
// every connection and releases the device.
func (g *Guard) shutdown() {
	g.mu.Lock()
	g.stopping = true
	armed := 0
	for _, h := range g.handles {
		if h.armed && !h.fenced {
			armed++
		}
	}
	var targets []Target
	if armed > 0 {
		targets = g.fenceLocked(fmt.Sprintf("guard stopping while %d client(s) armed", armed))
	}
	for c := range g.conns {
		c.Close()
	}
	stopped := g.deviceStopped
	g.mu.Unlock()
	if armed > 0 {
		g.verify(targets)
	}
	if g.ln != nil {
		g.ln.Close()
	}
	g.wg.Wait()
	if g.dev != nil {
		if stopped {
			if err := g.dev.Close(); err != nil {
				g.logger.Error("guard: close watchdog device", "err", err)
			}
		} else if err := g.dev.Disarm(); err != nil {
			g.logger.Error("guard: disarm watchdog device", "err", err)
		} else {
			g.logger.Info("guard: watchdog device disarmed", "device", g.cfg.Device)
		}
	}
	g.logger.Info("guard stopped", "fences", g.Fences())
}

func sortTargets(ts []Target) []Target {
	slices.SortFunc(ts, func(a, b Target) int { return strings.Compare(a.sortKey(), b.sortKey()) })
	return slices.Compact(ts)
}

func (t Target) sortKey() string {
	if t.Cgroup != "" {
		return "1" + t.Cgroup
	}
	return fmt.Sprintf("0%012d", t.PGID)
}

func oneLine(s string) string { return strings.NewReplacer("\n", " ", "\r", " ").Replace(s) }

// peerCred returns the pid and uid of the process at the other end of a
// unix socket.
func peerCred(conn net.Conn) (pid, uid int, err error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return 0, -1, errors.New("peer credentials: not a unix socket")
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0, -1, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *syscall.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, -1, fmt.Errorf("peer credentials: %w", err)
	}
	if cerr != nil {
		return 0, -1, fmt.Errorf("peer credentials: %w", cerr)
	}
	return int(cred.Pid), int(cred.Uid), nil
}
