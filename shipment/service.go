package shipment

import (
	"context"

	"github.com/breakerchain/breakerchain/internal/app"
	"github.com/breakerchain/breakerchain/internal/chain"
	"github.com/breakerchain/breakerchain/internal/store"
)

// Collection is where shipments are stored.
const Collection = "shipments"

// Service is shipment as the app runs it.
var Service = app.Service{
	Name:        "shipment",
	Description: "Creates shipments: the last hop of the breakerchain order → payment → shipment",
	Collections: []string{Collection},
	Build: func(_ context.Context, d app.Deps) (app.Parts, error) {
		step := &chain.Step[Shipment, record, *record]{
			Hop: d.Hop, Store: store.NewCollection[record](d.DB, Collection),
			Decode: Decode, Record: newRecord,
		}
		return app.Parts{Handle: step.Handle}, nil
	},
}
