// Package payment is the middle service of the chain: it saves the payment it is asked for,
// calls shipment through its breaker and answers with both hops. It serves payment.create on
// NATS. A repeated payment id is a replay, never a second charge.
package payment

import (
	"context"
	"math"

	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/store"
	"github.com/breakerchain/breakerchain/internal/wire"
	"github.com/breakerchain/breakerchain/shipment"
)

// Payment is what order sends on: the amount to charge and the shipment to start.
type Payment struct {
	ID       string             `json:"id"`
	Amount   *float64           `json:"amount"`
	Shipment *shipment.Shipment `json:"shipment"`
}

// Validate checks p; field names in errors start with prefix ("payment.").
func (p *Payment) Validate(prefix string) error {
	if err := wire.ID(prefix+"id", p.ID); err != nil {
		return err
	}
	switch {
	case p.Amount == nil:
		return wire.Invalid(prefix+"amount", "is required")
	case math.IsNaN(*p.Amount) || math.IsInf(*p.Amount, 0) || *p.Amount < 0:
		return wire.Invalid(prefix+"amount", "must be a number ≥ 0")
	case p.Shipment == nil:
		return wire.Invalid(prefix+"shipment", "is required")
	}
	return p.Shipment.Validate(prefix + "shipment.")
}

// Decode reads and validates a payment request body.
func Decode(data []byte) (Payment, error) { return wire.DecodeValid[Payment](data) }

// record is a payment as stored in the payments collection.
type record struct {
	store.Meta `bson:",inline"`
	Amount     float64 `bson:"amount"`
	ShipmentID string  `bson:"shipment_id"`
}

func newRecord(ctx context.Context, p Payment) *record {
	return &record{Meta: service.Meta(ctx, p.ID, p), Amount: *p.Amount, ShipmentID: p.Shipment.ID}
}
