package store

import (
	"context"
	"errors"
	"fmt"
	"sync"

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
// inserted, a duplicate id, refused, or — when the whole batch failed (no answer, a lost
// connection, a write concern not met) — the batch's error, for each. InsertOnce then resends
// its own document exactly as it did a single insert, and the unique _id decides; documents of
// one failed batch are resent together, as their resends gather again. A caller whose context
// ends while its document is still queued is answered without it being sent.

// MaxBatch is the most documents one InsertMany carries.
const MaxBatch = 128

// batcher gathers the inserts into one collection.
type batcher struct {
	coll   *mongo.Collection
	mu     sync.Mutex
	queue  []*queued
	flying bool // a goroutine is sending batches; it stops when the queue is empty
}

// queued is one caller's document, waiting for its batch.
type queued struct {
	ctx  context.Context
	doc  any
	done chan error // gets the caller's answer, once
}

// insert queues doc and waits for its answer, or for ctx to end.
func (b *batcher) insert(ctx context.Context, doc any) error {
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
		batch := b.queue[:n:n]
		b.queue = b.queue[n:]
		b.mu.Unlock()
		b.write(batch)
	}
}

// write sends one batch, less what its callers gave up on, and answers each caller.
func (b *batcher) write(batch []*queued) {
	docs := make([]any, 0, len(batch))
	sent := batch[:0:0]
	for _, q := range batch {
		if err := q.ctx.Err(); err != nil {
			q.done <- fmt.Errorf("%w: not sent: %w", ErrUnavailable, err)
			continue
		}
		docs = append(docs, q.doc)
		sent = append(sent, q)
	}
	if len(sent) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), OpTimeout)
	defer cancel()
	_, err := b.coll.InsertMany(ctx, docs, options.InsertMany().SetOrdered(false))
	for i, q := range sent {
		q.done <- documentError(err, i)
	}
}

// documentError is what the bulk write's error err says of the document at index i: nil when it
// was inserted, its own write error when it has one, and err itself, translated, when the batch
// failed as a whole.
func documentError(err error, i int) error {
	if err == nil {
		return nil
	}
	var bwe mongo.BulkWriteException
	if !errors.As(err, &bwe) || bwe.WriteConcernError != nil {
		return translate(err)
	}
	for _, we := range bwe.WriteErrors {
		if we.Index == i {
			return translate(mongo.WriteException{WriteErrors: mongo.WriteErrors{we.WriteError}})
		}
	}
	return nil // no error of its own in a bulk write that answered: inserted
}
