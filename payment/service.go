package payment

import (
	"context"

	"github.com/breakerchain/breakerchain/internal/app"
	"github.com/breakerchain/breakerchain/internal/chain"
	"github.com/breakerchain/breakerchain/internal/store"
)

// Collection is where payments are stored.
const Collection = "payments"

// Service is payment as the app runs it.
var Service = app.Service{
	Name:        "payment",
	Description: "Applies payments and starts their shipment: the middle hop of breakerchain",
	Next:        "shipment",
	Collections: []string{Collection},
	Build: func(_ context.Context, d app.Deps) (app.Parts, error) {
		step := &chain.Step[Payment, record, *record]{
			Hop: d.Hop, Store: store.NewCollection[record](d.DB, Collection),
			Decode: Decode, Record: newRecord,
			Next: func(p Payment) any { return p.Shipment },
		}
		return app.Parts{Handle: step.Handle}, nil
	},
}
