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
// It is additive increase, multiplicative decrease, as TCP's congestion control: each interval
// of at least paceInterval and paceMinSamples clients' orders, when they took paceTolerance
// times longer on average than the fastest average of the last paceMemory intervals (what they
// take with the drain light), the re-drives allowed halve; otherwise one more is allowed. Never
// fewer than one (the limit and a waiting client may still allow none: they come first). With
// no client posting for paceIdle there is no one to protect, and the drain takes its whole
// share; when clients come back it starts again from one re-drive and learns their latency anew.
type drainPace struct {
	mu      sync.Mutex
	allowed int           // re-drives allowed at once
	start   time.Time     // of the interval being measured
	sum     time.Duration // clients' orders completed in it: their total time …
	n       int           // … and count
	means   []time.Duration
	idle    bool // no client posted for paceIdle: the drain has its whole share
}

const (
	paceInterval   = 250 * time.Millisecond
	paceIdle       = time.Second // this long with too few clients' orders to tell: no one to protect
	paceMemory     = 120         // intervals: the fastest average of the last 30 s or more is the baseline
	paceTolerance  = 1.5
	paceMinSamples = 8 // fewer orders say nothing of clients' latency: the interval goes on
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
	switch took := now.Sub(p.start); {
	case took >= paceInterval && p.n >= paceMinSamples:
		p.adjust(share)
	case took >= paceIdle:
		p.allowed, p.idle = share, true
	default:
		return p.clamp(share)
	}
	p.start, p.sum, p.n = now, 0, 0
	return p.clamp(share)
}

// current is what allowedAt last said, for a gauge: reading it changes nothing; 0 before any
// re-driver asked.
func (p *drainPace) current(share int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.start.IsZero() {
		return 0
	}
	return p.clamp(share)
}

func (p *drainPace) clamp(share int) int { return max(1, min(p.allowed, share)) }

// adjust ends an interval with enough clients' orders: their average against the baseline sets
// what is allowed.
func (p *drainPace) adjust(share int) {
	mean := p.sum / time.Duration(p.n)
	if p.idle {
		// Clients are back: start light, and learn their latency from the next interval, not
		// from this one, which ran beside the whole share.
		p.allowed, p.idle, p.means = 1, false, p.means[:0]
		return
	}
	p.means = append(p.means, mean)
	if len(p.means) > paceMemory {
		p.means = p.means[1:]
	}
	allowed := min(p.allowed, share) // the share falls as latency rises: halve what is in force
	if float64(mean) > paceTolerance*float64(slices.Min(p.means)) {
		p.allowed = max(1, allowed/2)
	} else {
		p.allowed = min(share, allowed+1)
	}
}
