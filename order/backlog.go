package order

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// backlog bounds the deferred work the chain may owe: past max orders not final yet (ORDERS'
// entries, shared by every instance; orders in flight included), a new order is refused, 503
// with Retry-After, rather than taken and deferred — an operator decides how much pending work
// is acceptable (BACKLOG_MAX), not the chain's own overflow. The size is read from the stream at
// most every backlogRefresh, by one request, while the others go by the last reading rather
// than wait for its two requests to JetStream.
type backlog struct {
	read func(context.Context) (uint64, error) // the queue's size
	max  uint64                                // 0: no bound

	mu      sync.Mutex
	size    uint64
	readAt  time.Time // of the last reading, or of the last failed try
	reading bool      // a request is reading the size
}

// backlogRefresh is how stale the backlog's size may be: a bound a second late is still a bound.
const backlogRefresh = time.Second

// queueSize reads how many entries q holds: ORDERS' messages, and nothing else, so that "stream
// not found" means ORDERS itself is gone (ORDERS_SINCE gone says nothing of its size).
func queueSize(q *queue) func(context.Context) (uint64, error) {
	return func(ctx context.Context) (uint64, error) {
		ctx, cancel, err := q.opContext(ctx)
		if err != nil {
			return 0, err
		}
		defer cancel()
		info, err := q.stream.Info(ctx)
		if err != nil {
			return 0, err
		}
		return info.State.Msgs, nil
	}
}

// full reports whether a new order would go past the bound, and the size it goes by: the last
// reading (none before the first lands: 0). A queue that does not answer leaves the last reading
// standing, tried again a second later; an order's own timer write says whether it answers now.
func (b *backlog) full(ctx context.Context) (bool, uint64) {
	if b.max == 0 {
		return false, 0
	}
	b.mu.Lock()
	stale := !b.reading && time.Since(b.readAt) >= backlogRefresh
	b.reading = b.reading || stale
	size := b.size
	b.mu.Unlock()
	if stale {
		size = b.refresh(ctx)
	}
	return size >= b.max, size
}

// refresh reads the size, and returns the reading it leaves. A read that panics (the request's
// recoverer answers 500) is a failed read: tried again after backlogRefresh, not never again.
// A stream that is gone holds nothing: the size is 0, not the last reading, which would refuse
// every order for good where no re-driver runs — the order's own timer write is what puts the
// streams back (queue.heal).
func (b *backlog) refresh(ctx context.Context) uint64 {
	defer b.doneReading()
	n, err := b.read(ctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case err == nil:
		b.size = n
	case errors.Is(err, jetstream.ErrStreamNotFound):
		b.size = 0
	}
	return b.size
}

func (b *backlog) doneReading() {
	b.mu.Lock()
	b.reading, b.readAt = false, time.Now()
	b.mu.Unlock()
}
