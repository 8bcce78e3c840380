package service

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/breakerchain/breakerchain/internal/chaos"
	"github.com/breakerchain/breakerchain/internal/problem"
	"github.com/breakerchain/breakerchain/internal/store"
	"github.com/breakerchain/breakerchain/internal/wire"
	"github.com/breakerchain/breakerchain/messaging"
)

// Hop is one service's place in the chain.
type Hop struct {
	ID     string               // the service's name in replies and logs
	Jumps  int                  // a hop whose number reaches this answers "Last"
	Next   *messaging.Requester // nil at the end of the chain
	Log    *slog.Logger
	Faults *chaos.Injector // the faults it injects
	After  Chain           // the services after it, whose bodies its body nests (see Split)
	Undo   bool            // its service declared an undo (Service.Undo)
	// Tracer starts the spans of the service's own work beyond a request (order's re-drives).
	Tracer trace.Tracer
}

// Forward runs what follows a saved record, in the seed's order: the injected error, the JUMPS
// limit, then the call to the next hop with next as its body (Body.Next).
func (h *Hop) Forward(ctx context.Context, next []byte) (messaging.Reply, error) {
	return h.forward(ctx, "", next)
}

// ForwardNew is Forward for the record id this request has just saved (Save said created). Its
// "👌 success" line is logged once the injected error has spared the request: one failed on
// purpose logs "💥 injected error" after "🍀 saving", never a success first.
func (h *Hop) ForwardNew(ctx context.Context, id string, next []byte) (messaging.Reply, error) {
	return h.forward(ctx, id, next)
}

func (h *Hop) forward(ctx context.Context, created string, next []byte) (messaging.Reply, error) {
	now := time.Now()
	if err := h.injected(ctx); err != nil {
		return messaging.Reply{}, err
	}
	if created != "" {
		h.Log.InfoContext(ctx, "👌 success "+h.ID+"...", "id", created)
	}
	if h.Next == nil {
		return messaging.ReplyDone(h.ID, now, false, nil), nil
	}
	if messaging.CallFrom(ctx).Hop >= h.Jumps {
		return messaging.ReplyDone(h.ID, now, true, nil), nil
	}
	reply := h.Next.Request(ctx, next)
	return messaging.ReplyDone(h.ID, now, false, &reply), nil
}

// injected is the error the hop's faults make it fail with, if this request is one they fail.
func (h *Hop) injected(ctx context.Context) error {
	if h.Faults.Fail() {
		h.Log.WarnContext(ctx, "💥 injected error")
		return problem.Errorf(502, "injected error")
	}
	return nil
}

// VoidNext passes a void on (next is the next service's body, as for Forward) and returns the
// reply, or nil when there is nobody to ask: no service after h declared an undo (Service.Undo),
// or the JUMPS limit stopped the create here, so nothing after h was saved. A void asks only
// the hops that may hold something to undo: one that does not (shipment today) is not a
// dependency of the compensation.
func (h *Hop) VoidNext(ctx context.Context, next []byte) *messaging.Reply {
	if h.Next == nil || messaging.CallFrom(ctx).Hop >= h.Jumps ||
		!slices.ContainsFunc(h.After, func(s Service) bool { return s.Undo }) {
		return nil
	}
	reply := h.Next.Void(ctx, next)
	return &reply
}

// Meta is the stored metadata of a record for the request in ctx: id, the fingerprint of its
// canonical body (Body.Canonical), the origin and request id of the call, the trace it was made
// in, and the time.
func Meta(ctx context.Context, id string, canonical []byte) store.Meta {
	call := messaging.CallFrom(ctx)
	return store.Meta{ID: id, Fingerprint: wire.Fingerprint(json.RawMessage(canonical)), Origin: call.Origin, RequestID: call.RequestID,
		Trace: messaging.TraceParent(ctx), CreatedAt: time.Now().UTC()}
}

// StoreError turns a store failure into what a caller sees: 503 when the store is unavailable,
// 404 for a missing document, anything else as itself (an internal error).
func StoreError(err error) error {
	switch {
	case errors.Is(err, store.ErrUnknown):
		return problem.Errorf(503, "store unavailable: this may or may not have been saved; retrying later with the same id is safe")
	case errors.Is(err, store.ErrUnavailable):
		return problem.Errorf(503, "store unavailable")
	case errors.Is(err, store.ErrRefused):
		return problem.Errorf(422, "the store cannot keep this document")
	case errors.Is(err, store.ErrNotFound):
		return problem.Errorf(404, "not found")
	}
	return err
}

