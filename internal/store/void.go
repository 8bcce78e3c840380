package store

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Void is what a voided record carries: why, when, and the request that voided it.
type Void struct {
	Reason    string    `bson:"reason"`
	At        time.Time `bson:"at"`
	RequestID string    `bson:"request_id,omitempty"`
}

// VoidOnce marks the record id voided with v, if it is the record that request made (the same
// origin and fingerprint: sameRequest), and reports whether that record is now voided. A record
// voided already is left as it was (voiding twice is one void); no record, or another request's,
// is nothing to void: false, no error.
//
// The void is an update of the record by _id, not an insert elsewhere, so that whoever reads the
// record sees it voided, and a replay, which reads the record anyway (InsertOnce), finds the void
// at no extra cost. It is read first and written only if not voided: two voids racing may both
// write, the later one's time winning, which the embedded store does not order (single-document
// updates from several connections are not atomic there); either way the record is voided once.
func VoidOnce[T any, P interface {
	*T
	Record
}](ctx context.Context, c *Collection[T], req P, v Void) (bool, error) {
	found, err := c.Get(ctx, req.Metadata().ID)
	switch {
	case errors.Is(err, ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	case !sameRequest(P(found), req):
		return false, nil
	case P(found).Metadata().Voided != nil:
		return true, nil
	}
	ctx, cancel := opContext(ctx)
	defer cancel()
	_, err = c.c.UpdateOne(ctx, bson.D{{Key: "_id", Value: req.Metadata().ID}}, bson.D{{Key: "$set", Value: bson.D{{Key: "voided", Value: v}}}})
	if err != nil {
		return false, translate(err)
	}
	return true, nil
}
