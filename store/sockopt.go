package store

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// errSockoptUnsupported is returned by setRTOMin where the kernel or the
// operating system has no per-socket minimum retransmission timeout.
var errSockoptUnsupported = errors.New("TCP_RTO_MIN_US is not supported here (Linux 6.15 or later has it)")

// sockOpts applies the store's TCP options to every connection of the
// store port, accepted or dialed, raft's and forwarding ones alike.
type sockOpts struct {
	// rtoMin is Config.TCPRTOMin; 0 leaves the kernel's minimum.
	rtoMin time.Duration
	logger *slog.Logger

	warnOnce sync.Once
}

// apply sets the options on c. A kernel without the option is logged once,
// with what it costs, and the connection is used as it is: the option
// makes a lost segment cheaper, it is not needed for correctness.
func (o *sockOpts) apply(c net.Conn) {
	if o == nil || o.rtoMin <= 0 {
		return
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	if err := setRTOMin(tc, o.rtoMin); err != nil {
		o.warnOnce.Do(func() {
			o.logger.Warn("tcp_rto_min not applied: a lost segment on the store port costs the kernel's minimum retransmit time (200 ms unless the route or net.ipv4.tcp_rto_min_us lowers it), which the raft timings then have to absorb (docs/safety.md, lossy networks)",
				"tcp_rto_min", o.rtoMin, "err", err)
		})
	}
}
