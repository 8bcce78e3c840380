package order

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/failsafe-go/failsafe-go/ratelimiter"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/breakerchain/breakerchain/internal/chain"
	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/store"
	"github.com/breakerchain/breakerchain/messaging"
)

// Re-driving pending orders
//
// An order whose chain did not complete (payment or shipment unavailable, a timeout, an open
// circuit, order's own injected error) is queued: its pending outcome is a small document in the
// pending collection, _id = the order's id, removed once the order is completed or rejected (its
// final outcome inserted into order_outcomes first). A rejected order (a hop refused it, 4xx) is
// final and never queued; an order still running its chain is not queued until that chain has
// answered. An order whose process died mid-chain is not queued either: a replay of its request
// resumes it (see stalled).
//
// Every order instance runs a re-driver. Every REDRIVE_INTERVAL it looks for queued orders that
// are due and runs their chain again, one at a time, at most REDRIVE_RATE a second, through the
// instance's own order→payment requester: the same circuit, retries and bulkhead as live
// orders. So it backs off while the circuit is open (it does not even look), sends one order as
// the trial when the open delay has passed, and drains the rest once the trial closed the
// circuit. An order whose re-drive fails again waits REDRIVE_BACKOFF, doubled per attempt up to
// config.MaxRedriveBackoff, ±20 %.
//
// Why a side collection. On the embedded store only a filter on _id alone is pushed down to
// SQLite; a query on status would scan every order ever taken. The queue holds only the orders
// that are pending, so finding the due ones (a filter on "due") and claiming one scan a small
// collection, and every other operation (load, update, delete) is by _id.
//
// Claims. An instance claims a queued order with one conditional update, filtered on _id and
// on the order being due, that moves "due" a lease into the future (the longest a chain run
// and its store operations can take). A claimer that crashes leaves its lease to expire; the
// order is then due again for any instance. On MongoDB the update is atomic: one claimer wins.
// The embedded store (FerretDB) does not make concurrent updates of one document atomic, so two
// instances can both win the same claim now and then. That is harmless by design rather than
// prevented: every hop is idempotent by id, so the second run of the chain is a replay at
// payment and shipment (no second record, no second charge) and writes the same outcome on the
// order. Instances also take the due orders in a random order, which makes such races rare.
// A recovery is counted by the instance whose delete removed the queue entry.

// PendingCollection is the queue of orders to re-drive.
const PendingCollection = "pending"

// pendingRecord is a queued order: its pending outcome, and when to re-drive it.
type pendingRecord struct {
	Outcome outcome   `bson:",inline"`
	Due     time.Time `bson:"due"`             // not before: the backoff after a failed run, or a claimer's lease
	Owner   string    `bson:"owner,omitempty"` // the instance whose lease it is, while claimed
	Since   time.Time `bson:"since"`           // queued since
}

