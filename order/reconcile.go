package order

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/breakerchain/breakerchain/internal/store"
)

// OpenCollection holds a copy of every order that may be saved and is not final yet: the
// store's own list of what the queue must hold (see the package doc).
const OpenCollection = "orders_open"

// openOrder is an order that may be saved and is not final yet: a copy of it, written before the
// order itself and removed once its outcome is recorded, with when the reconciler is to look at
// it next. Only orders not final are here, so the reconciler's query never grows with the
// completed ones.
type openOrder struct {
	Order   record    `bson:",inline"`
	CheckAt time.Time `bson:"check_at"` // when the reconciler looks at it next
}

// Metadata makes an open copy a store.Record: it is inserted once, as the order is.
func (o *openOrder) Metadata() *store.Meta { return &o.Order.Meta }

// errNotYet is an order not in the store whose insert may still land.
var errNotYet = errors.New("not saved yet; its insert may still land")

// openCopy writes rec's copy among the open orders, to be looked at by the reconciler after
// checkIn, and reports whether this call wrote it. A copy already there (a replay, or a retry
// after a failure) stays: the order's own insert decides which body is the order.
func (b *ledger) openCopy(ctx context.Context, rec *record, checkIn time.Duration) (opened bool, err error) {
	c := &openOrder{Order: *rec, CheckAt: time.Now().UTC().Add(checkIn)}
	for range 2 {
		_, created, err := store.InsertOnce(ctx, b.open, c)
		switch {
		case errors.Is(err, store.ErrConflict):
			return false, nil // another body's copy, there first
		case errors.Is(err, store.ErrNotFound):
			continue // there when this insert was, gone when it was read: written again
		}
		return created, err
	}
	return false, fmt.Errorf("%w: the open copy came and went twice", store.ErrUnavailable)
}

// closeOpen removes order id's open copy: its outcome is final and recorded. Best effort: a copy
// left behind is removed by the reconciler, which finds the order final.
func (b *ledger) closeOpen(ctx context.Context, id string) {
	if err := b.open.Delete(ctx, id); err != nil {
		b.log.WarnContext(ctx, "final order's open copy not removed; the reconciler will", "id", id, "err", err)
	}
}

// find loads order id. An order not in the store whose open copy is (its request died between
// the two writes, or its insert is held up somewhere) is saved from its copy once its own insert
// can no longer be on its way (insertHorizon): an insert landing later still is a replay of it.
// Before that it is errNotYet. store.ErrNotFound: no copy either, so no insert of it was sent.
func (b *ledger) find(ctx context.Context, id string) (*record, error) {
	rec, err := b.orders.Get(ctx, id)
	if !errors.Is(err, store.ErrNotFound) {
		return rec, err
	}
	c, err := b.open.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if wait := insertHorizon - time.Since(c.Order.CreatedAt); wait > 0 {
		return nil, fmt.Errorf("%w (looked for again in %s)", errNotYet, wait.Round(time.Second))
	}
	saved, created, err := store.InsertOnce(ctx, b.orders, &c.Order)
	switch {
	case errors.Is(err, store.ErrConflict):
		return saved, nil // another request's body took the id since: that one is the order
	case errors.Is(err, store.ErrRefused):
		// The store will never keep it (its request was told 422): never saved.
		b.log.ErrorContext(ctx, "open copy the store refuses to save; dropped", "id", id, "err", err)
		if err := b.open.Delete(ctx, id); err != nil {
			return nil, err
		}
		return nil, store.ErrNotFound
	case err != nil:
		return nil, err
	case created:
		b.log.InfoContext(ctx, "📥 order saved from its open copy: its own insert never landed", "id", id)
	}
	return saved, nil
}

// reconcileBatch is the most open orders one sweep looks at: what bounds its rate.
const reconcileBatch = 100

// reconciler makes the store the source of truth for what the queue holds: every order that is
// not final in the store and whose entry in the queue is gone (its timer lost with JetStream's
// files or a power loss, cancelled, never written, or dropped by an instance of another
// database) gets a timer again. Each sweep reads the open orders whose time to be looked at has
// come (at most reconcileBatch), so a sweep with nothing to do is one query on a collection
// holding only the orders not final yet. Any number of instances may sweep at once: what a
// sweep does to an order is the same whoever does it, and done twice is done once.
type reconciler struct {
	ledger  *ledger
	every   time.Duration // RECONCILE_EVERY
	horizon time.Duration // how long after an order's entry is due it is looked at again: the longest run (ackWait)
	m       *redriveMetrics
	log     *slog.Logger
}

// run sweeps every r.every until ctx ends.
func (r *reconciler) run(ctx context.Context) {
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.sweep(ctx); err != nil && ctx.Err() == nil {
				r.log.WarnContext(ctx, "open orders not reconciled", "err", err)
			}
		}
	}
}

// sweep looks at the open orders whose time has come, earliest first.
func (r *reconciler) sweep(ctx context.Context) error {
	r.m.sweeps.Inc()
	due, err := r.ledger.open.Before(ctx, "check_at", time.Now().UTC(), reconcileBatch)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range due {
		if ctx.Err() != nil {
			break
		}
		if err := r.check(ctx, c); err != nil {
			errs = append(errs, fmt.Errorf("order %s: %w", c.Order.ID, err))
		}
	}
	return errors.Join(errs...)
}

// check makes sure open order c is final (its copy removed) or has an entry in the queue, and
// sets when it is looked at next.
func (r *reconciler) check(ctx context.Context, c *openOrder) error {
	id := c.Order.ID
	rec, err := r.ledger.find(ctx, id)
	switch {
	case errors.Is(err, errNotYet):
		return r.ledger.open.Set(ctx, id, "check_at", c.Order.CreatedAt.Add(insertHorizon).UTC())
	case errors.Is(err, store.ErrNotFound):
		return nil // its copy went since the sweep read it: final, or refused
	case err == nil:
		err = r.ledger.loadFinal(ctx, rec)
	}
	if err != nil {
		// Looked at again after the horizon, not at the next sweep: one that keeps failing
		// must not hold up the others.
		_ = r.ledger.open.Set(ctx, id, "check_at", time.Now().UTC().Add(r.horizon))
		return err
	}
	if rec.State.final() {
		if err := r.ledger.queue.unmarkPending(ctx, id); err != nil {
			return err
		}
		return r.ledger.open.Delete(ctx, id)
	}
	e, ok, err := r.ledger.queue.pending(ctx, id)
	if err != nil {
		return err
	}
	if !ok {
		e = entry{ID: id, DB: r.ledger.db, Since: rec.CreatedAt, Due: dueIn(0)}
		if _, _, err := r.ledger.queue.schedule(ctx, e, false); err != nil {
			return err
		}
		r.m.rearmed.Inc()
		r.log.WarnContext(ctx, "🧭 open order had nothing queued: given a timer again", "id", id)
	}
	return r.ledger.open.Set(ctx, id, "check_at", later(e.Due).Add(r.horizon))
}

// later is t, or now if t has passed.
func later(t time.Time) time.Time {
	if now := time.Now().UTC(); t.Before(now) {
		return now
	}
	return t.UTC()
}
