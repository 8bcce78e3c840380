// Package payment is the middle service of the chain: it saves the payment it is asked for,
// calls the next service through its breaker and answers with both hops. It serves
// payment.create on NATS. A repeated payment id is a replay, never a second charge. It declares
// an undo (Service.Undo): on payment.void, when a later hop refused the order for good, its
// payment is marked voided with the reason, and a replay of it is refused from then on. It must
// not know who calls it or who comes after it: the chain's order is the command's list.
package payment

import (
	"context"
	"math"

	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/store"
	"github.com/breakerchain/breakerchain/internal/wire"
)

// Payment is what order sends on: the amount to charge. The body also nests the next service's
// (see service.Split), which payment passes on without reading it.
type Payment struct {
	ID     string   `json:"id"`
	Amount *float64 `json:"amount"`
}

// Validate checks p's own fields (service.Split puts "payment." in front of their names).
func (p *Payment) Validate() error {
	if err := wire.ID("id", p.ID); err != nil {
		return err
	}
	switch {
	case p.Amount == nil:
		return wire.Invalid("amount", "is required")
	case math.IsNaN(*p.Amount) || math.IsInf(*p.Amount, 0) || *p.Amount < 0:
		return wire.Invalid("amount", "must be a number ≥ 0")
	}
	*p.Amount = wire.Zeroed(*p.Amount)
	return nil
}

// Decode reads and validates payment's own fields.
func Decode(data []byte) (Payment, error) { return wire.DecodeValid[Payment](data) }

// record is a payment as stored in the payments collection.
type record struct {
	store.Meta `bson:",inline"`
	Amount     float64 `bson:"amount"`
}

func newRecord(ctx context.Context, b service.Body[Payment]) *record {
	return &record{Meta: service.Meta(ctx, b.Own.ID, b.Canonical), Amount: *b.Own.Amount}
}
