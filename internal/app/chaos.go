package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/breakerchain/breakerchain/internal/chain"
	"github.com/breakerchain/breakerchain/messaging"
)

// ChaosSubject is the subject every instance of service takes chaos changes on (CHAOS=1).
func ChaosSubject(service string) string { return "chaos." + service }

// ChaosChangedSubject is the subject an instance publishes each change of its faults on.
func ChaosChangedSubject(service string) string { return "chaos." + service + ".changed" }

// Chaos is a service's faults as /breakers, GET|PUT /chaos and `nats micro stats` show them.
type Chaos struct {
	Enabled bool `json:"enabled"` // CHAOS=1: they may be changed at runtime
	chain.View
}

// ChaosChange is what an instance publishes on ChaosChangedSubject for every change.
type ChaosChange struct {
	Service   string     `json:"service"`
	ID        string     `json:"id"`
	Instance  string     `json:"instance"` // this process's instance of the service
	Via       string     `json:"via"`      // "nats" or "http"
	Faults    chain.View `json:"faults"`
	Previous  chain.View `json:"previous"`
	RequestID string     `json:"request_id,omitempty"`
	Time      time.Time  `json:"time"`
}

// chaos changes one instance's faults at runtime: validated, applied atomically (a request reads
// the faults once, so it sees the old or the new ones whole), logged and published.
type chaos struct {
	enabled           bool
	service, id, inst string
	hop               *chain.Hop
	nc                *nats.Conn
	log               *slog.Logger
	mu                sync.Mutex // one change at a time, so each event's "previous" is right
}

func newChaos(enabled bool, service, id string, hop *chain.Hop, nc *nats.Conn, log *slog.Logger) *chaos {
	return &chaos{enabled: enabled, service: service, id: id, inst: nuid.Next(), hop: hop, nc: nc, log: log}
}

func (c *chaos) state() Chaos { return Chaos{Enabled: c.enabled, View: c.hop.Faults().View()} }

var errChaosOff = messaging.Errorf(http.StatusForbidden, "chaos is off: start the service with CHAOS=1 to change its faults at runtime")

// change applies the change in data; bad input changes nothing.
func (c *chaos) change(ctx context.Context, data []byte, via string) (Chaos, error) {
	if !c.enabled {
		return Chaos{}, errChaosOff
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	next, err := chain.ParseChange(data, c.hop.Faults())
	if err != nil {
		return Chaos{}, err
	}
	prev := c.hop.SetFaults(next)
	ev := ChaosChange{
		Service: c.service, ID: c.id, Instance: c.inst, Via: via, Faults: next.View(), Previous: prev.View(),
		RequestID: messaging.CallFrom(ctx).RequestID, Time: time.Now().UTC().Truncate(time.Millisecond),
	}
	c.log.WarnContext(ctx, "💥 chaos changed", "via", via, "error_rate", next.ErrorRate, "latency", next.Latency,
		"previous_error_rate", prev.ErrorRate, "previous_latency", prev.Latency)
	if b, err := json.Marshal(ev); err == nil {
		// Best effort, like breaker events: the change is made whether or not anyone hears of it.
		_ = c.nc.Publish(ChaosChangedSubject(c.service), b)
	}
	return c.state(), nil
}

// control is the chaos.<service> endpoint.
func (c *chaos) control() messaging.Control {
	return messaging.Control{Name: "chaos", Subject: ChaosSubject(c.service),
		Handle: func(ctx context.Context, data []byte) (any, error) { return c.change(ctx, data, "nats") }}
}

// maxChaosBody bounds a PUT /chaos body: a change is two short fields.
const maxChaosBody = 4 << 10

func (c *chaos) get(w http.ResponseWriter, _ *http.Request) { WriteJSON(w, http.StatusOK, c.state()) }

func (c *chaos) put(w http.ResponseWriter, req *http.Request) {
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil ||
		(mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		WriteError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json", "")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxChaosBody))
	if err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			WriteError(w, http.StatusRequestEntityTooLarge, "body is too large", "")
		} else {
			WriteError(w, http.StatusBadRequest, "body could not be read", "")
		}
		return
	}
	ctx := messaging.WithCall(req.Context(), messaging.Call{RequestID: middleware.GetReqID(req.Context())})
	st, err := c.change(ctx, body, "http")
	if err != nil {
		se := messaging.AsServiceError(err)
		WriteError(w, se.Code, se.Description, se.Field)
		return
	}
	WriteJSON(w, http.StatusOK, st)
}
