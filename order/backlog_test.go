package order

import (
	"context"
	"testing"
	"time"
)

// While one request reads the backlog's size from the queue, the others go on with the last
// reading rather than waiting for it: the read is two requests to JetStream, and every order
// arriving meanwhile, refusals included, waited for them.
func TestBacklogReadHoldsNoOneUp(t *testing.T) {
	reads := make(chan struct{}) // a read has begun
	release := make(chan uint64) // what the read answers
	b := &backlog{max: 10, read: func(context.Context) (uint64, error) {
		reads <- struct{}{}
		return <-release, nil
	}}
	first := make(chan bool)
	go func() { full, _ := b.full(context.Background()); first <- full }()
	<-reads

	other := make(chan uint64)
	go func() { _, size := b.full(context.Background()); other <- size }()
	select {
	case size := <-other:
		if size != 0 {
			t.Fatalf("while the first read runs, another request goes by %d orders, want the last reading, 0", size)
		}
	case <-reads:
		t.Fatal("a second request read the size while the first read was running")
	case <-time.After(10 * time.Second):
		t.Fatal("a request waited for another's read of the backlog's size")
	}

	release <- 12
	if !<-first {
		t.Fatal("12 orders waiting, bound 10: not full")
	}
	if full, size := b.full(context.Background()); !full || size != 12 {
		t.Fatalf("after the read: full %v, %d orders; want full, 12 (read at most once a second)", full, size)
	}
}
