// Package shipment is the last service of the chain: it saves the shipment it is asked for and
// answers (were a service added after it, it would call that one: the chain's order is the
// command's list, not shipment's business). It serves shipment.create on NATS, and
// shipment.void as every Step does, though it declares no undo: nobody asks it while no service
// after it declares one.
package shipment

import (
	"context"

	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/store"
	"github.com/breakerchain/breakerchain/internal/wire"
)

// Shipment is what payment sends on: what to ship, where.
type Shipment struct {
	ID         string `json:"id"`
	Directions string `json:"directions"`
}

// MaxDirections is the longest directions text accepted, in bytes.
const MaxDirections = 1024

// Validate checks s's own fields.
func (s *Shipment) Validate() error {
	if err := wire.ID("id", s.ID); err != nil {
		return err
	}
	return wire.Text("directions", s.Directions, MaxDirections)
}

// Decode reads and validates shipment's own fields.
func Decode(data []byte) (Shipment, error) { return wire.DecodeValid[Shipment](data) }

// record is a shipment as stored in the shipments collection.
type record struct {
	store.Meta `bson:",inline"`
	Directions string `bson:"directions"`
}

func newRecord(ctx context.Context, b service.Body[Shipment]) *record {
	return &record{Meta: service.Meta(ctx, b.Own.ID, b.Canonical), Directions: b.Own.Directions}
}
