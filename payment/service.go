package payment

import (
	"context"

	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/store"
)

// Collection is where payments are stored.
const Collection = "payments"

// Service is payment as internal/service runs it.
var Service = service.Service{
	Name:        "payment",
	Description: "Applies payments and starts their shipment: the middle hop of breakerchain",
	Collections: []string{Collection},
	Check:       service.Check(Decode),
	Example:     func(id string) any { return Payment{ID: id, Amount: new(float64)} },
	Undo:        true, // a payment taken for an order refused later is voided
	Build: func(_ context.Context, d service.Deps) (service.Parts, error) {
		step := &service.Step[Payment, record, *record]{
			Hop: d.Hop, Store: store.NewCollection[record](d.DB, Collection),
			Decode: Decode, Record: newRecord,
		}
		return step.Parts(), nil
	},
}
