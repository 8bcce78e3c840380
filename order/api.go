package order

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/breakerchain/breakerchain/internal/observe"
	"github.com/breakerchain/breakerchain/internal/problem"
	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/store"
	"github.com/breakerchain/breakerchain/internal/wire"
	"github.com/breakerchain/breakerchain/messaging"
)

// Collection is where orders are stored.
const Collection = "orders"

// Service is order as the app runs it.
var Service = service.Service{
	Name:        "order",
	Description: "Takes orders over HTTP: the entry of breakerchain",
	API:         "POST /create · GET /orders/{id}",
	Example:     func(id string) any { return Order{ID: id, Items: []any{}} },
	Collections: []string{Collection, ResultsCollection, OpenCollection},
	Check:       service.Check(Decode),
	Settle:      settle,
	Build:       build,
}

// build makes order's parts from d: its ledger and API and, when REDRIVE_RATE is set, its
// re-driver and reconciler (background).
func build(ctx context.Context, d service.Deps) (service.Parts, error) {
	q, err := openQueue(ctx, d.Queue, d.Config.JetStreamReplicas, d.Config.MongoDB)
	if err != nil {
		return service.Parts{}, err
	}
	b := newLedger(ctx, d, q)
	wait := ackWait(d.Config.Breaker, d.Config.Redrive.AckWait)
	a := &api{hop: d.Hop, ledger: b, log: d.Log, firstTimer: firstTimer(d.Config.Breaker, d.Config.Redrive.After),
		backlog: &backlog{read: queueSize(q), max: uint64(d.Config.BacklogMax)}}
	a.checkIn = a.firstTimer + wait
	var redriverWait time.Duration // this instance's say on the consumer: none without a re-driver
	if d.Config.Redrive.Rate > 0 {
		redriverWait = wait
	}
	m := newRedriveMetrics(d.Metrics.Registry(), q, redriverWait)
	a.admission = newAdmission(d.Config.Admission, d.Metrics.Registry())
	// Without its queue order takes no order (503 nothing saved): not ready.
	parts := service.Parts{Routes: a.routes, Ready: map[string]func(context.Context) error{"jetstream": q.ready},
		Limiters: func() []observe.Limiter { return []observe.Limiter{a.admission.state()} }}
	if d.Config.Redrive.Rate > 0 {
		if parts.Background, err = background(ctx, d, b, a.admission, wait, m); err != nil {
			return service.Parts{}, err
		}
	}
	for _, diff := range q.differ { // the re-driver's consumer's too: after background
		d.Log.WarnContext(ctx, "🧷 the shared queue keeps its own "+diff.Setting+", not this instance's; to change it for all: breakerchain apply-queue (docs/operations.md)",
			"object", diff.Object, "setting", diff.Setting, "queue_has", diff.Have, "this_instance", diff.Want, "variable", diff.From)
	}
	return parts, nil
}

// newLedger is the ledger of order's collections in d's database and queue q.
func newLedger(ctx context.Context, d service.Deps, q *queue) *ledger {
	b := &ledger{
		orders:  store.NewCollection[record](d.DB, Collection),
		results: store.NewCollection[result](d.DB, ResultsCollection),
		open:    store.NewCollection[openOrder](d.DB, OpenCollection),
		queue:   q,
		redrive: d.Config.Redrive,
		db:      q.db, // one name for the database: the queue's subjects and the entries' own
		log:     d.Log,
	}
	if err := b.open.Index(ctx, "check_at"); err != nil {
		// Not fatal, as a store not reachable yet is not: the reconciler's query scans the
		// open orders without it.
		d.Log.WarnContext(ctx, "open orders not indexed", "err", err)
	}
	return b
}

// background is what order runs beside its API: the re-driver and, when RECONCILE_EVERY is set,
// the reconciler, until ctx ends.
func background(ctx context.Context, d service.Deps, b *ledger, adm *admission, wait time.Duration, m *redriveMetrics) (func(context.Context), error) {
	rd, err := newRedriver(ctx, b, d.Hop, wait, adm, m, d.Log)
	if err != nil {
		return nil, err
	}
	every := d.Config.Redrive.ReconcileEvery
	if every <= 0 {
		return rd.run, nil
	}
	rc := &reconciler{ledger: b, every: every, horizon: wait, m: m, log: d.Log.With("reconciler", true)}
	return func(ctx context.Context) {
		var wg sync.WaitGroup
		wg.Go(func() { rc.run(ctx) })
		rd.run(ctx)
		wg.Wait()
	}, nil
}

