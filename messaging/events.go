package messaging

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"
)

// Event names a breaker event; the names are the seed's (opossum's).
type Event string

// Breaker events: per call (success … fallback) and per transition (open, halfOpen, close).
const (
	EventSuccess  Event = "success"
	EventFailure  Event = "failure"
	EventTimeout  Event = "timeout"
	EventReject   Event = "reject"
	EventFallback Event = "fallback"
	EventOpen     Event = "open"
	EventHalfOpen Event = "halfOpen"
	EventClose    Event = "close"
)

// seedWords is how the seed demo logged each event: "🔌 status:: opened".
var seedWords = map[Event]string{
	EventSuccess: "success", EventFailure: "failed", EventTimeout: "timed out",
	EventReject: "rejected", EventFallback: "fallback", EventOpen: "opened",
	EventHalfOpen: "halfOpened", EventClose: "closed",
	EventRetry: "retrying", EventFull: "bulkhead full", EventOutOfTime: "out of time",
	EventBudget: "retry budget spent",
}

// BreakerEvent is what is published on breaker.<service>.<target> for every event.
type BreakerEvent struct {
	Service   string `json:"service"`
	Target    string `json:"target"`
	Event     Event  `json:"event"`
	State     State  `json:"state"`
	Reason    string `json:"reason,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// TraceID is the trace of the call the event happened in (W3C, 32 hex digits), when it has
	// one: the dashboard's timeline shows it, so one click leads from an event to the order's trace.
	TraceID string    `json:"trace_id,omitempty"`
	Time    time.Time `json:"time"`
	// Count, when set, makes this a summary: this many events of this kind happened in the
	// second that ended at Time; State and Reason are the last one's.
	Count int `json:"count,omitempty"`
}

// SummaryPeriod is how often per-call events of one kind are reported in full per circuit.
//
// A line and a message for every call would cost more than the call itself (a rejected call
// costs about a microsecond: docs/BENCHMARKS.md), and at a few hundred calls a second nobody can
// read them. So
// the first event of each kind in a period is logged and published at once, as the seed did; the
// rest of that period are counted and reported as one event with a Count when it ends, like
// "🔌 status:: rejected ×37". Transitions (open, halfOpen, close) are never held back: they
// report what was counted first, so the log and the bus keep their order, and start a new period,
// so the first calls after a change are shown in full. The observer (metrics) sees every event.
const SummaryPeriod = time.Second

// perCall are the events that happen once per call (or per retry) and may be summarised. A
// retry and a full bulkhead are among them: a burst against a full hop must not flood the bus
// and the log, nor, by passing for a transition, reset the period for every other kind.
var perCall = [...]Event{EventSuccess, EventFailure, EventTimeout, EventReject, EventFallback, EventRetry, EventFull, EventOutOfTime, EventBudget}

func perCallIndex(ev Event) int {
	for i, e := range perCall {
		if e == ev {
			return i
		}
	}
	return -1
}

// events logs and publishes one circuit's events.
type events struct {
	nc       *nats.Conn
	log      *slog.Logger
	subject  string
	service  string
	target   string
	observer func(BreakerEvent)

	mu        sync.Mutex
	periodEnd time.Time
	shown     [len(perCall)]bool         // this kind was reported in full this period
	held      [len(perCall)]BreakerEvent // the last one held back, with how many were
	timer     *time.Timer                // reports what is held when the period ends
}

// emit reports ev. state is passed in: a transition's new state comes with its event, and a
// listener should not call back into the breaker that is notifying it.
func (e *events) emit(ctx context.Context, ev Event, state State, reason string) {
	be := BreakerEvent{
		Service: e.service, Target: e.target, Event: ev, State: state,
		Reason: reason, RequestID: CallFrom(ctx).RequestID, Time: time.Now(),
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		be.TraceID = sc.TraceID().String()
	}
	spanEvent(ctx, be) // every one, summarised or not: the span is the call's own record
	if e.observer != nil {
		e.observer(be)
	}
	i := perCallIndex(ev)
	if i < 0 {
		e.flush(true)
		e.write(ctx, be)
		return
	}
	if e.hold(i, be) {
		return
	}
	e.write(ctx, be)
}

// hold counts be instead of reporting it when its kind was already shown this period.
func (e *events) hold(i int, be BreakerEvent) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !be.Time.Before(e.periodEnd) {
		e.startPeriod(be.Time)
	}
	if !e.shown[i] {
		e.shown[i] = true
		return false
	}
	count := e.held[i].Count + 1
	e.held[i] = be
	e.held[i].Count = count
	if e.timer == nil {
		e.timer = time.AfterFunc(time.Until(e.periodEnd), func() { e.flush(false) })
	}
	return true
}

// startPeriod begins a new period at now; what is held from the last one is reported by its
// timer. e.mu is held.
func (e *events) startPeriod(now time.Time) {
	e.periodEnd = now.Add(SummaryPeriod)
	e.shown = [len(perCall)]bool{}
}

// flush reports what is held; a transition also starts a new period.
func (e *events) flush(transition bool) {
	e.mu.Lock()
	held := e.held
	e.held = [len(perCall)]BreakerEvent{}
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
	if transition {
		e.startPeriod(time.Now())
	}
	e.mu.Unlock()
	for _, be := range held {
		if be.Count > 0 {
			be.RequestID, be.TraceID = "", "" // many requests
			e.write(context.Background(), be)
		}
	}
}

// write logs be and publishes it.
func (e *events) write(ctx context.Context, be BreakerEvent) {
	level := slog.LevelInfo
	switch be.Event {
	case EventOpen, EventFailure, EventTimeout:
		level = slog.LevelWarn
	}
	msg := "🔌 status:: " + seedWords[be.Event]
	attrs := []any{"target", e.target, "state", be.State.String()}
	if be.Count > 0 {
		msg += " ×" + strconv.Itoa(be.Count)
		attrs = append(attrs, "count", be.Count, "period", SummaryPeriod)
	}
	if be.Reason != "" {
		attrs = append(attrs, "reason", be.Reason)
	}
	e.log.Log(ctx, level, msg, attrs...)
	if data, err := json.Marshal(be); err == nil {
		// Best effort: a lost event must never fail the call it describes.
		_ = e.nc.Publish(e.subject, data)
	}
}
