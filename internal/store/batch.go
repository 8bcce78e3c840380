package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Group commit
//
// The embedded store has one writer: single inserts top out near 1,400 a second however many
// callers wait, while one unordered InsertMany of 32 documents reached ~12,800 documents a second
// (of 128, ~21,700). So concurrent inserts into one collection leave together: while a batch is
// in flight the next one gathers, and leaves as soon as the first is answered. There is no
// timer: a lone insert leaves at once, never waiting for company. A batch holds at most MaxBatch
// documents.
//
// Each caller still gets its own answer, read from the bulk write's per-document errors:
// inserted, a duplicate id, refused; "unknown" when the write concern was not met for it; and
// "unavailable" when the whole batch failed (no answer, a lost connection, or a command error
// after some documents may have landed). InsertOnce then resends its own document, alone, as it
// did a single insert, and the unique _id decides. A document is converted to BSON by its own
// caller, so a document that cannot be is that caller's error alone. A caller whose context ends
// while its document is still queued is answered without it being sent; a batch runs until the
// last of its callers' deadlines.

// Deletes by _id gather the same way (Collection.Delete). On the embedded store a delete
// statement is a write of its own, and a filter other than one _id scans the collection, so a
// batch goes one of two ways. One by one: one delete command with a statement per id, each using
// the _id index whatever the collection holds (32 took 12.9 ms so, 22 ms as 32 commands). All at
// once: one DeleteMany of the ids, one write — 32 took 3.9 ms among 64 documents — whose scan
// grows with the collection (9.4 ms among 256, about 0.4 s among 10,000): fit for a small
// working set (open orders in flight), ruinous for a large one (a backlog draining). On a
// MongoDB the _id index answers both, and all at once is one write. So a batch of manyDeletes
// or more goes the way that cost less per id lately (deleteCost), trying the other again now
// and then. docs/BENCHMARKS.md has the chain's numbers both ways.

// manyDeletes is the batch size from which deletes may leave as one DeleteMany.
const manyDeletes = 8

// deleteCost is what deleting one id cost lately, all at once ([0]) and one by one ([1]), in
// seconds, averaged over recent batches. Only the batcher's sending goroutine uses it.
type deleteCost struct {
	perID [2]float64
	tried [2]time.Time // when each way was last taken
}

// retryOtherWay is how often the way that cost more is taken again, times how many times more it
// cost (up to 60 times): what each costs changes as the collection grows and shrinks, and a
// try of the dearer way stalls every write behind it — among 10,000 documents a DeleteMany holds
// the writer 0.4 s, 25 times a DeleteOne's cost per id: tried again after about four minutes,
// not every 10 s.
const retryOtherWay = 10 * time.Second

// allAtOnce says whether a batch of n ids leaves as one DeleteMany.
func (c *deleteCost) allAtOnce(n int) bool {
	if n < manyDeletes {
		return false
	}
	way := 0 // all at once until the other way has cost less
	if c.perID[1] > 0 && c.perID[1] < c.perID[0] {
		way = 1
	}
	other := 1 - way
	wait := retryOtherWay
	if c.perID[way] > 0 {
		wait = time.Duration(float64(retryOtherWay) * min(max(c.perID[other]/c.perID[way], 1), 60))
	}
	if !c.tried[way].IsZero() && time.Since(c.tried[other]) > wait {
		way = other // the second batch tries the other way; then as retryOtherWay says
	}
	c.tried[way] = time.Now()
	return way == 0
}

// record adds what a batch of n ids cost, sent all at once or not.
func (c *deleteCost) record(allAtOnce bool, n int, took time.Duration) {
	way := 1
	if allAtOnce {
		way = 0
	}
	x := took.Seconds() / float64(n)
	if c.perID[way] == 0 {
		c.perID[way] = x
	} else {
		c.perID[way] = (c.perID[way] + x) / 2
	}
}

// MaxBatch is the most documents one InsertMany (or ids one DeleteMany) carries.
const MaxBatch = 128

// batcher gathers the inserts, or the deletes, of one collection.
type batcher struct {
	coll   *mongo.Collection
	write  func(b *batcher, batch []*queued) // sends one batch and answers its callers
	mu     sync.Mutex
	queue  []*queued
	flying bool // a goroutine is sending batches; it stops when the queue is empty
	cost   deleteCost
}

// queued is one caller's document (bson.Raw) or id (string), waiting for its batch.
type queued struct {
	ctx  context.Context
	doc  any
	done chan error // gets the caller's answer, once
}