// redriveBackoff is the wait before re-driving an order after its attempts-th run failed.
func redriveBackoff(cfg config.Redrive, attempts int) time.Duration {
	d, most := cfg.Backoff, max(cfg.Backoff, config.MaxRedriveBackoff)
	for i := 1; i < attempts && d < most; i++ {
		d *= 2
	}
	d = min(d, most)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// books are where orders and their outcomes are kept.
type books struct {
	orders   *store.Collection[record]
	outcomes *store.Collection[outcome]
	pending  *store.Collection[pendingRecord]
	redrive  config.Redrive
}

// resolve applies to rec what became of it: its final outcome, else its pending one, else
// nothing (its chain has not answered yet).
func (b *books) resolve(ctx context.Context, rec *record) error {
	out, err := b.outcomes.Get(ctx, rec.ID)
	if err == nil {
		rec.apply(out)
		return nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	p, err := b.pending.Get(ctx, rec.ID)
	if err == nil {
		rec.apply(&p.Outcome)
		due := p.Due
		rec.NextAttempt = &due
		return nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// keep records out. A final outcome is inserted (a duplicate is a concurrent run that finished
// first, equally true) and, when queued says the order may be in the pending queue, the order
// leaves it; removed says this call removed it. A pending outcome is queued, due after the
// backoff of its attempt, which is returned; an order just created is not queued yet, so its
// healthy path costs one insert.
func (b *books) keep(ctx context.Context, out *outcome, queued bool) (due time.Time, removed bool, err error) {
	if out.final() {
		if err := b.outcomes.Insert(ctx, out); err != nil && !errors.Is(err, store.ErrDuplicate) {
			return time.Time{}, false, err
		}
		if !queued {
			return time.Time{}, false, nil
		}
		removed, err = b.pending.Delete(ctx, out.ID)
		return time.Time{}, removed, err
	}
	now := time.Now().UTC()
	due = now.Add(redriveBackoff(b.redrive, out.Attempts))
	p := &pendingRecord{Outcome: *out, Due: due, Since: now}
	if !queued {
		// An insert the first time: a replace scans the collection.
		if err = b.pending.Insert(ctx, p); !errors.Is(err, store.ErrDuplicate) {
			return due, false, err
		}
	}
	ok, err := b.pending.Update(ctx, bson.D{{Key: "_id", Value: out.ID}}, bson.D{
		{Key: "status", Value: out.Status}, {Key: "reason", Value: out.Reason}, {Key: "hops", Value: out.Hops},
		{Key: "updated_at", Value: out.UpdatedAt}, {Key: "attempts", Value: out.Attempts},
		{Key: "last_error", Value: out.LastError}, {Key: "due", Value: due}, {Key: "owner", Value: ""}})
	if err == nil && !ok {
		// Gone from the queue: a run that raced this one finished the order, or the entry was
		// never there. Queued again; a finished order's next re-drive only removes it.
		err = b.pending.Insert(ctx, p)
		if errors.Is(err, store.ErrDuplicate) {
			err = nil
		}
	}
	return due, false, err
}

// redriveMetrics are the re-driver's series on the service's /metrics.
type redriveMetrics struct {
	recovered prometheus.Counter
	attempts  *prometheus.CounterVec
}

// newRedriveMetrics registers the re-driver's series. The pending count is read when /metrics
// is scraped, not on every pass: on the embedded store a count scans the queue, and with one
// store connection per service a scan each second would hold up live orders.
func newRedriveMetrics(reg prometheus.Registerer, pending *store.Collection[pendingRecord]) *redriveMetrics {
	labels := prometheus.Labels{"service": "order"}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "breakerchain_orders_pending", ConstLabels: labels,
		Help: "Orders queued for a re-drive (all instances share the queue), counted when scraped; -1 when the store did not answer.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), store.SelectTimeout)
		defer cancel()
		n, err := pending.Count(ctx, bson.D{})
		if err != nil {
			return -1
		}
		return float64(n)
	}))
	m := &redriveMetrics{
		recovered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "breakerchain_orders_recovered_total", ConstLabels: labels,
			Help: "Pending orders this instance's re-driver completed.",
		}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "breakerchain_redrive_attempts_total", ConstLabels: labels,
			Help: "Re-drives of pending orders by this instance, by the order's status after it: completed, pending, rejected.",
		}, []string{"status"}),
	}
	reg.MustRegister(m.recovered, m.attempts)
	return m
}

// redriver re-drives the pending orders (see the comment at the top of this file).
type redriver struct {
	*books
	hop     *chain.Hop
	cfg     config.Redrive
	lease   time.Duration
	owner   string
	batch   int64
	limiter ratelimiter.RateLimiter[any]
	m       *redriveMetrics
	log     *slog.Logger
}

func newRedriver(b *books, hop *chain.Hop, cfg config.Redrive, lease time.Duration, m *redriveMetrics, log *slog.Logger) *redriver {
	// A pass takes at most twice what the rate allows in an interval: enough to keep the rate
	// busy, few enough that the list is fresh.
	batch := min(max(int64(2*float64(cfg.Rate)*cfg.Interval.Seconds()), 10), 500)
	return &redriver{books: b, hop: hop, cfg: cfg, lease: lease, owner: nuid.Next(),
		batch: batch, limiter: ratelimiter.NewSmooth[any](uint(max(cfg.Rate, 1)), time.Second), m: m,
		log: log.With("redriver", true)}
}

