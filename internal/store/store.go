// Package store is the MongoDB plumbing every service shares: one client connected once at
// start, typed collections keyed by the business id (_id), and driver errors translated into
// the few that callers act on.
// It must not know the services or the wire: a record is a plain struct that embeds Meta.
//
// Writes are inserts by _id (a repeated id is a duplicate, never a second record), gathered into
// batches when they come together (group commit, batch.go). Reads are by _id. A record is never
// deleted, and its one update is a void (VoidOnce), by _id, rare (a compensation). Beside the
// records, a service may keep a small working set (order's open orders): Delete and Set change one
// of its documents by _id, and Before finds the ones whose time has come, which a MongoDB answers
// from an index (Index) and the embedded store by scanning that working set, never the records.
//
// # What the store costs
//
// On the embedded store (FerretDB on SQLite, one writer) an insert command costs ~1 ms however
// many documents it carries, up to ~100, and a read by _id ~1 ms at any size once the embedded
// store has its _id index (embedded.IndexIDs; without it a read scans the collection). So an
// order costs four document inserts and up to two reads, and the chain's ceiling is the number
// of insert commands a second, not documents: batching is what lifts it (docs/BENCHMARKS.md).
// That is also why records are inserted, never updated, now that an update by _id no longer
// scans: inserts batch and updates would not, and no two writers race on one document, which
// the embedded store does not make atomic.
//
// # Write concern and retries
//
// Connect sets w: majority and retryWrites=true itself, so that no driver default decides them
// (a URI may still say otherwise). On a replica set that is what makes an acknowledged order
// survive the loss of the primary: a write acknowledged by one member alone can be rolled back
// after an election, and a write interrupted by the election is resent once by the driver to the
// new primary. The embedded store (FerretDB, one SQLite file) accepts both: it has one member,
// so a majority is that member, and the driver never retries there (retryable writes need a
// replica set).
//
// When the store answers "not now" (a primary stepping down, an election, a shutdown: the codes
// in transientCodes, or an error labelled RetryableWriteError or TransientTransactionError), the
// error is ErrUnavailable like a lost connection: InsertOnce resends the insert once, and a
// client is told 503 with Retry-After, never 500.
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/mongo/readpref"
	"go.mongodb.org/mongo-driver/v2/mongo/writeconcern"
	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/topology"
)

// Errors callers act on.
var (
	ErrNotFound    = errors.New("not found")
	ErrDuplicate   = errors.New("duplicate id")
	ErrUnavailable = errors.New("store unavailable")
)

// SelectTimeout is how long an operation waits for a store to talk to: a store that is down
// costs a request this long, not the driver's 30 s.
const SelectTimeout = 2 * time.Second

// OpTimeout bounds every store operation. It is longer than SelectTimeout because a store that
// is up but busy (the embedded one's SQLite stalls for a second or more under sustained writes)
// should be waited for: giving up makes the write's outcome unknown.
const OpTimeout = 5 * time.Second

// Connect creates the service's one client. It does not wait for the server: Ping does. monitor
// may be nil; metrics give one to time every command.
// Writes are acknowledged by a majority and retried by the driver (see the package doc).
func Connect(uri string, monitor *event.CommandMonitor) (*mongo.Client, error) {
	c, err := mongo.Connect(options.Client().
		SetWriteConcern(writeconcern.Majority()).
		SetRetryWrites(true).
		ApplyURI(uri).
		SetMonitor(monitor).
		SetServerSelectionTimeout(SelectTimeout).
		SetConnectTimeout(SelectTimeout).
		// Notice a returning store within seconds, not the driver's default 10.
		SetHeartbeatInterval(2 * time.Second).
		SetAppName("breakerchain").
		// Free-form fields (order items) come back as maps, as they went in, not as bson.D.
		SetBSONOptions(&options.BSONOptions{DefaultDocumentMap: true}))
	if err != nil {
		return nil, fmt.Errorf("mongo: %w", err)
	}
	return c, nil
}

// Ping checks the store answers within timeout.
func Ping(ctx context.Context, c *mongo.Client, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.Ping(ctx, readpref.Primary()); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// translate maps driver errors to this package's.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mongo.ErrNoDocuments):
		return ErrNotFound
	case mongo.IsDuplicateKeyError(err):
		return ErrDuplicate
	case errors.Is(err, context.Canceled):
		return err
	case isWriteConcernError(err):
		// The write was done but not confirmed as asked (a step-down meanwhile included): it may
		// or may not stay.
		return fmt.Errorf("%w: %w", ErrUnknown, err)
	case isTransient(err):
		// A primary stepping down, an election, a shutdown: the store answered, but only to say
		// it cannot take this now; a moment later (another primary) it can.
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	case refusedDocument(err):
		// The store answered and refused the document: bad input that validation let through.
		return fmt.Errorf("%w: %w", ErrRefused, err)
	case errors.As(err, new(mongo.WriteException)):
		// The store answered that it did not write, for a reason that is not the document's: a
		// store in trouble. Not done, and not refused for good (a void told "refused" would
		// leave a payment standing): like an outage, it may work in a moment.
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	case mongo.IsTimeout(err), mongo.IsNetworkError(err), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, new(topology.ServerSelectionError)), errors.Is(err, mongo.ErrClientDisconnected):
		// The store is not there for us now; it may be in a moment.
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	default:
		// Anything else (a command the store refuses, a bug) is not an outage.
		return fmt.Errorf("store: %w", err)
	}
}

