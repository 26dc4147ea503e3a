//go:build !linux

package store

import (
	"net"
	"time"
)

// setRTOMin reports that only Linux has a per-socket minimum
// retransmission timeout.
func setRTOMin(*net.TCPConn, time.Duration) error { return errSockoptUnsupported }
