package chaos

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/breakerchain/breakerchain/internal/problem"
	"github.com/breakerchain/breakerchain/internal/wire"
	"github.com/breakerchain/breakerchain/messaging"
)

// State is a service's faults as /breakers, GET|PUT /chaos and `nats micro stats` show them.
type State struct {
	Enabled bool `json:"enabled"` // CHAOS=1: they may be changed at runtime
	Shown
}

// Changed is what an instance publishes on messaging.ChaosChangedSubject for every change.
type Changed struct {
	Service   string    `json:"service"`
	ID        string    `json:"id"`
	Instance  string    `json:"instance"` // this process's instance of the service
	Via       string    `json:"via"`      // "nats" or "http"
	Faults    Shown     `json:"faults"`
	Previous  Shown     `json:"previous"`
	RequestID string    `json:"request_id,omitempty"`
	Time      time.Time `json:"time"`
}

// Controller changes one instance's faults at runtime: validated, applied atomically (a request
// reads the faults once, so it sees the old or the new ones whole), logged and published.
type Controller struct {
	enabled           bool
	service, id, inst string
	faults            *Injector
	nc                *nats.Conn
	log               *slog.Logger
	mu                sync.Mutex // one change at a time, so each event's "previous" is right
}

// NewController controls the faults of service (its instance named id); enabled is CHAOS=1.
func NewController(enabled bool, service, id string, faults *Injector, nc *nats.Conn, log *slog.Logger) *Controller {
	return &Controller{enabled: enabled, service: service, id: id, inst: nuid.Next(), faults: faults, nc: nc, log: log}
}

// State returns the faults in force and whether they may be changed.
func (c *Controller) State() State { return State{Enabled: c.enabled, Shown: c.faults.Faults().Show()} }

var errChaosOff = problem.Errorf(http.StatusForbidden, "chaos is off: start the service with CHAOS=1 to change its faults at runtime")

// change applies the change in data; bad input changes nothing.
func (c *Controller) change(ctx context.Context, data []byte, via string) (State, error) {
	if !c.enabled {
		return State{}, errChaosOff
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	next, err := ParseChange(data, c.faults.Faults())
	if err != nil {
		return State{}, err
	}
	prev := c.faults.Set(next)
	ev := Changed{
		Service: c.service, ID: c.id, Instance: c.inst, Via: via, Faults: next.Show(), Previous: prev.Show(),
		RequestID: messaging.CallFrom(ctx).RequestID, Time: time.Now().UTC().Truncate(time.Millisecond),
	}
	c.log.WarnContext(ctx, "💥 chaos changed", "via", via, "error_rate", next.ErrorRate, "latency", next.Latency,
		"previous_error_rate", prev.ErrorRate, "previous_latency", prev.Latency)
	if b, err := json.Marshal(ev); err == nil {
		// Best effort, like breaker events: the change is made whether or not anyone hears of it.
		_ = c.nc.Publish(messaging.ChaosChangedSubject(c.service), b)
	}
	return c.State(), nil
}

// Control is the chaos.<service> endpoint.
func (c *Controller) Control() messaging.Control {
	return messaging.Control{Name: "chaos", Subject: messaging.ChaosSubject(c.service),
		Handle: func(ctx context.Context, data []byte) (any, error) { return c.change(ctx, data, "nats") }}
}

// maxChaosBody bounds a PUT /chaos body: a change is two short fields.
const maxChaosBody = 4 << 10

// Get is GET /chaos: the faults in force.
func (c *Controller) Get(w http.ResponseWriter, _ *http.Request) {
	wire.WriteJSON(w, http.StatusOK, c.State())
}

// Put is PUT /chaos: a change, as JSON.
func (c *Controller) Put(w http.ResponseWriter, req *http.Request) {
	body, err := wire.ReadBody(w, req, maxChaosBody)
	if err != nil {
		wire.WriteProblem(w, err)
		return
	}
	ctx := messaging.WithCall(req.Context(), messaging.Call{RequestID: middleware.GetReqID(req.Context())})
	st, err := c.change(ctx, body, "http")
	if err != nil {
		wire.WriteProblem(w, err)
		return
	}
	wire.WriteJSON(w, http.StatusOK, st)
}
