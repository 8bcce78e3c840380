package observe

import (
	"encoding/json"

	"github.com/breakerchain/breakerchain/internal/chaos"
	"github.com/breakerchain/breakerchain/messaging"
)

// Breakers is what GET /breakers and circuits.<service> show of one process: its outgoing
// circuits, its limits on the work it takes, and its faults.
type Breakers struct {
	Service  string      `json:"service"`
	ID       string      `json:"id"`
	Circuits []Circuit   `json:"circuits"`
	Limiters []Limiter   `json:"limiters,omitempty"`
	Chaos    chaos.State `json:"chaos"`
}

// Limiter is a limit on the work a service takes (order's admission), as /breakers shows it.
type Limiter struct {
	Name     string `json:"name"`
	Limit    int    `json:"limit"`    // what it admits at once now; 0 when it is off
	Max      int    `json:"max"`      // the most it may grow to
	Inflight int    `json:"inflight"` // work admitted and not done
	Queued   int    `json:"queued"`   // waiting for room
	MaxWait  string `json:"max_wait"` // the longest one waits before it is refused
	// Redriving is how much of the in-flight work is the service's own background work.
	Redriving int `json:"redriving"`
	// Refused counts the work turned away since start, by reason.
	Refused map[string]uint64 `json:"refused"`
}

// Circuit is one outgoing circuit as /breakers and `nats micro stats` show it (and the dashboard
// draws it): its state, the window's counts against the threshold, and what its calls came to.
type Circuit struct {
	Target         string          `json:"target"`
	State          messaging.State `json:"state"`
	Executions     uint            `json:"executions"`
	Failures       uint            `json:"failures"`
	FailureRate    float64         `json:"failure_rate"`
	RemainingDelay string          `json:"remaining_delay,omitempty"`
	// The settings the state follows: open at Threshold % of failures once MinCalls were seen in
	// Window; an open circuit waits Delay before a trial.
	Threshold uint   `json:"threshold"`
	MinCalls  uint   `json:"min_calls"`
	Window    string `json:"window"`
	Delay     string `json:"delay"`
	// Calls counts the calls since start by kind, with the last minute's latency.
	Calls messaging.CallStats `json:"calls"`
}

// Stats is b as each endpoint's data in `nats micro stats` carries it, and the dashboard reads
// back as a Breakers: its JSON, keys and all, without the service and id micro's own fields give.
func (b Breakers) Stats() map[string]any {
	data, err := json.Marshal(b)
	var m map[string]any
	if err != nil || json.Unmarshal(data, &m) != nil {
		return map[string]any{}
	}
	delete(m, "service")
	delete(m, "id")
	return m
}
