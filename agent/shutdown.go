package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/godbus/dbus/v5"
)

// DefaultShutdownDetectTimeout is the default of Config.ShutdownDetectTimeout:
// how long the agent's stop path may wait for systemd to list its jobs.
const DefaultShutdownDetectTimeout = time.Second

// DefaultSystemdBooted is the directory that exists when systemd is the init
// system (PID 1), as sd_booted(3) checks.
const DefaultSystemdBooted = "/run/systemd/system"

// The D-Bus names of systemd's manager.
const (
	systemdBusName      = "org.freedesktop.systemd1"
	systemdObjectPath   = "/org/freedesktop/systemd1"
	systemdListJobs     = "org.freedesktop.systemd1.Manager.ListJobs"
	systemdPrivateAddr  = "unix:path=/run/systemd/private"
	systemBusDefault    = "unix:path=/run/dbus/system_bus_socket"
	systemBusAddressEnv = "DBUS_SYSTEM_BUS_ADDRESS"
)

// SystemdBus is one D-Bus address where systemd's manager answers.
type SystemdBus struct {
	// Address is a D-Bus server address, such as
	// unix:path=/run/systemd/private.
	Address string
	// Direct marks systemd's private peer-to-peer socket: no bus daemon
	// is in between, so the client sends no Hello.
	Direct bool
}

// DefaultSystemdBuses returns the addresses the detector tries, in order:
// systemd's private socket (what systemctl uses as root; it needs no
// dbus-daemon, which may already be stopping during a shutdown), then the
// system bus ($DBUS_SYSTEM_BUS_ADDRESS, else /run/dbus/system_bus_socket).
func DefaultSystemdBuses(getenv func(string) string) []SystemdBus {
	system := getenv(systemBusAddressEnv)
	if system == "" {
		system = systemBusDefault
	}
	return []SystemdBus{{Address: systemdPrivateAddr, Direct: true}, {Address: system}}
}

// SystemdJob is one job in systemd's queue, as Manager.ListJobs returns it
// (D-Bus signature (usssoo)).
type SystemdJob struct {
	// ID is the job's number.
	ID uint32
	// Unit is the unit the job is for, such as reboot.target.
	Unit string
	// Type is the job type: start, stop, restart, ...
	Type string
	// State is waiting or running.
	State string
	// Path is the job's object path.
	Path dbus.ObjectPath
	// UnitPath is the unit's object path.
	UnitPath dbus.ObjectPath
}

// ShutdownDetector tells a node shutdown or reboot from a restart of the
// agent alone by asking systemd over D-Bus (Manager.ListJobs) whether a
// start job of a shutdown or reboot target is queued. Its Detect method is
// a NodeShutdownFunc. Without systemd as PID 1, or when no bus answers in
// time, it reports no shutdown: then only the signals (SIGUSR1 shutdown,
// SIGUSR2 reboot, see `haxd agent`) tell the agent the node goes down.
type ShutdownDetector struct {
	// Buses are tried in order until one answers. Empty:
	// DefaultSystemdBuses(os.Getenv).
	Buses []SystemdBus
	// Booted is a path that exists when systemd is PID 1; without it the
	// detector asks no bus. Empty: DefaultSystemdBooted.
	Booted string
	// Timeout bounds one detection, connecting included. Zero:
	// DefaultShutdownDetectTimeout.
	Timeout time.Duration
	// Log gets each decision and, once, why detection relies on signals.
	Log *slog.Logger

	fallbackLogged atomic.Bool
}

// NewShutdownDetector returns a detector on the default buses with the
// given bound (zero: the default).
func NewShutdownDetector(timeout time.Duration, logger *slog.Logger) *ShutdownDetector {
	return &ShutdownDetector{Timeout: timeout, Log: logger}
}

