package store

import (
	"context"

	"go.mongodb.org/mongo-driver/v2/mongo"
)

// WriteBatch sends docs into c as one batch, as the batcher does, with each document's caller
// context, and returns each caller's answer.
func WriteBatch(c *mongo.Collection, ctxs []context.Context, docs []any) []error {
	batch := make([]*queued, len(docs))
	for i := range docs {
		batch[i] = &queued{ctx: ctxs[i], doc: docs[i], done: make(chan error, 1)}
	}
	(&batcher{coll: c}).write(batch)
	errs := make([]error, len(batch))
	for i, q := range batch {
		errs[i] = <-q.done
	}
	return errs
}
