package order

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/observe"
)

// admission is the adaptive concurrency limit at order's entry (failsafe-go's adaptivelimiter):
// it learns the chain's latency and admits as many orders at once as the chain completes without
// them queueing inside it — in the store's batches, at the hop's bulkhead, in payment's
// handlers. An order over the limit waits for room up to ADMIT_MAX_WAIT in a short queue (a
// quarter of the limit, see queueShare), or is refused at once when that queue is full — then
// before its body is read (full): 503 with Retry-After, nothing saved, no circuit touched.
// Without it the hop's bulkhead (BULKHEAD_MAX) turned the chain's own overflow into pending
// orders (202) that took an hour to drain. The limit grows to ADMIT_MAX at most — the bulkhead's
// size, so one instance's own load never fills it — and never falls below minAdmit.
//
// Re-drives take their permits from the same limit, behind the orders of clients (see spare),
// as many at once as clients' latency allows (see drainPace): a backlog drains as fast as the
// chain has room for, and no faster.
type admission struct {
	lim     adaptivelimiter.AdaptiveLimiter[any] // nil: no limit (ADMIT_MAX=0)
	max     int
	maxWait time.Duration
	door    chan struct{} // see checked

	redriving atomic.Int64  // permits held by re-drives
	freed     chan struct{} // a permit was given back: the re-driver looks for room again
	pace      drainPace     // how many of them clients' latency allows
	refusedMu sync.Mutex
	refused   map[string]uint64 // orders not taken, by reason (the counter's labels)
	counter   *prometheus.CounterVec
}

// Reasons an order is not taken (the label of breakerchain_orders_refused_total).
const (
	refusedLimit   = "limit"   // the chain was at its limit and the wait ran out
	refusedBacklog = "backlog" // BACKLOG_MAX orders were waiting to complete
)

// queueShare: up to a quarter of the limit may wait for room. Room frees as fast as the chain
// completes orders, so such a queue empties in about a quarter of one order's time: a wait
// rarely runs out, and an order admitted after one is not much slower. failsafe-go's own
// queueing (WithQueueing) holds at least the limit again, which would double the latency of the
// orders admitted at the peak, and wait out ADMIT_MAX_WAIT more often before refusing.
const queueShare = 4

// minAdmit is the lowest the limit falls to: a handful of orders at once is never an overload,
// and a limit of one would refuse a burst of a few clients after a slow spell.
const minAdmit = 8

// redriveShare is the part of the limit re-drives may hold: the rest stays free for clients'
// orders, so a drain never makes them wait for a permit, and the chain's latency stays that of
// a limit the live load shares.
const redriveShare = 0.5

// newAdmission makes the limit of cfg (none when ADMIT_MAX=0: every order is taken, the hop's
// bulkhead bounds the calls) and registers its series on reg.
func newAdmission(cfg config.Admission, reg prometheus.Registerer) *admission {
	a := &admission{max: cfg.Max, maxWait: cfg.MaxWait, refused: map[string]uint64{refusedLimit: 0, refusedBacklog: 0},
		door: make(chan struct{}, 2*runtime.GOMAXPROCS(0)), freed: make(chan struct{}, 1)}
	if cfg.Max > 0 {
		b := adaptivelimiter.NewBuilder[any]().
			// Start open, at the most: it falls when latency rises with load, rather than
			// learning upwards while the first clients are refused.
			WithLimits(uint(min(minAdmit, cfg.Max)), uint(cfg.Max), uint(cfg.Max)).
			// No cap as a multiple of the orders in flight: after a quiet spell a burst finds
			// the whole limit, not five times the one order that was running.
			WithMaxLimitFunc(func(int) float64 { return float64(cfg.Max) })
		a.lim = b.Build()
	}
	labels := prometheus.Labels{"service": "order"}
	a.counter = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "breakerchain_orders_refused_total", ConstLabels: labels,
		Help: "New orders not taken (503 with Retry-After, nothing saved), by reason: limit (the chain was at its admission limit and the wait ran out), backlog (BACKLOG_MAX orders were waiting to complete).",
	}, []string{"reason"})
	for reason := range a.refused {
		a.counter.WithLabelValues(reason) // shown at 0 from the start
	}
	reg.MustRegister(a.counter, admissionGauges{a: a,
		limit:     prometheus.NewDesc("breakerchain_admission_limit", "Orders this instance admits at once: the adaptive limit at order's entry (ADMIT_MAX at most); 0 when it is off.", nil, labels),
		inflight:  prometheus.NewDesc("breakerchain_admission_inflight", "Orders in flight under the admission limit, re-drives included.", nil, labels),
		queued:    prometheus.NewDesc("breakerchain_admission_queued", "Orders waiting for room under the admission limit (ADMIT_MAX_WAIT at most).", nil, labels),
		redriving: prometheus.NewDesc("breakerchain_admission_redriving", "Re-drives in flight under the admission limit (half of it at most).", nil, labels),
		paced:     prometheus.NewDesc("breakerchain_admission_redrives_allowed", "The most re-drives the latency of clients' orders allows at once (halved when they slow, half the limit when no client posts for a second); the limit, a waiting client or a circuit not closed may allow fewer. 0 until a re-driver asks.", nil, labels),
	})
	return a
}

// checked runs check (the request's validation, pure CPU) once it has a turn: two per core at
// once. The others wait their turn parked, costing nothing, rather than runnable: a thousand
// clients that send again the moment they are refused would otherwise fill the process's run
// queues, and every step of the orders admitted (each store write, each reply from payment)
// would wait behind them for a core. The wait is for a core either way; at the door it is the
// newcomers that wait, not the orders already taken. false: the client left while waiting.
func (a *admission) checked(ctx context.Context, check func()) bool {
	select {
	case a.door <- struct{}{}:
		defer func() { <-a.door }()
		check()
		return true
	case <-ctx.Done():
		return false
	}
}

