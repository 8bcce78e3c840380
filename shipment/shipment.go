// Package shipment is the last service of the chain: it saves the shipment it is asked for and
// answers. It serves shipment.create on NATS.
package shipment

import (
	"context"
	"time"

	"github.com/breakerchain/breakerchain/internal/wire"
	"github.com/breakerchain/breakerchain/messaging"
)

// Shipment is what payment sends on: what to ship, where.
type Shipment struct {
	ID         string `json:"id"`
	Directions string `json:"directions"`
}

// MaxDirections is the longest directions text accepted, in bytes.
const MaxDirections = 1024

// Validate checks s; field names in errors start with prefix ("payment.shipment.").
func (s *Shipment) Validate(prefix string) error {
	if err := wire.ID(prefix+"id", s.ID); err != nil {
		return err
	}
	return wire.Text(prefix+"directions", s.Directions, MaxDirections)
}

// Decode reads and validates a shipment request body.
func Decode(data []byte) (Shipment, error) {
	var s Shipment
	if err := wire.Decode(data, &s); err != nil {
		return s, err
	}
	return s, s.Validate("")
}

// record is a shipment as stored in the shipments collection.
type record struct {
	ID         string    `bson:"_id"`
	Directions string    `bson:"directions"`
	Print      string    `bson:"fingerprint"`
	RequestID  string    `bson:"request_id,omitempty"`
	CreatedAt  time.Time `bson:"created_at"`
}

func (r *record) Key() string         { return r.ID }
func (r *record) Fingerprint() string { return r.Print }

func newRecord(ctx context.Context, s Shipment) *record {
	return &record{
		ID: s.ID, Directions: s.Directions, Print: wire.Fingerprint(s),
		RequestID: messaging.CallFrom(ctx).RequestID, CreatedAt: time.Now().UTC(),
	}
}
