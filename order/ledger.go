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
// a copy of those not final yet in the store, the orders not final yet in the queue. The api,
// the redriver and the reconciler each hold it in a field named ledger, not embedded, so that
// a call reads as the ledger's where it is made (a.ledger.saveResult).
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

// loadState applies to rec what became of it: its final outcome, else the state its entry in
// the queue carries, else nothing (its chain has not answered yet).
func (b *ledger) loadState(ctx context.Context, rec *record) error {
	if err := b.loadFinal(ctx, rec); err != nil || rec.State.final() {
		return err
	}
	e, ok, err := b.queue.pending(ctx, rec.ID)
	if err != nil || !ok || e.Attempts == 0 {
		return err // not run yet: as saved, in progress
	}
	rec.State = e.state(rec.State.UpdatedAt) // as saved: an entry does not say when its run was
	if next := rec.State.NextAttempt; next != nil && !next.After(time.Now()) {
		// A time passed says nothing: the order waits for a re-driver to take it, at once where
		// one runs, never where none does (REDRIVE_RATE=0 on every instance).
		rec.State.NextAttempt = nil
	}
	return nil
}

// saveResult keeps st, the state a run of the chain left order id in: a final one is inserted
// into the outcomes (a duplicate is a concurrent run that finished first, equally true: first is
// false); a pending one becomes the order's timer, due after the backoff of its attempt. since is
// when the order was first queued.
func (b *ledger) saveResult(ctx context.Context, id string, st *state, since time.Time) (due time.Time, first bool, err error) {
	if st.final() {
		err := b.results.Insert(ctx, &result{ID: id, State: *st})
		if err != nil && !errors.Is(err, store.ErrDuplicate) {
			return time.Time{}, false, err
		}
		return time.Time{}, err == nil, nil
	}
	due = dueIn(redriveBackoff(b.redrive, st.Attempts))
	_, _, err = b.queue.schedule(ctx, st.entry(id, b.db, since, due), false)
	return due, true, err
}

// loadFinal applies rec's final outcome, if it has one.
func (b *ledger) loadFinal(ctx context.Context, rec *record) error {
	out, err := b.results.Get(ctx, rec.ID)
	switch {
	case err == nil:
		rec.State = out.State
		return nil
	case errors.Is(err, store.ErrNotFound):
		return nil
	}
	return err
}

// isFinal tells whether order id is known to be final: its outcome is recorded (only a final
// one ever is). false when it is not, or cannot be read now.
func (b *ledger) isFinal(ctx context.Context, id string) bool {
	out, err := b.results.Get(ctx, id)
	return err == nil && out.State.final()
}
