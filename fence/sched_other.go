//go:build !linux

package fence

import "errors"

// SetRealtime is only implemented on Linux.
func SetRealtime(prio int) error {
	return errors.New("real-time scheduling of the guard is only implemented on Linux")
}
