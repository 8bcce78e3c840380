// Package chaos is the seed's fault injection, in one place: the faults a service injects
// (INJECT_ERR, INJECT_ERR_RATE, INJECT_LATENCY), the Injector a hop reads them from, and, with
// CHAOS=1, changing them at runtime over HTTP (PUT /chaos) and NATS (chaos.<service>), each change
// validated, logged and published on chaos.<service>.changed. It must not know what a service
// stores or whom it calls.
package chaos

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/breakerchain/breakerchain/internal/wire"
)

// Faults are the faults a service injects. They start from INJECT_ERR, INJECT_ERR_RATE and
// INJECT_LATENCY and, with CHAOS=1, may be changed at runtime (see Controller).
type Faults struct {
	ErrorRate float64       // the share of requests failed after saving; 0 = off
	Latency   time.Duration // added to every request before it is handled
}

// Injector holds the faults in force in one instance of a service.
type Injector struct{ faults atomic.Pointer[Faults] }

// Faults returns the faults in force. A request reads them once, so a change at runtime applies
// to the requests that start after it, whole.
func (i *Injector) Faults() Faults {
	if f := i.faults.Load(); f != nil {
		return *f
	}
	return Faults{}
}

// Set puts f in force and returns the faults it replaces.
func (i *Injector) Set(f Faults) Faults {
	if old := i.faults.Swap(&f); old != nil {
		return *old
	}
	return Faults{}
}

// Delay waits the injected latency, or until ctx ends (then the caller gave up: do nothing).
func (i *Injector) Delay(ctx context.Context) error {
	latency := i.Faults().Latency
	if latency <= 0 {
		return nil
	}
	t := time.NewTimer(latency)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Fail draws whether this request fails on purpose, at the error rate in force.
func (i *Injector) Fail() bool {
	rate := i.Faults().ErrorRate
	return rate > 0 && rand.Float64() < rate
}

// MaxLatency bounds the latency chaos may inject at runtime: well past any sane timeout, short
// enough that a typo ("400s" for "400ms") does not wedge a service for an hour.
const MaxLatency = time.Minute

// Change is a change of faults at runtime, as PUT /chaos and chaos.<service> take it:
// {"error_rate":0.5,"latency":"400ms"}. A field left out keeps its value.
type Change struct {
	ErrorRate *float64 `json:"error_rate"`
	Latency   *Latency `json:"latency"`
}

// Latency is a Go duration in a string, with its unit ("400ms"): a bare number is refused, as
// for the environment's durations.
type Latency time.Duration

// UnmarshalJSON reads a Latency, naming the field when it is not one.
func (l *Latency) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if d, err := time.ParseDuration(strings.TrimSpace(s)); err == nil {
			*l = Latency(d)
			return nil
		}
	}
	return errBadLatency
}

var errBadLatency = wire.Invalid("latency", "must be a duration with a unit, like \"400ms\", from 0 to %s", MaxLatency)

// ParseChange decodes and validates a change (wire's rules: 400 malformed, 422 naming the field)
// and applies it to cur. Nothing is changed here: the caller puts the result in force.
func ParseChange(data []byte, cur Faults) (Faults, error) {
	var c Change
	if err := wire.Decode(data, &c); err != nil {
		return cur, err
	}
	next := cur
	if c.ErrorRate != nil {
		if r := *c.ErrorRate; math.IsNaN(r) || r < 0 || r > 1 {
			return cur, wire.Invalid("error_rate", "must be a number from 0 to 1")
		}
		next.ErrorRate = *c.ErrorRate
	}
	if c.Latency != nil {
		if d := time.Duration(*c.Latency); d < 0 || d > MaxLatency {
			return cur, errBadLatency
		}
		next.Latency = time.Duration(*c.Latency)
	}
	return next, nil
}

// Shown is Faults as JSON shows them: {"error_rate":0.5,"latency":"400ms"}.
type Shown struct {
	ErrorRate float64 `json:"error_rate"`
	Latency   string  `json:"latency"`
}

// Show returns f as JSON shows it.
func (f Faults) Show() Shown { return Shown{ErrorRate: f.ErrorRate, Latency: f.Latency.String()} }