// firstTimer is when a new order's timer fires if its request never records an outcome (the
// process died): REDRIVE_AFTER when set, else after the longest the payment requester can take
// (every attempt and backoff) and two store operations (the insert and its resend), plus slack.
// Firing earlier only runs a chain twice (a replay downstream, the same outcome recorded once);
// later leaves an order waiting longer.
func firstTimer(b messaging.BreakerSettings, after time.Duration) time.Duration {
	if after > 0 {
		return after
	}
	return b.Longest() + 2*store.OpTimeout + 2*time.Second
}

type api struct {
	hop        *service.Hop
	ledger     *ledger
	log        *slog.Logger
	firstTimer time.Duration
	checkIn    time.Duration // when the reconciler first looks at a new order: after its first timer and a run
	backlog    *backlog
	admission  *admission
}

func (a *api) routes(r chi.Router) {
	r.Post("/create", a.create)
	r.Get("/orders/{id}", a.get)
}

// View is an order as the API shows it: made from its record by record.view, only.
type View struct {
	ID     string           `json:"id"`
	Status string           `json:"status"`
	Reason string           `json:"reason,omitempty"`
	Reply  *messaging.Reply `json:"reply,omitempty"`
	// Compensation is what a rejection undid, by service: {"payment": "voided"}.
	Compensation map[string]messaging.Outcome `json:"compensation,omitempty"`
}

// Detail is an order as GET /orders/{id} shows it: the View, what was ordered, and how many
// times its chain ran. Made from its record by record.detail, only.
type Detail struct {
	View
	Items       []any           `json:"items"`
	Payment     json.RawMessage `json:"payment"` // the body sent to payment, as sent
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
	Attempts    int             `json:"attempts"`               // runs of the chain that answered: the first, then re-drives
	LastError   string          `json:"last_error,omitempty"`   // why the last run that did not complete did not
	NextAttempt *time.Time      `json:"next_attempt,omitempty"` // a pending order's next re-drive, at the earliest
	TraceID     string          `json:"trace_id,omitempty"`     // the trace of its first run (see trace.go)
}

// view is rec as the API answers it.
func (rec *record) view() View {
	st := &rec.State
	return View{ID: rec.ID, Status: st.Status, Reason: st.Reason, Reply: st.Hops.reply(), Compensation: st.Compensation}
}

// detail is rec as GET /orders/{id} answers it.
func (rec *record) detail() Detail {
	st := &rec.State
	d := Detail{
		View: rec.view(), Items: rec.Items, Payment: json.RawMessage(rec.paymentBody()),
		CreatedAt: rec.CreatedAt, UpdatedAt: st.UpdatedAt,
		Attempts: st.Attempts, LastError: st.LastError, NextAttempt: st.NextAttempt,
		TraceID: messaging.TraceIDOf(rec.Trace),
	}
	if d.Items == nil {
		d.Items = []any{}
	}
	return d
}

// create takes an order, in steps: refuse it at once if the chain is full (no permit, no room
// to wait for one), read its body, check it, admit it (take), then save it and run its chain
// (save). Each step that ends the request has answered it.
func (a *api) create(w http.ResponseWriter, req *http.Request) {
	if a.admission.full() {
		// Refused whatever the body says: a bad one is told so when it comes back.
		a.admission.refuse(refusedLimit)
		a.refuseAtLimit(w)
		return
	}
	body, err := wire.ReadBody(w, req, wire.MaxBody)
	if err != nil {
		a.fail(w, req, err)
		return
	}
	var b service.Body[Order]
	if !a.admission.checked(req.Context(), func() { b, err = service.Split(a.hop.After, body, Decode) }) {
		return // the client left while it waited its turn; nothing was read into the store
	}
	if err != nil {
		a.fail(w, req, err)
		return
	}
	ctx := messaging.WithCall(req.Context(), messaging.Call{Hop: 1, RequestID: middleware.GetReqID(req.Context()), Origin: b.Own.ID})
	if err := a.hop.Faults.Delay(ctx); err != nil {
		return // the client left during the injected latency; nothing was saved
	}
	permit, ok := a.take(ctx, w, req)
	if !ok {
		return
	}
	defer permit.Record()
	// From here the client hanging up changes nothing: once the order may be saved, the chain
	// runs to its end and its outcome is recorded, so the stored status tells the truth.
	a.save(context.WithoutCancel(ctx), w, req, b)
}

