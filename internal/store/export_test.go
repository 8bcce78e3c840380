package store

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
)

// DocumentError is documentError, for tests.
var DocumentError = documentError

// WriteBatch sends docs into c as one batch, as the batcher does, with each document's caller
// context, and returns each caller's answer.
func WriteBatch(c *mongo.Collection, ctxs []context.Context, docs []any) []error {
	batch := make([]*queued, len(docs))
	for i := range docs {
		raw, err := bson.Marshal(docs[i])
		if err != nil {
			panic(err)
		}
		batch[i] = &queued{ctx: ctxs[i], doc: raw, done: make(chan error, 1)}
	}
	writeInserts(&batcher{coll: c}, batch)
	errs := make([]error, len(batch))
	for i, q := range batch {
		errs[i] = <-q.done
	}
	return errs
}

// Queued is how many documents wait in c's batcher for the batch in flight to be answered.
func Queued[T any](c *Collection[T]) int {
	c.batch.mu.Lock()
	defer c.batch.mu.Unlock()
	return len(c.batch.queue)
}

// QueuedDeletes is how many deletes wait in c's batcher for the batch in flight to be answered.
func QueuedDeletes[T any](c *Collection[T]) int {
	c.deletes.mu.Lock()
	defer c.deletes.mu.Unlock()
	return len(c.deletes.queue)
}
