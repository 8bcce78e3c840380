package order

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/failsafe-go/failsafe-go/ratelimiter"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/store"
	"github.com/breakerchain/breakerchain/messaging"
)

// insertHorizon is how long after an order was taken (its record made, once its timer was set)
// a live request may still be writing it: its open copy, then the order, each an insert, its
// resend and the read of what landed, each bounded, and slack. An order not in the store but
// whose open copy is waits this long before it is saved from the copy (see ledger.find). It
// bounds nothing for a paused process or a partition, and need not: an insert landing later is
// a duplicate of the order saved (its request, if still there, answers it as a replay).
const insertHorizon = 6*store.OpTimeout + 2*time.Second

// ackWait is how long a re-drive may hold a due order before JetStream gives it to another
// instance: REDRIVE_ACK_WAIT when set, else the longest one run can take (the order and its
// outcome read, the chain, the outcome written, the next timer set), and slack. The run also
// tells JetStream it is in progress before each long step.
func ackWait(b messaging.BreakerSettings, set time.Duration) time.Duration {
	if set > 0 {
		return set
	}
	return 3*store.OpTimeout + b.Longest() + QueueTimeout + 2*time.Second
}

// settle fills in the re-drive timers derived from the breaker's settings where REDRIVE_AFTER
// and REDRIVE_ACK_WAIT leave them to order, so the start log shows the values used, and marks
// the settings as order's (TakesOrders): the ones only it reads are in its start log. Not for
// apply-queue, which reads an unset REDRIVE_ACK_WAIT as "keep the queue's".
func settle(c config.Settings) config.Settings {
	c.TakesOrders = true
	c.Redrive.After = firstTimer(c.Breaker, c.Redrive.After)
	c.Redrive.AckWait = ackWait(c.Breaker, c.Redrive.AckWait)
	return c
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

// redriver takes due orders from the queue and runs their chain again (see the package doc),
// as many at once as the admission limit leaves room for.
type redriver struct {
	ledger    *ledger
	hop       *service.Hop
	consumer  jetstream.Consumer
	ackWait   time.Duration
	admission *admission
	ceiling   ratelimiter.RateLimiter[any] // REDRIVE_RATE
	m         *redriveMetrics
	log       *slog.Logger
	foreign   sync.Map // databases whose due orders this instance was given: warned once each
}

// consumerConfig is the re-driver's durable pull consumer: every instance takes from it, each due
// order goes to one at a time, and one not acknowledged within ackWait (the instance died) goes
// to another.
func consumerConfig(ackWait time.Duration) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "breakerchain order instances re-driving due orders",
		FilterSubject: DueSubjects,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: 1000,
	}
}

