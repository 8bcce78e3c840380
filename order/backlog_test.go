package order

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// While one request reads the backlog's size from the queue, the others go by the last reading
// rather than wait for it: the read is two requests to JetStream, and every order arriving
// meanwhile, refusals included, waited for them.
func TestBacklogReadHoldsNoOneUp(t *testing.T) {
	var reads atomic.Int32
	began := make(chan struct{}, 1) // the first read has begun
	release := make(chan uint64)    // what the first read answers
	b := &backlog{max: 10, read: func(context.Context) (uint64, error) {
		if reads.Add(1) > 1 {
			return 0, errors.New("read again")
		}
		began <- struct{}{}
		return <-release, nil
	}}
	first := make(chan bool)
	go func() { full, _ := b.full(context.Background()); first <- full }()
	<-began

	other := make(chan uint64)
	go func() { _, size := b.full(context.Background()); other <- size }()
	select {
	case size := <-other:
		if size != 0 {
			t.Fatalf("while the first read runs, another request goes by %d orders, want the last reading, 0", size)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a request waited for another's read of the backlog's size")
	}
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d reads while the first ran, want 1", n)
	}

	release <- 12
	if !<-first {
		t.Fatal("12 orders waiting, bound 10: not full")
	}
	if full, size := b.full(context.Background()); !full || size != 12 {
		t.Fatalf("after the read: full %v, %d orders; want full, 12", full, size)
	}
}

// A read that fails leaves the last reading standing and is tried again after backlogRefresh,
// not by every request meanwhile; and the request that read lets the next one read again.
func TestBacklogReadFailing(t *testing.T) {
	var reads atomic.Int32
	answer := func() (uint64, error) { return 12, nil }
	b := &backlog{max: 10, read: func(context.Context) (uint64, error) { reads.Add(1); return answer() }}
	if full, _ := b.full(context.Background()); !full {
		t.Fatal("12 orders waiting, bound 10: not full")
	}
	answer = func() (uint64, error) { return 0, errors.New("JetStream away") }
	b.readAt = time.Now().Add(-backlogRefresh) // the reading is due again
	for range 3 {
		if full, size := b.full(context.Background()); !full || size != 12 {
			t.Fatalf("with the queue not answering: full %v, %d orders; want the last reading, 12, full", full, size)
		}
	}
	if n := reads.Load(); n != 2 {
		t.Fatalf("%d reads, want 2: a failed read is tried again after %s, not at once", n, backlogRefresh)
	}
	answer = func() (uint64, error) { return 3, nil }
	b.readAt = time.Now().Add(-backlogRefresh)
	if full, size := b.full(context.Background()); full || size != 3 {
		t.Fatalf("the queue back with 3 orders: full %v, %d; want not full, 3 (the reading flag left set?)", full, size)
	}
}

// A read that panics (the request's recoverer answers it 500) is a failed read: the next
// request after backlogRefresh reads again, rather than every request going by the old
// reading for good.
func TestBacklogReadPanicking(t *testing.T) {
	var reads atomic.Int32
	b := &backlog{max: 10, read: func(context.Context) (uint64, error) {
		if reads.Add(1) == 1 {
			panic("the queue's client")
		}
		return 12, nil
	}}
	func() {
		defer func() { _ = recover() }()
		b.full(context.Background())
	}()
	b.readAt = time.Now().Add(-backlogRefresh) // the reading is due again
	if full, size := b.full(context.Background()); !full || size != 12 {
		t.Fatalf("after a read that panicked: full %v, %d orders, %d reads; want full, 12, read again", full, size, reads.Load())
	}
}

// A queue that does not answer leaves the last reading standing; a stream that is gone holds
// nothing, so a full backlog reads empty once its stream is lost, and orders are taken again
// (their timer writes put the stream back).
func TestBacklogOfALostStreamIsEmpty(t *testing.T) {
	var answer atomic.Pointer[error]
	b := &backlog{max: 2, read: func(context.Context) (uint64, error) {
		if err := answer.Load(); err != nil {
			return 0, *err
		}
		return 2, nil
	}}
	for _, step := range []struct {
		err  error
		full bool
	}{
		{nil, true},                          // 2 of 2
		{errors.New("no answer"), true},      // the last reading stands
		{jetstream.ErrStreamNotFound, false}, // gone: nothing waits
	} {
		if step.err != nil {
			answer.Store(&step.err)
		}
		b.readAt = time.Time{} // due for a reading
		if full, size := b.full(context.Background()); full != step.full {
			t.Errorf("read answering %v: full %v (%d), want %v", step.err, full, size, step.full)
		}
	}
}

// The bound reads ORDERS alone: with ORDERS_SINCE gone (only the age of the oldest order reads
// it), a full queue is still full.
func TestBacklogIgnoresTheMarksStream(t *testing.T) {
	q := openTestQueue(t, 1)
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		if _, _, err := q.schedule(ctx, entry{ID: id, Due: dueIn(time.Hour)}, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.js.DeleteStream(ctx, q.since.CachedInfo().Config.Name); err != nil {
		t.Fatal(err)
	}
	b := &backlog{max: 2, read: queueSize(q)}
	if full, size := b.full(ctx); !full || size != 3 {
		t.Errorf("ORDERS with 3 entries, ORDERS_SINCE gone: full %v at %d, want full at 3", full, size)
	}
}
