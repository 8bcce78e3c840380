package order

import (
	"context"
	"sync"
	"time"
)

// backlog bounds the deferred work the chain may owe: past max orders not final yet (ORDERS'
// entries, shared by every instance; orders in flight included), a new order is refused, 503
// with Retry-After, rather than taken and deferred — an operator decides how much pending work
// is acceptable (BACKLOG_MAX), not the chain's own overflow. The size is read from the stream at
// most every backlogRefresh, by one request while the others use the last reading.
type backlog struct {
	q   *queue
	max uint64 // 0: no bound

	mu     sync.Mutex
	size   uint64
	readAt time.Time
}

// backlogRefresh is how stale the backlog's size may be: a bound a second late is still a bound.
const backlogRefresh = time.Second

// full reports whether a new order would go past the bound, and the size read. A queue that
// does not answer is not full: the timer's own write says so, with its own 503.
func (b *backlog) full(ctx context.Context) (bool, uint64) {
	if b.max == 0 {
		return false, 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if time.Since(b.readAt) >= backlogRefresh {
		if n, _, err := b.q.state(ctx); err == nil {
			b.size, b.readAt = n, time.Now()
		}
	}
	return b.size >= b.max, b.size
}