// Detect reports whether systemd is shutting the node down and whether it
// reboots. It never takes much longer than Timeout; any failure counts as
// "no shutdown" (an agent restart).
func (d *ShutdownDetector) Detect() (shutdown, reboot bool) {
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = DefaultShutdownDetectTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	jobs, err := d.Jobs(ctx)
	if err != nil {
		if d.fallbackLogged.CompareAndSwap(false, true) {
			d.logger().Info("node shutdown detection relies on signals (SIGUSR1 shutdown, SIGUSR2 reboot): cannot ask systemd over D-Bus; a stop counts as an agent restart", "err", err)
		}
		return false, false
	}
	shutdown, reboot, unit := shutdownFromJobs(jobs)
	if shutdown {
		d.logger().Info("systemd is shutting the node down", "reboot", reboot, "job_unit", unit, "jobs", len(jobs))
	} else {
		d.logger().Info("no shutdown or reboot job queued in systemd: a stop is an agent restart", "jobs", len(jobs))
	}
	return shutdown, reboot
}

// Jobs lists systemd's queued jobs from the first bus that answers. It
// returns when ctx is done even if a bus hangs.
func (d *ShutdownDetector) Jobs(ctx context.Context) ([]SystemdJob, error) {
	booted := d.Booted
	if booted == "" {
		booted = DefaultSystemdBooted
	}
	if _, err := os.Stat(booted); err != nil {
		return nil, fmt.Errorf("systemd is not PID 1: %w", err)
	}
	buses := d.Buses
	if len(buses) == 0 {
		buses = DefaultSystemdBuses(os.Getenv)
	}
	type result struct {
		jobs []SystemdJob
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var errs []error
		for _, b := range buses {
			jobs, err := listJobs(ctx, b)
			if err == nil {
				done <- result{jobs: jobs}
				return
			}
			errs = append(errs, fmt.Errorf("%s: %w", b.Address, err))
			if ctx.Err() != nil {
				break
			}
		}
		done <- result{err: errors.Join(errs...)}
	}()
	// godbus closes the connection when ctx is done, which ends a blocked
	// read; the select is the guarantee that a stuck call cannot hold the
	// agent's stop past the bound.
	select {
	case r := <-done:
		return r.jobs, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("list systemd jobs: %w", ctx.Err())
	}
}

// listJobs asks systemd on one bus for its job queue.
func listJobs(ctx context.Context, b SystemdBus) ([]SystemdJob, error) {
	conn, err := dbus.Dial(b.Address, dbus.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	if err := conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(os.Geteuid()))}); err != nil {
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	if !b.Direct {
		if err := conn.Hello(); err != nil {
			return nil, fmt.Errorf("hello: %w", err)
		}
	}
	var jobs []SystemdJob
	call := conn.Object(systemdBusName, systemdObjectPath).CallWithContext(ctx, systemdListJobs, 0)
	if err := call.Store(&jobs); err != nil {
		return nil, fmt.Errorf("ListJobs: %w", err)
	}
	return jobs, nil
}

// shutdownFromJobs decides from systemd's job queue: a start job of
// kexec.target, reboot.target or soft-reboot.target is a reboot; one of
// shutdown.target, poweroff.target or halt.target a shutdown. unit names
// the deciding job's unit (the first by name when several decide alike).
// A reboot wins over a shutdown: a reboot queues shutdown.target too.
func shutdownFromJobs(jobs []SystemdJob) (shutdown, reboot bool, unit string) {
	var down, up []string
	for _, j := range jobs {
		if j.Type != "start" {
			continue
		}
		switch j.Unit {
		case "kexec.target", "reboot.target", "soft-reboot.target":
			up = append(up, j.Unit)
		case "halt.target", "poweroff.target", "shutdown.target":
			down = append(down, j.Unit)
		}
	}
	slices.Sort(up)
	slices.Sort(down)
	switch {
	case len(up) > 0:
		return true, true, up[0]
	case len(down) > 0:
		return true, false, down[0]
	}
	return false, false, ""
}

// logger returns Log or a logger that drops everything.
func (d *ShutdownDetector) logger() *slog.Logger {
	if d.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Log
}
