package shipment

import (
	"context"

	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/store"
)

// Collection is where shipments are stored.
const Collection = "shipments"

// Service is shipment as internal/service runs it.
var Service = service.Service{
	Name:        "shipment",
	Description: "Creates shipments: the last hop of the breakerchain order → payment → shipment",
	Collections: []string{Collection},
	Check:       service.Check(Decode),
	Example:     func(id string) any { return Shipment{ID: id, Directions: "home"} },
	Build: func(_ context.Context, d service.Deps) (service.Parts, error) {
		step := &service.Step[Shipment, record, *record]{
			Hop: d.Hop, Store: store.NewCollection[record](d.DB, Collection),
			Decode: Decode, Record: newRecord,
		}
		return step.Parts(), nil
	},
}
