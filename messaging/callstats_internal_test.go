package messaging

import (
	"math"
	"testing"
	"time"
)

// Calls are counted by kind, and the last minute's latency quantiles land within a bucket (±20 %)
// of the truth; a call never sent adds no latency.
func TestCallStats(t *testing.T) {
	var c callStats
	for range 97 {
		c.record(OutcomeOK, time.Millisecond)
	}
	c.record(OutcomeUnavailable, 100*time.Millisecond)
	c.record(OutcomeTimeout, 300*time.Millisecond)
	c.record(OutcomeRefused, 100*time.Millisecond)
	c.record(OutcomeRejected, time.Hour)
	s := c.snapshot()
	if s.Success != 98 || s.Failure != 1 || s.Timeout != 1 || s.Rejected != 1 {
		t.Errorf("counts %+v, want 98 success, 1 failure, 1 timeout, 1 rejected", s)
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= 0.2*want }
	if !near(s.P50, 1) || !near(s.P99, 100) {
		t.Errorf("p50 %v ms, p99 %v ms: want about 1 and 100", s.P50, s.P99)
	}
	if empty := new(callStats).snapshot(); empty.P50 != 0 || empty.P99 != 0 {
		t.Errorf("no calls: %+v", empty)
	}
}