// refusedCodes are the server error codes of a document the store will not keep, whenever it is
// sent: BadValue, FailedToParse, TypeMismatch, DollarPrefixedFieldName, InvalidDBRef,
// EmptyFieldName, DottedFieldName, DocumentValidationFailure, BSONObjectTooLarge and the
// document-too-large codes.
var refusedCodes = []int{2, 9, 14, 52, 55, 56, 57, 121, 10334, 17419, 17420}

// refusedDocument reports whether err is a write error that refuses the document itself.
func refusedDocument(err error) bool {
	var we mongo.WriteException
	if !errors.As(err, &we) || len(we.WriteErrors) == 0 {
		return false
	}
	for _, e := range we.WriteErrors {
		if !slices.Contains(refusedCodes, e.Code) {
			return false
		}
	}
	return true
}

// transientCodes are the server error codes of a store that is changing hands or going away:
// NotWritablePrimary, PrimarySteppedDown, InterruptedDueToReplStateChange, ShutdownInProgress,
// NotPrimaryNoSecondaryOk, and their kin from MongoDB's list of retryable errors.
var transientCodes = []int{
	10107, // NotWritablePrimary
	189,   // PrimarySteppedDown
	11602, // InterruptedDueToReplStateChange
	91,    // ShutdownInProgress
	13435, // NotPrimaryNoSecondaryOk
	13436, // NotPrimaryOrSecondary
	11600, // InterruptedAtShutdown
	6,     // HostUnreachable
	7,     // HostNotFound
	89,    // NetworkTimeout
	9001,  // SocketException
}

// isTransient reports whether err is the store saying "not now": a transient server code, or a
// label MongoDB puts on errors that a retry may cure.
func isTransient(err error) bool {
	var se mongo.ServerError
	if !errors.As(err, &se) {
		return false
	}
	if se.HasErrorLabel("RetryableWriteError") || se.HasErrorLabel("TransientTransactionError") {
		return true
	}
	for _, code := range transientCodes {
		if se.HasErrorCode(code) {
			return true
		}
	}
	return false
}

func isWriteConcernError(err error) bool {
	var we mongo.WriteException
	var bwe mongo.BulkWriteException
	return (errors.As(err, &we) && we.WriteConcernError != nil) || (errors.As(err, &bwe) && bwe.WriteConcernError != nil)
}

// Meta is what every stored record has: the business id as _id, the fingerprint of the request
// that created it, the origin it was made for (the order, see messaging.Call), the request id,
// the trace and the time. Records embed it inline.
type Meta struct {
	ID          string `bson:"_id"`
	Fingerprint string `bson:"fingerprint"` // wire.Fingerprint of the request
	Origin      string `bson:"origin,omitempty"`
	RequestID   string `bson:"request_id,omitempty"`
	// Trace is the W3C traceparent of the span that made the record (none when untraced): the
	// first trace of an order, which its re-drives link to and GET /orders/{id} names.
	Trace     string    `bson:"trace,omitempty"`
	CreatedAt time.Time `bson:"created_at"`
	// Voided is set when the record is undone (see VoidOnce): the one update a record ever gets.
	Voided *Void `bson:"voided,omitempty"`
}

// Metadata returns m: a record embeds Meta and so is a Record.
func (m *Meta) Metadata() *Meta { return m }

// Collection is a collection of T documents whose _id is the business id.
type Collection[T any] struct {
	c       *mongo.Collection
	batch   *batcher // inserts
	deletes *batcher
}

// NewCollection returns the collection name of db. Build one per collection and share it: its
// inserts are gathered into batches (see batch.go).
func NewCollection[T any](db *mongo.Database, name string) *Collection[T] {
	c := db.Collection(name)
	return &Collection[T]{c: c, batch: &batcher{coll: c, write: writeInserts}, deletes: &batcher{coll: c, write: writeDeletes}}
}

// Name returns the collection's name.
func (c *Collection[T]) Name() string { return c.c.Name() }

func opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, OpTimeout)
}

// Insert stores doc, in a batch with the inserts made at the same time; ErrDuplicate when its
// _id is taken.
func (c *Collection[T]) Insert(ctx context.Context, doc *T) error {
	ctx, cancel := opContext(ctx)
	defer cancel()
	return c.batch.insert(ctx, doc)
}

// insertAlone stores doc in an insert of its own: for a resend, whose duplicate must not make the
// store insert a whole batch one document at a time (FerretDB does, on any duplicate in one).
func (c *Collection[T]) insertAlone(ctx context.Context, doc *T) error {
	ctx, cancel := opContext(ctx)
	defer cancel()
	_, err := c.c.InsertOne(ctx, doc)
	return translate(err)
}

