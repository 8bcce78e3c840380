package order

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/breakerchain/breakerchain/internal/app"
	"github.com/breakerchain/breakerchain/internal/chain"
	"github.com/breakerchain/breakerchain/internal/store"
	"github.com/breakerchain/breakerchain/internal/wire"
	"github.com/breakerchain/breakerchain/messaging"
)

// Collection is where orders are stored.
const Collection = "orders"

// Service is order as the app runs it.
var Service = app.Service{
	Name:        "order",
	Description: "Takes orders over HTTP: the entry of breakerchain",
	Next:        "payment",
	Build: func(d app.Deps) (app.Parts, error) {
		b := &books{
			orders:   store.NewCollection[record](d.DB, Collection),
			outcomes: store.NewCollection[outcome](d.DB, OutcomesCollection),
			pending:  store.NewCollection[pendingRecord](d.DB, PendingCollection),
			redrive:  d.Config.Redrive,
		}
		a := &api{hop: d.Hop, books: b, log: d.Log,
			// A run of the chain takes at most the payment requester's longest (every attempt
			// and backoff) and three store operations (an insert, its retry when unanswered,
			// the outcome's write); the rest is slack.
			stallAfter: d.Config.Breaker.Longest() + 3*store.OpTimeout + 5*time.Second}
		parts := app.Parts{Routes: a.routes}
		if d.Config.Redrive.Rate > 0 {
			rd := newRedriver(b, d.Hop, d.Config.Redrive, a.stallAfter, newRedriveMetrics(d.Metrics.Registry(), b.pending), d.Log)
			parts.Background = rd.run
		}
		return parts, nil
	},
}

type api struct {
	hop *chain.Hop
	*books
	log        *slog.Logger
	stallAfter time.Duration
}

func (a *api) routes(r chi.Router) {
	r.Post("/create", a.create)
	r.Get("/orders/{id}", a.get)
}

// View is an order as the API shows it.
type View struct {
	ID     string           `json:"id"`
	Status string           `json:"status"`
	Reason string           `json:"reason,omitempty"`
	Reply  *messaging.Reply `json:"reply,omitempty"`
}

// Detail is an order as GET /orders/{id} shows it: the View, what was ordered, and how many
// times its chain ran.
type Detail struct {
	View
	Items       []any       `json:"items"`
	Payment     PaymentView `json:"payment"`
	CreatedAt   time.Time   `json:"created_at"`
	UpdatedAt   time.Time   `json:"updated_at"`
	Attempts    int         `json:"attempts"`               // runs of the chain that answered: the first, then re-drives
	LastError   string      `json:"last_error,omitempty"`   // why the last run that did not complete did not
	NextAttempt *time.Time  `json:"next_attempt,omitempty"` // a pending order's next re-drive, at the earliest
}

// PaymentView is the stored payment of an order.
type PaymentView struct {
	ID         string  `json:"id"`
	Amount     float64 `json:"amount"`
	ShipmentID string  `json:"shipment_id"`
	Directions string  `json:"directions"`
}

func summary(r *record) View {
	return View{ID: r.ID, Status: r.Status, Reason: r.Reason, Reply: r.Hops.reply()}
}

func (a *api) create(w http.ResponseWriter, req *http.Request) {
	mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type"))
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		a.fail(w, req, &messaging.ServiceError{Code: http.StatusUnsupportedMediaType,
			Description: "Content-Type must be application/json"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, wire.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			a.fail(w, req, messaging.Errorf(http.StatusRequestEntityTooLarge, "body is larger than %d bytes", wire.MaxBody))
		} else {
			a.fail(w, req, wire.Malformed("body could not be read"))
		}
		return
	}
	o, err := Decode(body)
	if err != nil {
		a.fail(w, req, err)
		return
	}
	ctx := messaging.WithCall(req.Context(), messaging.Call{Hop: 1, RequestID: middleware.GetReqID(req.Context()), Origin: o.ID})
	if err := a.hop.Delay(ctx); err != nil {
		return // the client left during the injected latency; nothing was saved
	}
	// From here the client hanging up changes nothing: once the order may be saved, the chain
	// runs to its end and its outcome is recorded, so the stored status tells the truth.
	ctx = context.WithoutCancel(ctx)
	rec, created, err := chain.Save(ctx, a.hop, a.orders, newRecord(ctx, o))
	if err != nil {
		a.fail(w, req, err)
		return
	}
	if !created {
		if err := a.resolve(ctx, rec); err != nil {
			a.fail(w, req, chain.StoreError(err))
			return
		}
		if !stalled(rec, a.stallAfter) {
			a.answer(w, req, http.StatusOK, summary(rec))
			return
		}
		a.log.WarnContext(ctx, "resuming an order whose chain never recorded an outcome", "id", rec.ID)
	}
	a.run(ctx, w, req, o, rec)
}

