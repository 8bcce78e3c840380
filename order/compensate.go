package order

import (
	"context"

	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/messaging"
)

// compensate is the saga's undo, for a run that left rec rejected (out): before out is
// recorded, it asks the chain to void what it did for the order (service.Hop.VoidNext: payment
// voids its payment, and passes the void on to any later service that declared an undo). Once the
// void has answered from every hop asked, out stays rejected and shows what was voided. If it
// has not (payment away, its circuit open), out becomes pending with a reason saying so, and the
// re-driver runs the order again: its create replay answers refused again (the same hop, or
// payment's "voided"), and the void is asked again, voiding twice being one void. So a rejected
// order is final only once nothing it paid for is left live — or once a hop refused the void
// itself for good (a 4xx), which no retry would change: then it is rejected showing the void
// "refused", and logged as an error for a person to look at. Order knows no service's fields: it
// sends the payment body as it sent it to create.
func compensate(ctx context.Context, hop *service.Hop, rec *record, out *state) {
	if out.Status != StatusRejected {
		return
	}
	call := messaging.CallFrom(ctx)
	call.Reason = out.Reason
	reply := hop.VoidNext(messaging.WithCall(ctx, call), rec.paymentBody())
	if reply == nil {
		return // no service after order declared an undo: nothing to void
	}
	if p := reply.Problem(); p != nil && p.Outcome == messaging.OutcomeRefused {
		// Refused for good (the void itself is bad input there): asking again would change
		// nothing, and the order would stay pending for ever. Rejected, saying so, for a person
		// to look at.
		hop.Log.ErrorContext(ctx, "⛔ void refused: the order is rejected with what it paid left live", "id", rec.ID,
			"service", p.Service, "reason", p.Reason)
		out.Compensation = map[string]messaging.Outcome{p.Service: messaging.OutcomeRefused}
		return
	} else if p != nil {
		out.Status = StatusPending
		out.Reason = "rejected (" + out.Reason + "); voiding: " + p.Service + " " + string(p.Outcome) + ": " + p.Reason
		out.LastError = out.Reason
		return
	}
	for h := reply; h != nil; h = h.Next {
		if h.Outcome == messaging.OutcomeVoided {
			if out.Compensation == nil {
				out.Compensation = map[string]messaging.Outcome{}
			}
			out.Compensation[h.Service] = h.Outcome
		}
	}
}