// insert queues doc and waits for its answer, or for ctx to end.
func (b *batcher) insert(ctx context.Context, doc any) error {
	raw, err := bson.Marshal(doc)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return b.add(ctx, raw)
}

// add queues doc (what write sends) and waits for its answer, or for ctx to end.
func (b *batcher) add(ctx context.Context, doc any) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: not sent: %w", ErrUnavailable, err)
	}
	q := &queued{ctx: ctx, doc: doc, done: make(chan error, 1)}
	b.mu.Lock()
	b.queue = append(b.queue, q)
	if !b.flying {
		b.flying = true
		go b.send()
	}
	b.mu.Unlock()
	select {
	case err := <-q.done:
		return err
	case <-ctx.Done():
		select {
		case err := <-q.done: // answered at the same moment: the answer wins
			return err
		default:
		}
		// Sent or not, the caller is gone; if it was sent it may land, as a single insert may.
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// send sends batches until the queue is empty.
func (b *batcher) send() {
	for {
		b.mu.Lock()
		n := min(len(b.queue), MaxBatch)
		if n == 0 {
			b.flying = false
			b.mu.Unlock()
			return
		}
		batch := slices.Clone(b.queue[:n])
		clear(b.queue[:n]) // answered entries must not stay reachable from the queue
		b.queue = b.queue[n:]
		b.mu.Unlock()
		b.write(b, batch)
	}
}

// live answers the callers of batch that gave up, and returns the others' documents and a
// context lasting until the last of their deadlines.
func live(batch []*queued) (sent []*queued, docs []any, ctx context.Context, cancel context.CancelFunc) {
	var deadline time.Time
	for _, q := range batch {
		if err := q.ctx.Err(); err != nil {
			q.done <- fmt.Errorf("%w: not sent: %w", ErrUnavailable, err)
			continue
		}
		docs = append(docs, q.doc)
		sent = append(sent, q)
		if dl, ok := q.ctx.Deadline(); ok && dl.After(deadline) {
			deadline = dl
		}
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(OpTimeout)
	}
	ctx, cancel = context.WithDeadline(withCallers(context.Background(), sent), deadline)
	return sent, docs, ctx, cancel
}

// writeInserts sends one batch of inserts, less what its callers gave up on, and answers each.
func writeInserts(b *batcher, batch []*queued) {
	sent, docs, ctx, cancel := live(batch)
	defer cancel()
	if len(sent) == 0 {
		return
	}
	_, err := b.coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	for i, q := range sent {
		q.done <- documentError(err, i, len(sent))
	}
}

// writeDeletes sends one batch of deletes by _id (see manyDeletes) and answers each caller.
func writeDeletes(b *batcher, batch []*queued) {
	sent, ids, ctx, cancel := live(batch)
	defer cancel()
	if len(sent) == 0 {
		return
	}
	start, many := time.Now(), b.cost.allAtOnce(len(ids))
	if many {
		_, err := b.coll.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: ids}}}})
		if err == nil {
			b.cost.record(true, len(ids), time.Since(start))
		}
		for _, q := range sent {
			q.done <- translate(err)
		}
		return
	}
	models := make([]mongo.WriteModel, len(ids))
	for i, id := range ids {
		models[i] = mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: id}})
	}
	_, err := b.coll.BulkWrite(ctx, models, options.BulkWrite().SetOrdered(false))
	if err == nil && len(ids) >= manyDeletes {
		b.cost.record(false, len(ids), time.Since(start))
	}
	for i, q := range sent {
		q.done <- documentError(err, i, len(sent))
	}
}

// documentError is what the error err of a bulk write of n documents says of the one at index i:
// nil when it was written, its own write error when it has one, "unknown" when the write
// concern was not met, and, when the batch failed as a whole, err translated — "unavailable"
// for a command error on more than one document, some of which may have landed.
func documentError(err error, i, n int) error {
	if err == nil {
		return nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) {
		terr := translate(err)
		if n > 1 && !slices.ContainsFunc([]error{ErrUnavailable, ErrUnknown, ErrDuplicate, ErrRefused}, func(e error) bool { return errors.Is(terr, e) }) {
			return fmt.Errorf("%w: the batch failed: %w", ErrUnavailable, err)
		}
		return terr
	}
	for _, we := range bwe.WriteErrors {
		if we.Index == i {
			return translate(mongo.WriteException{WriteErrors: mongo.WriteErrors{we.WriteError}})
		}
	}
	if bwe.WriteConcernError != nil {
		return translate(mongo.WriteException{WriteConcernError: bwe.WriteConcernError, Labels: bwe.Labels})
	}
	return nil // no error of its own in a bulk write that answered: inserted
}
