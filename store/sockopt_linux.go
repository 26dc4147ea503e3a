package store

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
)

// tcpRTOMinUS is TCP_RTO_MIN_US of include/uapi/linux/tcp.h (Linux 6.15):
// the socket's minimum retransmission timeout in microseconds, at most
// 200 ms, rounded by the kernel to its clock tick.
const tcpRTOMinUS = 45

// setRTOMin sets c's minimum TCP retransmission timeout to d.
func setRTOMin(c *net.TCPConn, d time.Duration) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("set TCP_RTO_MIN_US: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpRTOMinUS, int(d/time.Microsecond))
	}); err != nil {
		return fmt.Errorf("set TCP_RTO_MIN_US: %w", err)
	}
	if errors.Is(serr, syscall.ENOPROTOOPT) {
		return errSockoptUnsupported
	}
	if serr != nil {
		return fmt.Errorf("set TCP_RTO_MIN_US to %v: %w", d, serr)
	}
	return nil
}
