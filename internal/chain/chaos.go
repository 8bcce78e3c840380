package chain

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/breakerchain/breakerchain/internal/wire"
)

// MaxLatency bounds the latency chaos may inject at runtime: well past any sane timeout, short
// enough that a typo ("400s" for "400ms") does not wedge a service for an hour.
const MaxLatency = time.Minute

// Change is a change of faults at runtime, as PUT /chaos and chaos.<service> take it:
// {"error_rate":0.5,"latency":"400ms"}. A field left out keeps its value.
type Change struct {
	ErrorRate *float64 `json:"error_rate"`
	Latency   *Latency `json:"latency"`
}

// Latency is a Go duration in a string ("400ms") or, as the seed's durations, a number of
// milliseconds.
type Latency time.Duration

// UnmarshalJSON reads a Latency, naming the field when it is not one.
func (l *Latency) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if d, err := time.ParseDuration(strings.TrimSpace(s)); err == nil {
			*l = Latency(d)
			return nil
		}
	} else if ms, err := strconv.ParseFloat(string(b), 64); err == nil && !math.IsInf(ms, 0) && math.Abs(ms) < 1e12 {
		*l = Latency(time.Duration(ms * float64(time.Millisecond)))
		return nil
	}
	return wire.Invalid("latency", "must be a duration like \"400ms\" or a number of milliseconds, from 0 to %s", MaxLatency)
}

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
			return cur, wire.Invalid("latency", "must be a duration like \"400ms\" or a number of milliseconds, from 0 to %s", MaxLatency)
		}
		next.Latency = time.Duration(*c.Latency)
	}
	return next, nil
}

// View is Faults as JSON shows them: {"error_rate":0.5,"latency":"400ms"}.
type View struct {
	ErrorRate float64 `json:"error_rate"`
	Latency   string  `json:"latency"`
}

// View returns f as JSON shows it.
func (f Faults) View() View { return View{ErrorRate: f.ErrorRate, Latency: f.Latency.String()} }
