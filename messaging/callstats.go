package messaging

import (
	"math"
	"sync"
	"time"
)

// CallKind is what became of a call, as CallStats counts it: the kinds the metric
// breakerchain_circuit_calls_total's outcome label and the dashboard's rates are keyed by. Its
// names are written here only, beside CallStats' fields; it travels as JSON by MarshalText.
type CallKind int

// The kinds of calls; see CallStats' fields for what each holds.
const (
	CallSuccess CallKind = iota
	CallFailure
	CallTimeout
	CallRejected
)

// CallKinds are every CallKind, in the order of their values.
var CallKinds = [...]CallKind{CallSuccess, CallFailure, CallTimeout, CallRejected}

var callKindNames = names[CallKind]{what: "call kind", of: []string{
	CallSuccess: "success", CallFailure: "failure", CallTimeout: "timeout", CallRejected: "rejected"}}

// String returns the kind's name: success, failure, timeout or rejected.
func (k CallKind) String() string { return callKindNames.String(k) }

// MarshalText writes the kind's name; a CallKind outside the set is an error, never sent.
func (k CallKind) MarshalText() ([]byte, error) { return callKindNames.MarshalText(k) }

// UnmarshalText reads a kind's name; any other text is an error.
func (k *CallKind) UnmarshalText(text []byte) error { return callKindNames.UnmarshalText(k, text) }

// CallStats is what a Requester's calls came to: how many of each kind since it started, and the
// latency of the last minute's calls. It is shown in /breakers and `nats micro stats`, and is what
// the dashboard draws.
type CallStats struct {
	Success  uint64 `json:"success"`  // answered: ok, last, or refused (a 4xx is the target working)
	Failure  uint64 `json:"failure"`  // unavailable: no responders, a 5xx, a lost connection, no time left to ask
	Timeout  uint64 `json:"timeout"`  // no answer in time
	Rejected uint64 `json:"rejected"` // not sent: the circuit was open or the bulkhead full
	// P50 and P99 are the latency of the calls of the last minute that were sent, in
	// milliseconds (0 when there were none): the upper bound of their histogram bucket, up to 20 %
	// above the true value.
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
}

// Count is how many calls of kind k there were.
func (s CallStats) Count(k CallKind) uint64 {
	switch k {
	case CallSuccess:
		return s.Success
	case CallFailure:
		return s.Failure
	case CallTimeout:
		return s.Timeout
	case CallRejected:
		return s.Rejected
	}
	return 0
}

// latencyBuckets are a log-scale histogram: bucket i holds latencies up to latencyBase·growth^i.
const (
	latencyBuckets = 96
	latencyBase    = 50 * time.Microsecond
	latencyGrowth  = 1.2 // 50 µs … about 1,800 s in 96 buckets
)

// callStats counts calls and keeps a histogram of latencies per second for the last minute.
type callStats struct {
	mu     sync.Mutex
	last   time.Time // when the last call came back
	totals CallStats
	sec    [60]struct {
		at   int64 // the Unix second the bucket is for
		hist [latencyBuckets]uint32
	}
}

// record counts one call that came back with outcome after d (d is ignored for a call not sent).
func (c *callStats) record(outcome Outcome, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch outcome {
	case OutcomeRejected:
		c.totals.Rejected++
		return
	case OutcomeTimeout:
		c.totals.Timeout++
	case OutcomeUnavailable:
		c.totals.Failure++
	default:
		c.totals.Success++
	}
	c.last = time.Now()
	now := c.last.Unix()
	s := &c.sec[now%60]
	if s.at != now {
		s.at, s.hist = now, [latencyBuckets]uint32{}
	}
	s.hist[bucketOf(d)]++
}

// lastCall is when the last call sent came back; zero before any.
func (c *callStats) lastCall() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func bucketOf(d time.Duration) int {
	if d <= latencyBase {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(latencyBase)) / math.Log(latencyGrowth)))
	return min(i, latencyBuckets-1)
}

// snapshot returns the totals and the last minute's p50 and p99.
func (c *callStats) snapshot() CallStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.totals
	var hist [latencyBuckets]uint64
	var n uint64
	now := time.Now().Unix()
	for i := range c.sec {
		if now-c.sec[i].at < 60 {
			for b, v := range c.sec[i].hist {
				hist[b] += uint64(v)
				n += uint64(v)
			}
		}
	}
	if n == 0 {
		return out
	}
	quantile := func(q float64) float64 {
		rank := uint64(math.Ceil(q * float64(n)))
		var seen uint64
		for b, v := range hist {
			if seen += v; seen >= rank {
				upper := float64(latencyBase) * math.Pow(latencyGrowth, float64(b))
				return math.Round(upper/float64(time.Millisecond)*100) / 100
			}
		}
		return 0
	}
	out.P50, out.P99 = quantile(0.50), quantile(0.99)
	return out
}