// take admits a new order, with the permit its run holds; false when it was refused, 503 with
// Retry-After, nothing saved: the backlog is full, or the chain at its limit.
func (a *api) take(ctx context.Context, w http.ResponseWriter, req *http.Request) (adaptivelimiter.Permit, bool) {
	if full, size := a.backlog.full(ctx); full {
		a.admission.refuse(refusedBacklog)
		a.writeError(w, a.retryAfter(), problem.Errorf(http.StatusServiceUnavailable,
			"order not taken: %d orders are waiting to complete, the most this system defers (BACKLOG_MAX); nothing was saved, retrying later with the same id is safe", size))
		return nil, false
	}
	permit, ok := a.admission.admit(ctx)
	if !ok {
		a.refuseAtLimit(w)
		return nil, false
	}
	return permit, true
}

// refuseAtLimit answers an order not taken because the chain is at its admission limit: retried
// soon, as room frees as fast as the chain completes orders.
func (a *api) refuseAtLimit(w http.ResponseWriter) {
	a.writeError(w, "1", problem.Errorf(http.StatusServiceUnavailable,
		"order not taken: the chain is at its limit of orders at once (%d); nothing was saved, retrying with the same id is safe",
		a.admission.lim.Limit()))
}

// save saves order b, runs its chain and answers. Write-ahead: the order's timer is set, then its
// copy among the open orders, before it may be saved, so an order saved by a process that dies
// from here on is re-driven by another, and one whose timer goes missing is found by the
// reconciler (see the package doc).
func (a *api) save(ctx context.Context, w http.ResponseWriter, req *http.Request, b service.Body[Order]) {
	id := b.Own.ID
	first := entry{ID: id, DB: a.ledger.db, Since: time.Now().UTC(), Due: dueIn(a.firstTimer)}
	timer, armed, err := a.ledger.queue.schedule(ctx, first, true)
	if err != nil {
		a.log.ErrorContext(ctx, "order not queued", "id", id, "err", err)
		a.fail(w, req, problem.Errorf(http.StatusServiceUnavailable, "order queue unavailable: nothing was saved; retrying later with the same id is safe"))
		return
	}
	rec := newRecord(ctx, b)
	opened, err := a.ledger.openCopy(ctx, rec, a.checkIn)
	if err != nil {
		a.log.ErrorContext(ctx, "order's open copy not saved", "id", id, "err", err)
		a.fail(w, req, service.StoreError(err)) // the order itself was not sent
		return
	}
	rec, created, err := service.Save(ctx, a.hop, a.ledger.orders, rec)
	switch {
	case err != nil:
		a.fail(w, req, a.notSaved(ctx, id, err, timer, opened))
	case !created:
		a.replay(ctx, w, req, rec, timer, opened)
	default:
		if !armed {
			// The order had an entry already, left by an earlier request whose insert never
			// landed: it may fire before this one finishes, or have fired. This order gets its
			// own timer.
			if timer, _, err = a.ledger.queue.schedule(ctx, first, false); err != nil {
				a.log.WarnContext(ctx, "order's own timer not set; an earlier one stays", "id", id, "err", err)
			}
		}
		a.callChain(ctx, w, req, rec, timer)
	}
}

// notSaved undoes what save wrote ahead of order id's insert, which failed with err, as far as
// nobody else may rely on it, and returns what the client is told. timer and opened are as save
// set them.
func (a *api) notSaved(ctx context.Context, id string, err error, timer uint64, opened bool) error {
	code := problem.From(err).Code
	if code >= http.StatusInternalServerError {
		// The timer and the copy stay: the order is found, or saved from its copy, and run.
		return service.StoreError(store.ErrUnknown)
	}
	// Refused (409, 422): nothing of ours was saved. After a 409 the open copy, even ours, stays
	// while the order holding the id is not final: it may be another request's, in flight and
	// relying on it, and the reconciler removes it once that order is final.
	_ = a.ledger.queue.deleteTimer(ctx, timer)
	if opened && (code != http.StatusConflict || a.ledger.isFinal(ctx, id)) {
		a.ledger.closeOpen(ctx, id)
	}
	return err
}

// replay answers a repeat of order rec, saved before, with the state it is in. Once it is final
// the timer this request set and the copy it wrote go: a final order needs neither.
func (a *api) replay(ctx context.Context, w http.ResponseWriter, req *http.Request, rec *record, timer uint64, opened bool) {
	if err := a.ledger.loadState(ctx, rec); err != nil {
		a.fail(w, req, lookupError(err))
		return
	}
	if rec.State.final() {
		_ = a.ledger.queue.deleteTimer(ctx, timer)
		if opened {
			a.ledger.closeOpen(ctx, rec.ID)
		}
	}
	a.answer(w, req, http.StatusOK, rec.view())
}