// Get loads the document with _id id; ErrNotFound when there is none.
func (c *Collection[T]) Get(ctx context.Context, id string) (*T, error) {
	ctx, cancel := opContext(ctx)
	defer cancel()
	var doc T
	if err := c.c.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&doc); err != nil {
		return nil, translate(err)
	}
	return &doc, nil
}

// Delete removes the document with _id id, if there is one, in a batch with the deletes made at
// the same time (see batch.go).
func (c *Collection[T]) Delete(ctx context.Context, id string) error {
	ctx, cancel := opContext(ctx)
	defer cancel()
	return c.deletes.add(ctx, id)
}

// Set sets field to value in the document with _id id, if there is one.
func (c *Collection[T]) Set(ctx context.Context, id, field string, value any) error {
	ctx, cancel := opContext(ctx)
	defer cancel()
	_, err := c.c.UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: field, Value: value}}}})
	return translate(err)
}

// Before returns at most limit documents whose time field is before t, earliest first.
func (c *Collection[T]) Before(ctx context.Context, field string, t time.Time, limit int) ([]*T, error) {
	ctx, cancel := opContext(ctx)
	defer cancel()
	cur, err := c.c.Find(ctx, bson.D{{Key: field, Value: bson.D{{Key: "$lt", Value: t}}}},
		options.Find().SetSort(bson.D{{Key: field, Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, translate(err)
	}
	var docs []*T
	if err := cur.All(ctx, &docs); err != nil {
		return nil, translate(err)
	}
	return docs, nil
}

// Index creates, if it is not there, an ascending index on field: what Before filters and sorts
// on. The embedded store accepts it but scans anyway (see the package doc).
func (c *Collection[T]) Index(ctx context.Context, field string) error {
	ctx, cancel := opContext(ctx)
	defer cancel()
	_, err := c.c.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: field, Value: 1}}})
	return translate(err)
}

// Record is a stored document that knows its id, the fingerprint of the request that created it
// and the origin it was made for, so a repeat can be told from a conflict.
type Record interface {
	Metadata() *Meta
}

// sameRequest reports whether a and b were made by the same request: the same body for the
// same origin. The same body for another origin (a payment id reused by another order) is not.
func sameRequest(a, b Record) bool {
	ma, mb := a.Metadata(), b.Metadata()
	return ma.Fingerprint == mb.Fingerprint && ma.Origin == mb.Origin
}

// InsertOnce stores doc unless its id is taken. If it is, the stored document is returned with
// created false: a replay when the same request made it (sameRequest), ErrConflict when not.
//
// An insert that was sent but not answered may still land. Then InsertOnce sends it again and
// lets the unique _id decide: a duplicate with this fingerprint is this insert (or a concurrent
// identical one, equally ours to finish, the work downstream being idempotent) and reports
// created; a plain success means the first never landed and cannot any more. If the store
// still does not answer, the error is ErrUnknown, not ErrUnavailable: the caller must not claim
// that nothing was saved.
func InsertOnce[T any, P interface {
	*T
	Record
}](ctx context.Context, c *Collection[T], doc P) (stored P, created bool, err error) {
	err = c.Insert(ctx, (*T)(doc))
	if errors.Is(err, ErrUnavailable) && ctx.Err() != nil {
		// The caller's deadline cut it short: sending it again cannot be answered either.
		return nil, false, fmt.Errorf("%w: %w", ErrUnknown, err)
	}
	if errors.Is(err, ErrUnavailable) && !errors.As(err, new(topology.ServerSelectionError)) {
		// Sent, but no answer. (No server selected: nothing was sent, nothing can land.)
		err = c.insertAlone(ctx, (*T)(doc))
		switch {
		case err == nil:
			return doc, true, nil
		case errors.Is(err, ErrDuplicate):
			found, gerr := c.Get(ctx, doc.Metadata().ID)
			switch {
			case gerr != nil:
				return nil, false, fmt.Errorf("%w: %v", ErrUnknown, gerr)
			case !sameRequest(P(found), doc):
				return P(found), false, ErrConflict
			}
			return P(found), true, nil
		}
		return nil, false, fmt.Errorf("%w: %v", ErrUnknown, err)
	}
	if !errors.Is(err, ErrDuplicate) {
		return doc, err == nil, err
	}
	existing, err := c.Get(ctx, doc.Metadata().ID)
	if err != nil {
		return nil, false, err
	}
	if !sameRequest(P(existing), doc) {
		return P(existing), false, ErrConflict
	}
	return P(existing), false, nil
}

// ErrConflict is an id that is taken by a different request: another body, or the same body
// for another origin.
var ErrConflict = errors.New("id already used with a different body")

// ErrRefused is a document the store answered it will not keep (not a duplicate).
var ErrRefused = errors.New("the store refused the document")

// ErrUnknown is a write that failed in a way that leaves open whether it landed.
var ErrUnknown = errors.New("store unavailable; the write may or may not have landed")