// run re-drives until ctx ends.
func (d *redriver) run(ctx context.Context) {
	t := time.NewTicker(d.cfg.Interval)
	defer t.Stop()
	for {
		d.pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// circuitOpen reports whether the circuit towards payment is open and still in its delay: then
// a re-drive would only be rejected.
func (d *redriver) circuitOpen() bool {
	q := d.hop.Next
	return q.State() == "open" && q.Breaker().RemainingDelay() > 0
}

// pass re-drives the orders due now, as many as one list holds.
func (d *redriver) pass(ctx context.Context) {
	if d.circuitOpen() {
		return
	}
	due, err := d.pending.Find(ctx, bson.D{{Key: "due", Value: bson.D{{Key: "$lte", Value: time.Now().UTC()}}}},
		bson.D{{Key: "due", Value: 1}}, d.batch)
	if err != nil {
		if ctx.Err() == nil {
			d.log.WarnContext(ctx, "pending orders not listed", "err", err)
		}
		return
	}
	rand.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
	for _, p := range due {
		if err := d.limiter.AcquirePermit(ctx); err != nil {
			return // stopping
		}
		if d.circuitOpen() || !d.redrive(ctx, p) {
			return // back off: the circuit will say when to try again
		}
	}
}

// requeue gives the claim on id back, due at due.
func (d *redriver) requeue(ctx context.Context, id string, due time.Time) {
	_, err := d.pending.Update(ctx, bson.D{{Key: "_id", Value: id}},
		bson.D{{Key: "due", Value: due.UTC()}, {Key: "owner", Value: ""}})
	if err != nil {
		d.log.WarnContext(ctx, "pending order not given back; its lease will expire", "id", id, "err", err)
	}
}

// redrive claims the queued order p and runs its chain once more. It returns false when
// payment was not called because its circuit (or the hop's bulkhead) rejected the call: that
// is not an attempt, and the pass should stop.
func (d *redriver) redrive(ctx context.Context, p pendingRecord) bool {
	id := p.Outcome.ID
	now := time.Now().UTC()
	claimed, err := d.pending.Update(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "due", Value: bson.D{{Key: "$lte", Value: now}}}},
		bson.D{{Key: "due", Value: now.Add(d.lease)}, {Key: "owner", Value: d.owner}})
	if err != nil || !claimed {
		return true // another instance has it, or the store is away: its turn will come again
	}
	// The run is not cut short by a shutdown: it is bounded (the lease), and its outcome
	// should be recorded.
	ctx = context.WithoutCancel(ctx)
	rec, err := d.orders.Get(ctx, id)
	if err == nil {
		err = d.resolve(ctx, rec)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		_, _ = d.pending.Delete(ctx, id)
		return true
	case err != nil:
		d.log.WarnContext(ctx, "pending order not loaded; its lease will expire", "id", id, "err", err)
		return true
	case rec.Status != StatusPending:
		_, _ = d.pending.Delete(ctx, id) // completed or rejected meanwhile: nothing to do
		return true
	}

	attempt := rec.Attempts + 1
	rid := rec.RequestID
	if rid == "" {
		rid = nuid.Next()
	}
	cctx := messaging.WithCall(ctx, messaging.Call{Hop: 1, RequestID: fmt.Sprintf("%s.r%d", rid, attempt), Origin: id})
	log := d.log.With("id", id, "attempt", attempt)
	log.InfoContext(cctx, "🔁 re-driving pending order", "last_error", rec.LastError)
	reply, ferr := d.hop.Forward(cctx, rec.Payment.payment())
	if p := reply.Next; ferr == nil && p != nil && p.Outcome == messaging.OutcomeRejected {
		// Payment was not asked: give the claim back, due now, for after the circuit's delay.
		d.requeue(ctx, id, now)
		return false
	}

	out := newOutcome(id, attempt, rec.LastError, &reply, ferr)
	d.m.attempts.WithLabelValues(out.Status).Inc()
	next, removed, err := d.keep(ctx, out, true)
	switch {
	case err != nil:
		log.WarnContext(ctx, "re-drive outcome not recorded; its lease will expire", "status", out.Status, "err", err)
	case out.Status == StatusPending:
		log.InfoContext(cctx, "⏳ still pending", "reason", out.Reason, "next_attempt", next)
	case out.Status == StatusCompleted:
		log.InfoContext(cctx, "✅ pending order completed")
		if removed {
			d.m.recovered.Inc()
		}
	default:
		log.WarnContext(cctx, "⛔ pending order rejected", "reason", out.Reason)
	}
	return true
}