func newRedriver(ctx context.Context, b *ledger, hop *service.Hop, ackWait time.Duration, adm *admission, m *redriveMetrics, log *slog.Logger) (*redriver, error) {
	var c jetstream.Consumer
	err := whileStarting(ctx, func(ctx context.Context) (err error) {
		var differ []Difference
		c, differ, err = ensureConsumer(ctx, b.queue.stream, consumerConfig(ackWait))
		if err == nil {
			b.queue.differ = append(b.queue.differ, differ...)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("JetStream consumer %s: %w", ConsumerName, err)
	}
	return &redriver{ledger: b, hop: hop, consumer: c, ackWait: ackWait, admission: adm,
		ceiling: ratelimiter.NewSmooth[any](uint(max(b.redrive.Rate, 1)), time.Second), m: m,
		log: log.With("redriver", true)}, nil
}

// heal creates the queue's streams and this consumer again if they are gone (see queue.heal).
func (d *redriver) heal(ctx context.Context) {
	d.ledger.queue.heal(ctx, QueueTimeout)
	ctx, cancel := context.WithTimeout(ctx, QueueTimeout)
	defer cancel()
	if _, err := d.ledger.queue.stream.Consumer(ctx, ConsumerName); errors.Is(err, jetstream.ErrConsumerNotFound) {
		_, _ = d.ledger.queue.stream.CreateConsumer(ctx, d.consumer.CachedInfo().Config) // as last seen (see queue.heal)
	}
}

// circuitWait is how long the circuit towards payment will still reject calls: re-drives wait
// it out rather than be rejected.
func (d *redriver) circuitWait() time.Duration {
	q := d.hop.Next
	if q.State() != messaging.StateOpen {
		return 0
	}
	return q.Breaker().RemainingDelay()
}

// trial reports whether the circuit towards payment is not closed: its next call is a trial,
// which one re-drive makes while the others wait, so the circuit never rejects a re-drive.
func (d *redriver) trial() bool { return d.hop.Next.State() != messaging.StateClosed }

// run takes due orders until ctx ends, and waits for the re-drives it started: none while the
// circuit towards payment is open, one at a time while it is half-open; otherwise as many at
// once as the admission limit spares (behind clients' orders, at most half of it, fewer while
// clients' orders slow: drainPace), at most REDRIVE_RATE a second. So a backlog drains at the
// pace the chain has room for, and gives the room back when clients feel it.
func (d *redriver) run(ctx context.Context) {
	var running sync.WaitGroup
	defer running.Wait()
	for ctx.Err() == nil {
		if wait := d.circuitWait(); wait > 0 {
			sleep(ctx, wait)
			continue
		}
		room := d.admission.spare(d.trial())
		if room == 0 {
			d.waitForFreed(ctx)
			continue
		}
		// A long poll on the server, ended early by a shutdown: nothing is polled in the store.
		// The due orders are handed over as they come, each once it has its permit.
		fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		batch, err := d.consumer.Fetch(room, jetstream.FetchContext(fctx))
		if err == nil {
			for msg := range batch.Messages() {
				permit, ok := d.waitForRoom(ctx, msg)
				if !ok {
					d.giveBack(ctx, msg, 0, "", nil) // stopping: for another instance, or the next start
					continue
				}
				running.Go(func() {
					defer permit.Record()
					d.redriveOne(ctx, msg)
				})
			}
			err = batch.Error()
		}
		cancel()
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			d.log.WarnContext(ctx, "due orders not fetched", "err", err)
			sleep(ctx, time.Second)
			d.heal(ctx)
		}
	}
}

// roomPoll is how often the re-driver looks for room under the limit when it has none and no
// permit is given back meanwhile: the pace and a waiting client change what spare allows too.
const roomPoll = 20 * time.Millisecond

// waitForFreed waits until a permit is given back, roomPoll at most, or ctx ends. Polling
// alone, a slot could stand empty for up to a poll after each re-drive of about 50 ms, and a
// drain with no client kept 19 of its 31 busy on average; woken by releases, 24–25.
func (d *redriver) waitForFreed(ctx context.Context) { d.admission.awaitFreed(ctx, roomPoll) }

// waitForRoom holds msg until the admission limit spares a permit for its re-drive and
// REDRIVE_RATE allows it, telling JetStream it is in progress meanwhile; false once ctx ends.
func (d *redriver) waitForRoom(ctx context.Context, msg jetstream.Msg) (adaptivelimiter.Permit, bool) {
	if err := d.ceiling.AcquirePermit(ctx); err != nil {
		return nil, false // before the permit: a wait for the rate is not the chain's latency
	}
	progress := time.Now()
	for {
		if p, ok := d.admission.tryRedrive(d.trial()); ok {
			return p, true
		}
		if time.Since(progress) > time.Second {
			_ = msg.InProgress()
			progress = time.Now()
		}
		d.waitForFreed(ctx)
		if ctx.Err() != nil {
			return nil, false
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// giveBack returns msg to the queue, to be delivered again after delay.
func (d *redriver) giveBack(ctx context.Context, msg jetstream.Msg, delay time.Duration, why string, err error) {
	if err != nil {
		d.log.WarnContext(ctx, why+"; given back to the queue", "subject", msg.Subject(), "err", err, "retry_in", delay)
	}
	if nerr := msg.NakWithDelay(delay); nerr != nil {
		d.log.WarnContext(ctx, "due order not given back; JetStream redelivers it after its ack wait", "err", nerr)
	}
}

// finish acknowledges the due message of order id, now final, once its pending mark is gone;
// otherwise it gives it back, to be found final and finished again after retry. Its open copy
// goes too.
func (d *redriver) finish(ctx context.Context, msg jetstream.Msg, id string, retry time.Duration) {
	if err := d.ledger.queue.unmarkPending(ctx, id); err != nil {
		d.giveBack(ctx, msg, retry, "final order's pending mark not removed", err)
		return
	}
	d.ledger.closeOpen(ctx, id)
	_ = msg.Ack()
}

// notOurs puts a due order of another database back in the queue, for an instance of its own:
// order instances on different databases that share this NATS share its queue (a setup to
// avoid: give each database a NATS of its own). It goes back as a timer due after foreignDelay
// and is acknowledged, rather than given back unacknowledged: those count against the
// consumer's MaxAckPending, and a thousand would keep this instance's own orders from it. Said
// once per database, as a warning; each counted.
func (d *redriver) notOurs(ctx context.Context, msg jetstream.Msg, e entry) {
	if _, said := d.foreign.LoadOrStore(e.DB, true); !said {
		d.log.WarnContext(ctx, "due orders of another database are in this NATS's queue: put back for its own order instances; give each database a NATS of its own",
			"their_db", e.DB, "our_db", d.ledger.db)
	}
	d.m.foreign.Inc()
	e.Due = dueIn(foreignDelay)
	if _, _, err := d.ledger.queue.schedule(ctx, e, false); err != nil {
		d.giveBack(ctx, msg, foreignDelay, "due order of another database not put back", err)
		return
	}
	_ = msg.Ack()
}

// foreignDelay is how long a due order of another database is kept from every instance: an
// instance of its own may be the next to take it, or another one again.
const foreignDelay = 5 * time.Second

// redriveOne runs the chain of one due order again, in steps: read the due entry, load the
// order, call the chain, record what it made of the order, and acknowledge msg. It acknowledges
// msg once the order is final and recorded, or queued again with its next timer; anything else
// gives it back, and an instance that dies here leaves it unacknowledged: JetStream delivers it
// again after the ack wait. Each step that ends the re-drive has dealt with msg and says false.
func (d *redriver) redriveOne(ctx context.Context, msg jetstream.Msg) {
	// The run is not cut short by a shutdown: it is bounded, and its outcome should be recorded.
	ctx = context.WithoutCancel(ctx)
	e, retry, ok := d.readDue(ctx, msg)
	if !ok {
		return
	}
	rec, ok := d.load(ctx, msg, e, retry)
	if !ok {
		return
	}
	if wait := d.circuitWait(); wait > 0 {
		d.giveBack(ctx, msg, wait, "", nil)
		return
	}
	attempt := e.Attempts + 1
	rid := rec.RequestID
	if rid == "" {
		rid = "redrive"
	}
	cctx := messaging.WithCall(ctx, messaging.Call{Hop: 1, RequestID: fmt.Sprintf("%s.r%d", rid, attempt), Origin: e.ID})
	cctx, span := d.startRedrive(cctx, rec)
	defer span.End()
	log := d.log.With("id", e.ID, "attempt", attempt)
	out, ok := d.call(cctx, msg, e, rec, attempt, log)
	if !ok {
		return
	}
	since := e.Since
	if since.IsZero() {
		since = rec.CreatedAt
	}
	// The outcome's writes are the re-drive's: in its trace (cctx).
	if next, first, ok := d.keep(cctx, msg, e.ID, out, since, retry); ok {
		d.report(cctx, log, out, next, first)
	}
}

// readDue reads the entry msg carries, and when to give it back should this re-drive fail:
// later with each delivery. An unreadable one is dropped, one of another database put back for
// its own instances (notOurs): false.
func (d *redriver) readDue(ctx context.Context, msg jetstream.Msg) (e entry, retry time.Duration, ok bool) {
	deliveries := 1
	if meta, err := msg.Metadata(); err == nil {
		deliveries = int(meta.NumDelivered)
	}
	if deliveries > 1 {
		d.m.redelivered.Inc()
	}
	retry = redriveBackoff(d.ledger.redrive, deliveries)
	if err := json.Unmarshal(msg.Data(), &e); err != nil || e.ID == "" {
		d.log.ErrorContext(ctx, "unreadable due order dropped", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return e, 0, false
	}
	if e.DB != "" && e.DB != d.ledger.db {
		d.notOurs(ctx, msg, e)
		return e, 0, false
	}
	return e, retry, true
}

// load loads the order of due entry e with its final outcome, if any, and reports whether it is
// to be run: otherwise msg was given back (not saved yet, or the store away), acknowledged (never
// saved) or finished (final meanwhile).
func (d *redriver) load(ctx context.Context, msg jetstream.Msg, e entry, retry time.Duration) (*record, bool) {
	rec, err := d.ledger.find(ctx, e.ID)
	if err == nil {
		err = d.ledger.loadFinal(ctx, rec)
	}
	switch {
	case errors.Is(err, errNotYet):
		// Its insert may still be on its way, or its open copy is to be saved: look again later.
		d.giveBack(ctx, msg, retry, "", nil)
	case errors.Is(err, store.ErrNotFound) && time.Since(e.Since) < QueueTimeout+insertHorizon:
		// No order and no open copy yet: the copy's own insert may still be on its way (the
		// copy goes first, after the timer). Looked for again once a live request would have
		// written both.
		d.giveBack(ctx, msg, QueueTimeout+insertHorizon-time.Since(e.Since), "", nil)
	case errors.Is(err, store.ErrNotFound):
		// Still no order and no copy: no insert of it was ever sent, or one held beyond any
		// live request (a partition, a paused process) — and then its copy lands first, and
		// the reconciler finds it.
		d.log.InfoContext(ctx, "due order was never saved; dropped", "id", e.ID)
		_ = msg.Ack()
	case err != nil:
		d.giveBack(ctx, msg, retry, "due order not loaded", err)
	case rec.State.final():
		d.finish(ctx, msg, e.ID, retry) // completed or rejected meanwhile
	default:
		return rec, true
	}
	return nil, false
}

// call runs rec's chain as its attempt-th run and returns the state it leaves the order in, what
// was paid voided if it was rejected (compensate). False when payment was not asked (another call
// took the circuit's trial, or the bulkhead is full): not an attempt, and msg is given back, to
// come again after the circuit's delay.
func (d *redriver) call(ctx context.Context, msg jetstream.Msg, e entry, rec *record, attempt int, log *slog.Logger) (*state, bool) {
	log.InfoContext(ctx, "🔁 re-driving pending order", "last_error", e.LastError)
	_ = msg.InProgress()
	reply, ferr := d.hop.Forward(ctx, rec.paymentBody())
	if p := reply.Next; ferr == nil && p != nil && p.Outcome == messaging.OutcomeRejected {
		d.giveBack(ctx, msg, max(d.circuitWait(), d.ledger.redrive.Backoff), "", nil)
		return nil, false
	}
	out := stateAfter(attempt, e.LastError, &reply, ferr)
	traceOutcome(ctx, out)
	compensate(ctx, d.hop, rec, out)
	d.m.attempts.WithLabelValues(out.Status).Inc()
	return out, true
}

// keep records out, the state the re-drive left order id in (queued since since), and
// acknowledges msg: a final one once its pending mark and open copy are gone (finish), a pending
// one once its next timer, due at next, is set. first is as saveResult says. False when the
// outcome could not be recorded: msg is given back, to be run again after retry.
func (d *redriver) keep(ctx context.Context, msg jetstream.Msg, id string, out *state, since time.Time, retry time.Duration) (next time.Time, first, ok bool) {
	_ = msg.InProgress()
	if !out.final() {
		// Marked before its next timer is set, so the run that timer starts, which may be
		// another instance's, finds the mark to purge. Best effort: only the age of the oldest
		// pending order reads it, and the next run that leaves the order pending marks it again.
		_ = d.ledger.queue.markPending(ctx, id, since)
	}
	next, first, err := d.ledger.saveResult(ctx, id, out, since)
	if err != nil {
		d.giveBack(ctx, msg, retry, "re-drive outcome not recorded", err)
		return next, first, false
	}
	if out.final() {
		d.finish(ctx, msg, id, retry)
	} else {
		_ = msg.Ack()
	}
	return next, first, true
}

// report says what a re-drive recorded: out, the order's next attempt at next if it is pending,
// and counts it recovered if it completed and this re-drive was the first to record it.
func (d *redriver) report(ctx context.Context, log *slog.Logger, out *state, next time.Time, first bool) {
	switch out.Status {
	case StatusPending:
		log.InfoContext(ctx, "⏳ still pending", "reason", out.Reason, "next_attempt", next)
	case StatusCompleted:
		log.InfoContext(ctx, "✅ pending order completed")
		if first { // not a run that another instance finished first (a paused one, back)
			d.m.recovered.Inc()
		}
	default:
		log.WarnContext(ctx, "⛔ pending order rejected", "reason", out.Reason)
	}
}