// run calls the chain for a saved order, records the outcome and answers.
func (a *api) run(ctx context.Context, w http.ResponseWriter, req *http.Request, o Order, rec *record) {
	reply, ferr := a.hop.Forward(ctx, o.Payment)
	out := newOutcome(rec.ID, rec.Attempts+1, rec.LastError, &reply, ferr)
	// Not queued yet: run is reached with a new order or a stalled one, both "in progress".
	_, _, err := a.keep(ctx, out, false)
	rec.apply(out)
	if err != nil {
		a.log.ErrorContext(ctx, "order outcome not recorded", "id", rec.ID, "err", err)
		rec.Status, rec.Reason = StatusPending, "saved, but its outcome could not be recorded: "+rec.Reason
	}
	switch {
	case ferr != nil:
		a.fail(w, req, ferr)
	case rec.Status == StatusCompleted:
		a.answer(w, req, http.StatusCreated, summary(rec))
	case rec.Status == StatusRejected:
		a.fail(w, req, messaging.Errorf(http.StatusConflict, "order %s rejected: %s", rec.ID, rec.Reason))
	default:
		a.answer(w, req, http.StatusAccepted, summary(rec))
	}
}

func (a *api) get(w http.ResponseWriter, req *http.Request) {
	rec, err := a.orders.Get(req.Context(), chi.URLParam(req, "id"))
	if err == nil {
		err = a.resolve(req.Context(), rec)
	}
	if err != nil {
		a.fail(w, req, chain.StoreError(err))
		return
	}
	p := rec.Payment
	d := Detail{
		View: summary(rec), Items: rec.Items, CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt,
		Payment:  PaymentView{ID: p.ID, Amount: p.Amount, ShipmentID: p.ShipmentID, Directions: p.Directions},
		Attempts: rec.Attempts, LastError: rec.LastError, NextAttempt: rec.NextAttempt,
	}
	if d.Items == nil {
		d.Items = []any{}
	}
	if wantsText(req) {
		a.answer(w, req, http.StatusOK, d.View)
		return
	}
	app.WriteJSON(w, http.StatusOK, d)
}

// wantsText reports whether the client asked for the seed's text form.
func wantsText(req *http.Request) bool {
	accept := req.Header.Get("Accept")
	return strings.Contains(accept, "text/plain") && !strings.Contains(accept, "application/json")
}

func (a *api) answer(w http.ResponseWriter, req *http.Request, code int, v View) {
	if !wantsText(req) {
		app.WriteJSON(w, code, v)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	if v.Reply != nil {
		_, _ = io.WriteString(w, v.Reply.Text())
		return
	}
	_, _ = io.WriteString(w, "order "+v.ID+": "+v.Status+" ("+v.Reason+")\n")
}

// fail answers err: a ServiceError with its code and text, anything else as a bare 500.
func (a *api) fail(w http.ResponseWriter, req *http.Request, err error) {
	se := messaging.AsServiceError(err)
	if se.Code == http.StatusServiceUnavailable {
		// Long enough for an order whose outcome is unknown to count as stalled: a retry with
		// the same id then resumes it rather than answering "in progress".
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(a.stallAfter.Seconds()))))
	}
	if se.Code >= http.StatusInternalServerError {
		a.log.ErrorContext(req.Context(), "request failed", "err", err)
	}
	if wantsText(req) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(se.Code)
		_, _ = io.WriteString(w, se.Description+"\n")
		return
	}
	app.WriteError(w, se.Code, se.Description, se.Field)
}
