package testkit

import (
	"context"

	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/store"
	"github.com/breakerchain/breakerchain/internal/wire"
)

// Inventory is a fourth service after shipment, written as docs/architecture.md's recipe says a
// new service is: its own fields with their example, its record, its Step, and nothing about
// who calls it. Adding it to the product would be a sibling folder, a line in the command's list
// and its NATS user (deploy/nats.conf); no existing service changes. Tests add it to a chain.
var Inventory = service.Service{
	Name:        "inventory",
	Description: "Reserves stock: a fourth hop, for the tests that add one",
	Collections: []string{"reservations"},
	Check:       service.Check(decodeReservation),
	Example:     func(id string) any { return reservation{ID: id, SKU: "tea"} },
	Build: func(_ context.Context, d service.Deps) (service.Parts, error) {
		step := &service.Step[reservation, reservationRecord, *reservationRecord]{
			Hop: d.Hop, Store: store.NewCollection[reservationRecord](d.DB, "reservations"),
			Decode: decodeReservation,
			Record: func(ctx context.Context, b service.Body[reservation]) *reservationRecord {
				return &reservationRecord{Meta: service.Meta(ctx, b.Own.ID, b.Canonical), SKU: b.Own.SKU}
			},
		}
		return step.Parts(), nil
	},
}

type reservation struct {
	ID  string `json:"id"`
	SKU string `json:"sku"`
}

func (r *reservation) Validate() error {
	if err := wire.ID("id", r.ID); err != nil {
		return err
	}
	return wire.Text("sku", r.SKU, 64)
}

func decodeReservation(data []byte) (reservation, error) { return wire.DecodeValid[reservation](data) }

type reservationRecord struct {
	store.Meta `bson:",inline"`
	SKU        string `bson:"sku"`
}
