package order

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/breakerchain/breakerchain/internal/config"
	"github.com/breakerchain/breakerchain/internal/store"
)

// ledger is where orders and what became of them are kept: the orders, their final outcomes and
// a copy of those not final yet in the store, the orders not final yet in the queue.
type ledger struct {
	orders  *store.Collection[record]
	results *store.Collection[result]
	open    *store.Collection[openOrder]
	queue   *queue
	redrive config.Redrive
	// db is the database the orders are in. Every order instance on one NATS shares the queue,
	// so an entry says whose order it is: an instance on another database leaves it alone.
	db  string
	log *slog.Logger
}

// loadState applies to rec what became of it: its final outcome, else its entry in the queue,
// else nothing (its chain has not answered yet).
func (b *ledger) loadState(ctx context.Context, rec *record) error {
	if err := b.loadFinal(ctx, rec); err != nil || rec.Status != StatusPending {
		return err
	}
	e, ok, err := b.queue.pending(ctx, rec.ID)
	if err != nil || !ok || e.Attempts == 0 {
		return err // not run yet: as saved, in progress
	}
	rec.Status, rec.Reason, rec.Hops = StatusPending, e.Reason, toHops(e.Reply)
	rec.Attempts, rec.LastError = e.Attempts, e.LastError
	if due := e.Due; due.After(time.Now()) {
		// A time passed says nothing: the order waits for a re-driver to take it, at once where
		// one runs, never where none does (REDRIVE_RATE=0 on every instance).
		rec.NextAttempt = &due
	}
	return nil
}

// saveResult keeps the outcome of a run of the chain: a final one is inserted into the outcomes (a
// duplicate is a concurrent run that finished first, equally true: first is false); a pending one
// becomes the order's timer, due after the backoff of its attempt. since is when the order was
// first queued.
func (b *ledger) saveResult(ctx context.Context, out *result, since time.Time) (due time.Time, first bool, err error) {
	if out.final() {
		err := b.results.Insert(ctx, out)
		if err != nil && !errors.Is(err, store.ErrDuplicate) {
			return time.Time{}, false, err
		}
		return time.Time{}, err == nil, nil
	}
	due = dueIn(redriveBackoff(b.redrive, out.Attempts))
	_, _, err = b.queue.schedule(ctx, entry{ID: out.ID, DB: b.db, Attempts: out.Attempts, Reason: out.Reason,
		Reply: out.Hops.reply(), LastError: out.LastError, Since: since, Due: due}, false)
	return due, true, err
}

// loadFinal applies rec's final outcome, if it has one.
func (b *ledger) loadFinal(ctx context.Context, rec *record) error {
	out, err := b.results.Get(ctx, rec.ID)
	switch {
	case err == nil:
		rec.setResult(out)
		return nil
	case errors.Is(err, store.ErrNotFound):
		return nil
	}
	return err
}
