package order

import (
	"context"
	"encoding/json"
	"time"

	"github.com/breakerchain/breakerchain/internal/problem"
	"github.com/breakerchain/breakerchain/internal/service"
	"github.com/breakerchain/breakerchain/internal/store"
	"github.com/breakerchain/breakerchain/internal/wire"
	"github.com/breakerchain/breakerchain/messaging"
)

// Order is order's own part of the body of POST /create, the seed's shape. The body also nests
// the next service's ("payment"), which order checks with that service's rules and keeps as sent
// (see service.Split), without reading it.
type Order struct {
	ID    string `json:"id"`
	Date  *Date  `json:"date,omitempty"`
	Items []any  `json:"items"`
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

// Validate checks o's own fields.
func (o *Order) Validate() error {
	if err := wire.ID("id", o.ID); err != nil {
		return err
	}
	switch {
	case o.Items == nil:
		return wire.Invalid("items", "is required (an array, may be empty)")
	case len(o.Items) > MaxItems:
		return wire.Invalid("items", "must have at most %d items", MaxItems)
	}
	return wire.FreeForm("items", o.Items)
}

// Decode reads and validates order's own fields.
func Decode(data []byte) (Order, error) { return wire.DecodeValid[Order](data) }

// Status of an order.
const (
	StatusPending   = "pending"   // saved; not every hop has done its work yet (see reason)
	StatusCompleted = "completed" // payment and shipment both did their work
	StatusRejected  = "rejected"  // a hop refused it (4xx, e.g. a payment id already used): it never will; what was paid is voided
)

// state is where an order's chain stands: the one shape of an order's progress, however it is
// kept or shown (see the package doc, "One shape of an order"). The order as saved holds the
// state it was saved in; a run of the chain makes a new one (stateAfter), kept as the order's
// final result or carried by its timer while it is pending; what the API shows is read from it.
type state struct {
	Status    string     `bson:"status"`
	Reason    string     `bson:"reason,omitempty"`
	Hops      *hopRecord `bson:"hops,omitempty"` // what the last run answered
	UpdatedAt time.Time  `bson:"updated_at"`
	// What the runs made of it: none yet in an order as saved, so omitted there (a result
	// always has an attempt).
	Attempts  int    `bson:"attempts,omitempty"`   // runs of the chain that answered: the first, then re-drives
	LastError string `bson:"last_error,omitempty"` // why the last run that did not complete did not
	// Compensation is what a rejection undid, by service: {"payment": "voided"} (see compensate).
	Compensation map[string]messaging.Outcome `bson:"compensation,omitempty"`
	// NextAttempt is when a pending order is re-driven next, at the earliest: its timer's, read
	// from the queue (entry.state), never stored.
	NextAttempt *time.Time `bson:"-"`
}

// final reports whether an order in this state will never change.
func (st *state) final() bool { return st.Status != StatusPending }

// record is an order as stored in the orders collection (and, until it is final, its copy in
// orders_open): inserted once, never changed. Its State is, as stored, the state the order was
// saved in (pending, in progress); once loaded (ledger.loadState), what became of it since.
type record struct {
	store.Meta `bson:",inline"`
	Date       *time.Time `bson:"date,omitempty"`
	Items      []any      `bson:"items"`
	// PaymentBody is the body order sends payment, as it sent it first, so a re-drive sends the
	// same bytes (payment recognises them as a replay).
	PaymentBody string         `bson:"payment_body"`
	Legacy      *legacyPayment `bson:"payment,omitempty"` // an order saved before payment_body (see paymentBody)
	// State is a named field, not embedded: the store's codec skips an embedded unexported type.
	State state `bson:",inline"`
}

// legacyPayment is the payment as orders saved before payment_body stored it, flattened. It
// names shipment's fields because that older version's format did (directions had no prefix,
// so no rule could nest it without the names): it is a fixed format of the past, read only, not
// a contract of today's chain; a fourth service changes nothing here.
type legacyPayment struct {
	ID         string  `bson:"id"`
	Amount     float64 `bson:"amount"`
	ShipmentID string  `bson:"shipment_id"`
	Directions string  `bson:"directions"`
}

// paymentBody is the body to send payment for rec: as first sent, or, for an order saved by an
// older version, rebuilt in the shape that version sent (so payment sees the same fingerprint).
func (rec *record) paymentBody() []byte {
	if rec.PaymentBody != "" || rec.Legacy == nil {
		return []byte(rec.PaymentBody)
	}
	p := rec.Legacy
	b, _ := json.Marshal(map[string]any{"id": p.ID, "amount": p.Amount,
		"shipment": map[string]string{"id": p.ShipmentID, "directions": p.Directions}})
	return b
}

// result is a final state as kept in order_outcomes: inserted once, apart from the order, so
// that the order is written once and the result is an insert (a duplicate is a concurrent run
// that ended the same way). A pending state is never stored: it rides in the order's timer in
// the queue (see entry).
type result struct {
	ID    string `bson:"_id"`
	State state  `bson:",inline"`
}

// ResultsCollection holds the final results of orders, inserted once (its name is older than the type's).
const ResultsCollection = "order_outcomes"

// stateAfter is the state an order's attempt-th run of the chain leaves it in, the run having
// answered reply (or failed with ferr before it could call). lastError is the previous run's,
// kept when this one completes: it tells why the order needed more than one.
func stateAfter(attempt int, lastError string, reply *messaging.Reply, ferr error) *state {
	st := &state{Hops: toHops(reply), UpdatedAt: time.Now().UTC(), Attempts: attempt}
	st.Status, st.Reason = statusOf(reply)
	if ferr != nil {
		st.Status, st.Reason, st.Hops = StatusPending, "order failed: "+problem.From(ferr).Description, nil
	}
	st.LastError = lastError
	if st.Status != StatusCompleted {
		st.LastError = st.Reason
	}
	return st
}

// hopRecord is a stored messaging.Reply: the store's own type for the hops (DESIGN.md: store
// documents are not wire types), converted at the edges (toHops, reply).
type hopRecord struct {
	Service string     `bson:"service"`
	Time    time.Time  `bson:"time"`
	Outcome string     `bson:"outcome"`
	Reason  string     `bson:"reason,omitempty"`
	Line    string     `bson:"line"`
	Next    *hopRecord `bson:"next,omitempty"`
}

// ReasonInProgress is the reason of an order saved whose chain has not answered yet. Should the
// process die there, it stays the truth: nobody knows yet whether payment happened.
const ReasonInProgress = "in progress: payment has not answered yet"

// newRecord is order b as it is saved: its chain not answered yet.
func newRecord(ctx context.Context, b service.Body[Order]) *record {
	o := b.Own
	var date *time.Time
	if o.Date != nil {
		date = &o.Date.Time
	}
	meta := service.Meta(ctx, o.ID, b.Canonical)
	return &record{
		Meta: meta, Date: date, Items: o.Items, PaymentBody: string(b.Next),
		State: state{Status: StatusPending, Reason: ReasonInProgress, UpdatedAt: meta.CreatedAt},
	}
}

// toHops is reply r as the store keeps it.
func toHops(r *messaging.Reply) *hopRecord {
	if r == nil {
		return nil
	}
	return &hopRecord{Service: r.Service, Time: r.Time, Outcome: string(r.Outcome), Reason: r.Reason,
		Line: r.Line, Next: toHops(r.Next)}
}

// reply is the messaging.Reply h keeps.
func (h *hopRecord) reply() *messaging.Reply {
	if h == nil {
		return nil
	}
	return &messaging.Reply{Service: h.Service, Time: h.Time, Outcome: messaging.Outcome(h.Outcome),
		Reason: h.Reason, Line: h.Line, Next: h.Next.reply()}
}

// statusOf is the status and reason a chain's reply gives an order.
func statusOf(r *messaging.Reply) (status, reason string) {
	p := r.Problem()
	switch {
	case p == nil:
		return StatusCompleted, ""
	case p.Outcome == messaging.OutcomeRefused:
		return StatusRejected, p.Service + " refused it: " + p.Reason
	}
	return StatusPending, p.Service + " " + string(p.Outcome) + ": " + p.Reason
}
