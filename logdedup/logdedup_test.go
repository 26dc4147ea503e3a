package logdedup

import (
	"testing"
	"time"
)

func TestAllowOncePerWindowWithCount(t *testing.T) {
	now := time.Unix(0, 0)
	d := New(func() time.Time { return now }, 30*time.Second)
	steps := []struct {
		advance time.Duration
		key     string
		ok      bool
		n       int
	}{
		{0, "a", true, 0},
		{time.Second, "a", false, 0},
		{time.Second, "a", false, 0},
		{0, "b", true, 0},
		{30 * time.Second, "a", true, 2},
		{0, "a", false, 0},
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		ok, n := d.Allow(s.key)
		if ok != s.ok || n != s.n {
			t.Errorf("step %d (%s): Allow = %v, %d; want %v, %d", i, s.key, ok, n, s.ok, s.n)
		}
	}
}
