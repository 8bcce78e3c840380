package order

import (
	"slices"
	"sync"
	"time"
)

// drainPace decides how many re-drives may run at once from how long clients' orders take, so
// a drain takes the room the chain has and gives it back as soon as clients feel it. The
// admission limit alone does not: it learns the latency under the drain's weight as the new
// normal (its baseline follows load), and the drain kept live orders six times slower.
//
// It is additive increase, multiplicative decrease, as TCP's congestion control: every
// paceInterval, when clients' orders took paceTolerance times longer on average than the
// fastest average of the last paceMemory (what they take with the drain light), the re-drives
// allowed halve; otherwise one more is allowed. Never fewer than one: a drain slows, it never
// stops. With no clients' orders there is no one to protect, and the drain takes its whole
// share at once; when clients come back it starts again from one re-drive.
type drainPace struct {
	mu      sync.Mutex
	allowed int           // re-drives allowed at once
	start   time.Time     // of the interval being measured
	sum     time.Duration // clients' orders completed in it: their total time …
	n       int           // … and count
	means   []time.Duration
	idle    bool // the last interval had too few clients' orders to tell
}

const (
	paceInterval   = 250 * time.Millisecond
	paceMemory     = 120 // intervals: the fastest average of the last 30 s is the baseline
	paceTolerance  = 1.5
	paceMinSamples = 8 // fewer orders in an interval say nothing of clients' latency
)

// observe records one client's order that took d.
func (p *drainPace) observe(d time.Duration) {
	p.mu.Lock()
	p.sum += d
	p.n++
	p.mu.Unlock()
}

// allowedAt is how many re-drives may run at once at now, ending the interval being measured
// if it is over; share is the most the admission limit gives re-drives.
func (p *drainPace) allowedAt(now time.Time, share int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.start.IsZero() {
		p.start, p.allowed, p.idle = now, share, true
	}
	if now.Sub(p.start) >= paceInterval {
		p.adjust(share)
		p.start, p.sum, p.n = now, 0, 0
	}
	return p.clamp(share)
}

// current is what allowedAt last said, for a gauge: reading it changes nothing.
func (p *drainPace) current(share int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clamp(share)
}

func (p *drainPace) clamp(share int) int {
	if p.start.IsZero() {
		return max(1, share)
	}
	return max(1, min(p.allowed, share))
}

// adjust ends an interval: its clients' average against the baseline sets what is allowed.
func (p *drainPace) adjust(share int) {
	if p.n < paceMinSamples {
		p.allowed, p.idle = share, true
		return
	}
	mean := p.sum / time.Duration(p.n)
	if p.idle { // clients are back: learn their latency afresh, from a light drain
		p.allowed, p.idle, p.means = 1, false, append(p.means[:0], mean)
		return
	}
	p.means = append(p.means, mean)
	if len(p.means) > paceMemory {
		p.means = p.means[1:]
	}
	if float64(mean) > paceTolerance*float64(slices.Min(p.means)) {
		p.allowed = max(1, p.allowed/2)
	} else {
		p.allowed = min(share, p.allowed+1)
	}
}
