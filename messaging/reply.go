package messaging

import (
	"strings"
	"time"
)

// Outcome says how a hop ended.
type Outcome string

// Outcomes of a hop. Only OutcomeOK, OutcomeLast and OutcomeVoided mean the hop did its work.
const (
	OutcomeOK          Outcome = "ok"          // handled; the chain went on or ended here (a void: nothing of its own to void)
	OutcomeLast        Outcome = "last"        // handled; the JUMPS limit stopped the chain here
	OutcomeVoided      Outcome = "voided"      // a void handled: the hop's own record for the order is voided
	OutcomeUnavailable Outcome = "unavailable" // failed: no responders, connection lost or a 5xx
	OutcomeTimeout     Outcome = "timeout"     // no answer in the time the caller had
	OutcomeRejected    Outcome = "rejected"    // not called: the circuit is open
	OutcomeRefused     Outcome = "refused"     // the hop answered with a 4xx: it will not take this request
)

// Succeeded reports whether the hop did its work.
func (o Outcome) Succeeded() bool { return o == OutcomeOK || o == OutcomeLast || o == OutcomeVoided }

func (o Outcome) known() bool {
	switch o {
	case OutcomeOK, OutcomeLast, OutcomeVoided, OutcomeUnavailable, OutcomeTimeout, OutcomeRejected, OutcomeRefused:
		return true
	}
	return false
}

// Bounds of a reply a target may send: a chain has a handful of services (three as shipped), and
// its texts are one line each. A reply beyond them is a target that lies; stored, a chain nested
// a thousand deep is more than the embedded store will take.
const (
	maxReplyHops = 16
	maxReplyText = 4096
)

// wellFormed reports whether r is within those bounds, every hop with an outcome of this package.
func (r *Reply) wellFormed() bool {
	n := 0
	for h := r; h != nil; h = h.Next {
		if n++; n > maxReplyHops || !h.Outcome.known() ||
			len(h.Service) > maxReplyText || len(h.Reason) > maxReplyText || len(h.Line) > maxReplyText {
			return false
		}
	}
	return true
}

// Reply is the answer of one hop, nesting the answer of the hop after it. Success, downstream
// failure, timeout and open circuit all come back in this one shape.
type Reply struct {
	Service string    `json:"service"`
	Time    time.Time `json:"time"`
	Outcome Outcome   `json:"outcome"`
	Reason  string    `json:"reason,omitempty"`
	Line    string    `json:"line"`
	Next    *Reply    `json:"next,omitempty"`
}

// stamp is a reply's time: UTC to the millisecond, as the store keeps it, so a replay answered
// from the store shows the same times as the first answer.
func stamp(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// clock is the seed's "@minutes:seconds" stamp.
func clock(t time.Time) string { return t.Format("04:05") }

// ReplyDone is the reply of a hop that did its work. next is the reply of the hop it called, or
// nil when the chain ends here; last marks an end forced by the JUMPS limit.
func ReplyDone(service string, now time.Time, last bool, next *Reply) Reply {
	r := Reply{Service: service, Time: stamp(now), Outcome: OutcomeOK, Next: next}
	word := "Next"
	if next == nil {
		word = "Last"
	}
	if last {
		r.Outcome = OutcomeLast
	}
	r.Line = "This is " + service + " @" + clock(now) + " -> " + word
	return r
}

// ReplyVoided is the reply of a hop that carried out a void: voided says whether it had a record
// of its own for the order (now voided, or voided before), next is the reply of the hop it passed
// the void on to, or nil.
func ReplyVoided(service string, now time.Time, voided bool, next *Reply) Reply {
	r := Reply{Service: service, Time: stamp(now), Outcome: OutcomeOK, Next: next}
	word := "nothing to void"
	if voided {
		r.Outcome, word = OutcomeVoided, "voided"
	}
	r.Line = "This is " + service + " @" + clock(now) + " -> " + word
	return r
}

// ReplyFailed is the reply a caller writes on behalf of a hop that did not answer well.
func ReplyFailed(service string, now time.Time, outcome Outcome, reason string) Reply {
	word := "unavailable"
	if outcome == OutcomeRefused {
		word = "refused"
	}
	return Reply{
		Service: service, Time: stamp(now), Outcome: outcome, Reason: reason,
		Line: service + " @" + clock(now) + " -> " + word + " (" + reason + ")",
	}
}

// Problem returns the first hop that did not do its work, or nil.
func (r *Reply) Problem() *Reply {
	for h := r; h != nil; h = h.Next {
		if !h.Outcome.Succeeded() {
			return h
		}
	}
	return nil
}

// Text renders the chain the seed's way, one line per hop.
func (r *Reply) Text() string {
	var b strings.Builder
	for h := r; h != nil; h = h.Next {
		b.WriteString(h.Line)
		b.WriteByte('\n')
	}
	return b.String()
}
