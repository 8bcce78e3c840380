package messaging

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
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
	EventRetry: "retrying", EventFull: "bulkhead full",
}

// BreakerEvent is what is published on breaker.<service>.<target> for every event.
type BreakerEvent struct {
	Service   string    `json:"service"`
	Target    string    `json:"target"`
	Event     Event     `json:"event"`
	State     string    `json:"state"`
	Reason    string    `json:"reason,omitempty"`
	RequestID string    `json:"request_id,omitempty"`
	Time      time.Time `json:"time"`
}

// BreakerSubject is the subject a circuit's events are published on.
func BreakerSubject(service, target string) string { return "breaker." + service + "." + target }

// events logs and publishes one circuit's events.
type events struct {
	nc       *nats.Conn
	log      *slog.Logger
	subject  string
	service  string
	target   string
	observer func(BreakerEvent)
}

// emit logs and publishes ev. state is passed in: a transition's new state comes with its event,
// and a listener should not call back into the breaker that is notifying it.
func (e *events) emit(ctx context.Context, ev Event, state, reason string) {
	be := BreakerEvent{
		Service: e.service, Target: e.target, Event: ev, State: state,
		Reason: reason, RequestID: CallFrom(ctx).RequestID, Time: time.Now(),
	}
	level := slog.LevelInfo
	switch ev {
	case EventOpen, EventFailure, EventTimeout:
		level = slog.LevelWarn
	}
	attrs := []any{"target", e.target, "state", be.State}
	if reason != "" {
		attrs = append(attrs, "reason", reason)
	}
	e.log.Log(ctx, level, "🔌 status:: "+seedWords[ev], attrs...)
	if data, err := json.Marshal(be); err == nil {
		// Best effort: a lost event must never fail the call it describes.
		_ = e.nc.Publish(e.subject, data)
	}
	if e.observer != nil {
		e.observer(be)
	}
}