// Save stores rec once (see store.InsertOnce), logging the seed's lines, and turns store
// failures into the service errors a caller sees: 409 for an id reused with another body, 503
// when the store is unavailable. The seed's "👌 success" for a record it created is ForwardNew's
// to log, after the injected error's draw.
func Save[T any, P interface {
	*T
	store.Record
}](ctx context.Context, h *Hop, c *store.Collection[T], rec P) (P, bool, error) {
	log := h.Log.With("id", rec.Metadata().ID)
	log.InfoContext(ctx, "🍀 saving "+h.ID+"...")
	stored, created, err := store.InsertOnce(ctx, c, rec)
	switch {
	case errors.Is(err, store.ErrConflict) && stored.Metadata().Origin != rec.Metadata().Origin:
		// Never name the other order: it is someone else's.
		log.InfoContext(ctx, "⛔ "+h.ID+" id already used by another order", "origin", rec.Metadata().Origin)
		return nil, false, problem.Errorf(409, "%s id %q already belongs to another order", h.ID, rec.Metadata().ID)
	case errors.Is(err, store.ErrConflict):
		log.InfoContext(ctx, "⛔ "+h.ID+" id already used with a different body")
		return nil, false, problem.Errorf(409, "%s id %q was already used with a different body", c.Name(), rec.Metadata().ID)
	case err != nil && ctx.Err() != nil:
		// The caller stopped waiting mid-write: nobody is left to tell, and the write may have
		// landed; a retry of the same id will find out.
		log.WarnContext(ctx, "caller gave up while saving: may or may not be saved", "err", err)
		return nil, false, errors.Join(StoreError(err), ctx.Err())
	case err != nil:
		log.ErrorContext(ctx, "not saved", "err", err)
		return nil, false, StoreError(err)
	case !created:
		log.InfoContext(ctx, "🔁 replay "+h.ID+", already saved")
	}
	return stored, created, nil
}

// Step is the whole hop of a service that answers on NATS (payment, shipment): split its
// request (Split), save the record it makes, and pass the next service's body on.
type Step[In, T any, P interface {
	*T
	store.Record
}] struct {
	Hop    *Hop
	Store  *store.Collection[T]
	Decode func(own []byte) (In, error)            // its own fields, decoded and validated; 4xx errors
	Record func(ctx context.Context, b Body[In]) P // what to save
}

// Handle is the Step as a messaging.Handler.
func (s *Step[In, T, P]) Handle(ctx context.Context, data []byte) (messaging.Reply, error) {
	b, err := Split(s.Hop.After, data, s.Decode)
	if err != nil {
		return messaging.Reply{}, err
	}
	if err := s.Hop.Faults.Delay(ctx); err != nil {
		return messaging.Reply{}, err // the caller gave up during the injected latency
	}
	stored, created, err := Save(ctx, s.Hop, s.Store, s.Record(ctx, b))
	if err != nil {
		return messaging.Reply{}, err
	}
	if created {
		return s.Hop.ForwardNew(ctx, stored.Metadata().ID, b.Next)
	}
	if v := stored.Metadata().Voided; v != nil {
		// Undone for good: a replay must not bring the rest of the chain back to life.
		s.Hop.Log.InfoContext(ctx, "⛔ replay of a voided "+s.Hop.ID, "id", stored.Metadata().ID)
		return messaging.Reply{}, problem.Errorf(409, "%s id %q was voided: %s", s.Hop.ID, stored.Metadata().ID, v.Reason)
	}
	return s.Hop.Forward(ctx, b.Next)
}

// Void is the Step's undo as a messaging.Handler, with the body Handle takes: if its service
// declared an undo (Hop.Undo) it voids the record this order's create made, if any (idempotent:
// voiding twice is one void, nothing to void is a success), then passes the void on
// (Hop.VoidNext). Its reply says per hop whether a record was voided.
func (s *Step[In, T, P]) Void(ctx context.Context, data []byte) (messaging.Reply, error) {
	b, err := Split(s.Hop.After, data, s.Decode)
	if err != nil {
		return messaging.Reply{}, err
	}
	if err := s.Hop.Faults.Delay(ctx); err != nil {
		return messaging.Reply{}, err
	}
	voided := false
	if s.Hop.Undo {
		call := messaging.CallFrom(ctx)
		rec := s.Record(ctx, b)
		voided, err = store.VoidOnce(ctx, s.Store, rec, store.Void{Reason: call.Reason, At: time.Now().UTC(), RequestID: call.RequestID})
		if err != nil {
			s.Hop.Log.ErrorContext(ctx, "not voided", "id", rec.Metadata().ID, "err", err)
			return messaging.Reply{}, StoreError(err)
		}
		if voided {
			s.Hop.Log.InfoContext(ctx, "↩️  "+s.Hop.ID+" voided", "id", rec.Metadata().ID, "reason", call.Reason)
		}
	}
	now := time.Now()
	if err := s.Hop.injected(ctx); err != nil {
		return messaging.Reply{}, err
	}
	return messaging.ReplyVoided(s.Hop.ID, now, voided, s.Hop.VoidNext(ctx, b.Next)), nil
}

// Parts are the Step's endpoints as its service's Parts: its requests and their void.
func (s *Step[In, T, P]) Parts() Parts { return Parts{Handle: s.Handle, Void: s.Void} }