// admit waits for room for one client's order, up to the max wait; false means refused (and
// counted). The permit's release records how long the order took.
func (a *admission) admit(ctx context.Context) (adaptivelimiter.Permit, bool) {
	if a.lim == nil {
		return noPermit{}, true
	}
	var p adaptivelimiter.Permit
	err := adaptivelimiter.ErrExceeded
	if a.canWait() {
		p, err = a.lim.AcquirePermitWithMaxWait(ctx, a.maxWait)
	} else if q, ok := a.lim.TryAcquirePermit(); ok {
		p, err = q, nil
	}
	if err != nil {
		if errors.Is(err, adaptivelimiter.ErrExceeded) { // else the client left while it waited
			a.refuse(refusedLimit)
		}
		return nil, false
	}
	return clientPermit{p, a, time.Now()}, true
}

// full reports whether a client's order arriving now would be refused at once: every permit in
// use and the queue for room full (or no wait allowed). Such an order is refused before its body
// is read: validating it was 37 % of a refusal's cost, and clients that send again the moment
// they are refused took a core of order's for it, which the orders taken then did not get.
func (a *admission) full() bool {
	return a.lim != nil && !a.lim.CanAcquirePermit() && !a.canWait()
}

// canWait reports whether an order over the limit may wait for room now: waits are allowed, and
// fewer than queueShare of the limit wait already.
func (a *admission) canWait() bool {
	return a.maxWait > 0 && a.lim.Queued() < max(1, a.lim.Limit()/queueShare)
}

// clientPermit is a client's order's permit: its time paces the drain.
type clientPermit struct {
	adaptivelimiter.Permit
	a     *admission
	start time.Time
}

func (p clientPermit) Record() {
	p.a.pace.observe(time.Since(p.start))
	p.Permit.Record()
	p.a.free()
}

// free says a permit was given back, to a re-driver waiting for room (awaitFreed).
func (a *admission) free() {
	select {
	case a.freed <- struct{}{}:
	default: // already said, and not yet heard
	}
}

// awaitFreed waits until a permit is given back (free), for most at the longest, or until ctx
// ends: the re-driver's wait for room, one waiter per admission. The state a permit's release changes is
// changed before free says so, so a waiter woken finds the room it was told of.
func (a *admission) awaitFreed(ctx context.Context, most time.Duration) {
	t := time.NewTimer(most)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-a.freed:
	}
}

// refuse counts an order not taken for reason.
func (a *admission) refuse(reason string) {
	a.counter.WithLabelValues(reason).Inc()
	a.refusedMu.Lock()
	a.refused[reason]++
	a.refusedMu.Unlock()
}

// spare is how many more re-drives may start now: none while a client's order waits for room,
// and at most what clients' latency allows (drainPace) within redriveShare of the limit held
// by re-drives, within what the limit leaves free.
// Without a limit, or with trial set (the circuit is not closed: its next call is a trial), one
// at a time.
func (a *admission) spare(trial bool) int {
	redriving := int(a.redriving.Load())
	if a.lim == nil || trial {
		return max(0, 1-redriving)
	}
	if a.lim.Queued() > 0 {
		return 0
	}
	limit := a.lim.Limit()
	allowed := a.pace.allowedAt(time.Now(), int(float64(limit)*redriveShare))
	return max(0, min(limit-a.lim.Inflight(), allowed-redriving))
}

// tryRedrive takes a permit for one re-drive if spare allows it.
func (a *admission) tryRedrive(trial bool) (adaptivelimiter.Permit, bool) {
	if a.spare(trial) == 0 {
		return nil, false
	}
	var p adaptivelimiter.Permit = noPermit{}
	if a.lim != nil {
		var ok bool
		if p, ok = a.lim.TryAcquirePermit(); !ok {
			return nil, false
		}
	}
	a.redriving.Add(1)
	return redrivePermit{p, a}, true
}

type redrivePermit struct {
	adaptivelimiter.Permit
	a *admission
}

func (p redrivePermit) Record() { p.a.redriving.Add(-1); p.Permit.Record(); p.a.free() }
func (p redrivePermit) Drop()   { p.a.redriving.Add(-1); p.Permit.Drop(); p.a.free() }

// noPermit is the permit when there is no limit.
type noPermit struct{}

func (noPermit) Record() {}
func (noPermit) Drop()   {}

// state is the limit as /breakers and the dashboard show it.
func (a *admission) state() observe.Limiter {
	a.refusedMu.Lock()
	refused := make(map[string]uint64, len(a.refused))
	for k, v := range a.refused {
		refused[k] = v
	}
	a.refusedMu.Unlock()
	l := observe.Limiter{Name: "admission", Max: a.max, MaxWait: a.maxWait.String(), Refused: refused,
		Redriving: int(a.redriving.Load())}
	if a.lim != nil {
		l.Limit, l.Inflight, l.Queued = a.lim.Limit(), a.lim.Inflight(), a.lim.Queued()
	}
	return l
}

// admissionGauges show the limit, read once per scrape.
type admissionGauges struct {
	a                                         *admission
	limit, inflight, queued, redriving, paced *prometheus.Desc
}

func (g admissionGauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.limit
	ch <- g.inflight
	ch <- g.queued
	ch <- g.redriving
	ch <- g.paced
}

func (g admissionGauges) Collect(ch chan<- prometheus.Metric) {
	s := g.a.state()
	paced := g.a.pace.current(int(float64(s.Limit) * redriveShare))
	for desc, v := range map[*prometheus.Desc]int{g.limit: s.Limit, g.inflight: s.Inflight, g.queued: s.Queued, g.redriving: s.Redriving, g.paced: paced} {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v))
	}
}
