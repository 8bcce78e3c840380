// Package order is the entry of the chain: the HTTP API that takes an order, saves it, calls
// payment through its breaker and records what happened. An order is "completed" only when
// every hop did its work; otherwise it stays "pending" with the reason.
package order

import (
	"context"
	"encoding/json"
	"time"

	"github.com/breakerchain/breakerchain/internal/wire"
	"github.com/breakerchain/breakerchain/messaging"
	"github.com/breakerchain/breakerchain/payment"
)

// Order is the body of POST /create, the seed's shape.
type Order struct {
	ID      string           `json:"id"`
	Date    *Date            `json:"date,omitempty"`
	Items   []any            `json:"items"`
	Payment *payment.Payment `json:"payment"`
}

// Date is the seed's optional order date, an RFC 3339 time.
type Date struct{ time.Time }

// UnmarshalJSON reads an RFC 3339 string, naming the field when it is not one.
func (d *Date) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		if d.Time, err = time.Parse(time.RFC3339, s); err == nil {
			return nil
		}
	}
	return wire.Invalid("date", "must be an RFC 3339 time, like 2023-01-18T20:23:47Z")
}

// MaxItems is the most items an order may have.
const MaxItems = 1000

// Validate checks o and everything it nests.
func (o *Order) Validate() error {
	if err := wire.ID("id", o.ID); err != nil {
		return err
	}
	switch {
	case o.Items == nil:
		return wire.Invalid("items", "is required (an array, may be empty)")
	case len(o.Items) > MaxItems:
		return wire.Invalid("items", "must have at most %d items", MaxItems)
	case o.Payment == nil:
		return wire.Invalid("payment", "is required")
	}
	return o.Payment.Validate("payment.")
}

// Decode reads and validates an order request body.
func Decode(data []byte) (Order, error) {
	var o Order
	if err := wire.Decode(data, &o); err != nil {
		return o, err
	}
	return o, o.Validate()
}

// Status of an order.
const (
	StatusPending   = "pending"   // saved; not every hop has done its work (see reason)
	StatusCompleted = "completed" // payment and shipment both did their work
)

// record is an order as stored in the orders collection.
type record struct {
	ID        string        `bson:"_id"`
	Date      *time.Time    `bson:"date,omitempty"`
	Items     []any         `bson:"items"`
	Payment   paymentRecord `bson:"payment"`
	Status    string        `bson:"status"`
	Reason    string        `bson:"reason,omitempty"`
	Hops      *hopRecord    `bson:"hops,omitempty"`
	Print     string        `bson:"fingerprint"`
	RequestID string        `bson:"request_id,omitempty"`
	CreatedAt time.Time     `bson:"created_at"`
	UpdatedAt time.Time     `bson:"updated_at"`
}

type paymentRecord struct {
	ID         string  `bson:"id"`
	Amount     float64 `bson:"amount"`
	ShipmentID string  `bson:"shipment_id"`
	Directions string  `bson:"directions"`
}

// hopRecord is a stored messaging.Reply.
type hopRecord struct {
	Service string     `bson:"service"`
	Time    time.Time  `bson:"time"`
	Outcome string     `bson:"outcome"`
	Reason  string     `bson:"reason,omitempty"`
	Line    string     `bson:"line"`
	Next    *hopRecord `bson:"next,omitempty"`
}

func (r *record) Key() string         { return r.ID }
func (r *record) Fingerprint() string { return r.Print }

// reasonInProgress is the reason of an order saved whose chain has not answered yet. Should the
// process die there, it stays the truth: nobody knows yet whether payment happened.
const reasonInProgress = "in progress: payment has not answered yet"

func newRecord(ctx context.Context, o Order) *record {
	now := time.Now().UTC()
	p := o.Payment
	var date *time.Time
	if o.Date != nil {
		date = &o.Date.Time
	}
	return &record{
		ID: o.ID, Date: date, Items: o.Items,
		Payment: paymentRecord{ID: p.ID, Amount: *p.Amount, ShipmentID: p.Shipment.ID, Directions: p.Shipment.Directions},
		Status:  StatusPending, Reason: reasonInProgress, Print: wire.Fingerprint(o),
		RequestID: messaging.CallFrom(ctx).RequestID, CreatedAt: now, UpdatedAt: now,
	}
}

func toHops(r *messaging.Reply) *hopRecord {
	if r == nil {
		return nil
	}
	return &hopRecord{Service: r.Service, Time: r.Time, Outcome: string(r.Outcome), Reason: r.Reason,
		Line: r.Line, Next: toHops(r.Next)}
}

func (h *hopRecord) reply() *messaging.Reply {
	if h == nil {
		return nil
	}
	return &messaging.Reply{Service: h.Service, Time: h.Time, Outcome: messaging.Outcome(h.Outcome),
		Reason: h.Reason, Line: h.Line, Next: h.Next.reply()}
}

// verdict is the status and reason a chain's reply gives an order.
func verdict(r *messaging.Reply) (status, reason string) {
	p := r.Problem()
	if p == nil {
		return StatusCompleted, ""
	}
	return StatusPending, p.Service + " " + string(p.Outcome) + ": " + p.Reason
}