// lookupError is what a client is told when reading an order failed: the store's errors as
// service.StoreError says them, and 503 when the queue could not say what became of it.
func lookupError(err error) error {
	if errors.Is(err, ErrQueueUnavailable) {
		return problem.Errorf(http.StatusServiceUnavailable, "order queue unavailable: this order's state cannot be read now")
	}
	return service.StoreError(err)
}

// callChain calls the chain for a new order whose timer is at sequence timer, records the
// outcome and answers.
func (a *api) callChain(ctx context.Context, w http.ResponseWriter, req *http.Request, rec *record, timer uint64) {
	reply, ferr := a.hop.ForwardNew(ctx, rec.ID, rec.paymentBody())
	out := stateAfter(1, "", &reply, ferr)
	traceOutcome(ctx, out)
	compensate(ctx, a.hop, rec, out) // a rejection voids what was paid before it is recorded
	_, _, err := a.ledger.saveResult(ctx, rec.ID, out, rec.CreatedAt)
	if err == nil && out.final() {
		_ = a.ledger.queue.deleteTimer(ctx, timer) // left behind, it fires and finds the order final
		a.ledger.closeOpen(ctx, rec.ID)
	}
	rec.State = *out
	if err != nil && out.final() {
		// Payment and shipment answered, but what they said is not written down. The order stays
		// queued (its first timer, or this sooner one) and a re-drive records it: their work is
		// done once, a second run of the chain is a replay.
		a.log.ErrorContext(ctx, "order outcome not recorded; queued for a re-drive", "id", rec.ID, "err", err)
		out = &state{Status: StatusPending, Hops: out.Hops, Attempts: 1,
			Reason: "saved, but its outcome could not be recorded yet: it will be, by itself (" + out.Status + " so far)"}
		out.LastError = out.Reason
		if _, _, qerr := a.ledger.saveResult(ctx, rec.ID, out, rec.CreatedAt); qerr != nil {
			a.log.WarnContext(ctx, "re-drive not brought forward; the order's first timer stays", "id", rec.ID, "err", qerr)
		}
		rec.State = *out
	} else if err != nil {
		a.log.WarnContext(ctx, "pending order's next re-drive not set; its first timer stays", "id", rec.ID, "err", err)
	}
	switch {
	case ferr != nil:
		a.fail(w, req, ferr)
	case rec.State.Status == StatusCompleted:
		a.answer(w, req, http.StatusCreated, rec.view())
	case rec.State.Status == StatusRejected:
		a.fail(w, req, problem.Errorf(http.StatusConflict, "order %s rejected: %s", rec.ID, rec.State.Reason))
	default:
		a.answer(w, req, http.StatusAccepted, rec.view())
	}
}

func (a *api) get(w http.ResponseWriter, req *http.Request) {
	rec, err := a.ledger.orders.Get(req.Context(), chi.URLParam(req, "id"))
	if err == nil {
		err = a.ledger.loadState(req.Context(), rec)
	}
	if err != nil {
		a.fail(w, req, lookupError(err))
		return
	}
	d := rec.detail()
	if wantsText(req) {
		a.answer(w, req, http.StatusOK, d.View)
		return
	}
	wire.WriteJSON(w, http.StatusOK, d)
}

// wantsText reports whether the client asked for the seed's text form.
func wantsText(req *http.Request) bool {
	accept := req.Header.Get("Accept")
	return strings.Contains(accept, "text/plain") && !strings.Contains(accept, "application/json")
}

func (a *api) answer(w http.ResponseWriter, req *http.Request, code int, v View) {
	if !wantsText(req) {
		wire.WriteJSON(w, code, v)
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

// fail answers err: a *problem.Error with its code and text, anything else as a bare 500. A
// 503 says when to retry; a 5xx is logged.
func (a *api) fail(w http.ResponseWriter, req *http.Request, err error) {
	se := problem.From(err)
	if se.Code >= http.StatusInternalServerError {
		a.log.ErrorContext(req.Context(), "request failed", "err", err)
	}
	a.writeError(w, a.retryAfter(), se)
}

// retryAfter is long enough for an order that may have been saved to have been re-driven: a
// retry with the same id then finds what became of it.
func (a *api) retryAfter() string { return strconv.Itoa(int(math.Ceil(a.firstTimer.Seconds()))) }

// writeError answers se, with Retry-After when it is a 503, and logs nothing: an order not taken is
// the system working — counted, not logged, as under overload there are thousands a second.
func (a *api) writeError(w http.ResponseWriter, retryAfter string, se *problem.Error) {
	if se.Code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfter)
	}
	// JSON even when the client asked for the seed's text: that is the chain's answer; an error
	// is the contract's {"error", "field"}, which a script reads the same whatever it accepts.
	wire.WriteError(w, se.Code, se.Description, se.Field)
}
