package messaging_test

import (
	"context"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/breakerchain/breakerchain/internal/testkit"
	"github.com/breakerchain/breakerchain/messaging"
)

// gate is a handler that holds every request until release, tracking how many it holds at once.
type gate struct {
	inFlight, most atomic.Int64
	release        chan struct{}
}

func (g *gate) handle(ctx context.Context, _ []byte) (messaging.Reply, error) {
	n := g.inFlight.Add(1)
	defer g.inFlight.Add(-1)
	for {
		m := g.most.Load()
		if n <= m || g.most.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	return messaging.ReplyDone("gate", time.Now(), false, nil), nil
}

// A micro endpoint runs its handler one request at a time; the Responder hands each request to
// its own goroutine, up to MaxConcurrent at once and never more.
func TestResponderIsConcurrentAndBounded(t *testing.T) {
	for _, row := range []struct {
		name          string
		maxConcurrent uint
		requests      int
	}{
		{name: "all at once under the bound", maxConcurrent: 8, requests: 8},
		{name: "twice the bound", maxConcurrent: 3, requests: 6},
	} {
		t.Run(row.name, func(t *testing.T) {
			nc := connect(t)
			g := &gate{release: make(chan struct{})}
			r, err := messaging.Serve(nc, messaging.Endpoint{Service: "gate", Version: "1.0.0",
				Subject: "gate.create", MaxConcurrent: row.maxConcurrent}, g.handle, testkit.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.Stop(context.Background()) })

			var wg sync.WaitGroup
			replies := make(chan *nats.Msg, row.requests)
			for range row.requests {
				wg.Go(func() {
					m, err := nc.Request("gate.create", []byte(`{}`), 10*time.Second)
					if err == nil {
						replies <- m
					}
				})
			}
			want := min(int64(row.maxConcurrent), int64(row.requests))
			// Held in the handler at once: a serial endpoint would never get past one.
			testkit.Eventually(t, 5*time.Second, "requests held at once", func() bool {
				return g.inFlight.Load() == want
			})
			close(g.release)
			wg.Wait()
			if got := len(replies); got != row.requests {
				t.Fatalf("%d of %d requests answered", got, row.requests)
			}
			if most := g.most.Load(); most > int64(row.maxConcurrent) {
				t.Fatalf("%d handlers ran at once, bound %d", most, row.maxConcurrent)
			}
		})
	}
}

// Headers are input too: a request id that is too long or not log-safe is replaced, and a hop
// number out of range counts as absent, so it can neither flood the logs and the store nor
// overflow the chain's JUMPS count.
func TestResponderDistrustsHeaders(t *testing.T) {
	nc := connect(t)
	calls := make(chan messaging.Call, 8)
	r, err := messaging.Serve(nc, messaging.Endpoint{Service: "hdr", Version: "1.0.0", Subject: "hdr.create"},
		func(ctx context.Context, _ []byte) (messaging.Reply, error) {
			calls <- messaging.CallFrom(ctx)
			return messaging.ReplyDone("hdr", time.Now(), false, nil), nil
		}, testkit.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop(context.Background()) })
	for _, row := range []struct {
		name, hop, id string
		wantHop       int
		wantID        bool // the id is kept
	}{
		{name: "sane", hop: "2", id: "order-7", wantHop: 3, wantID: true},
		{name: "huge id", hop: "1", id: strings.Repeat("x", 100_000), wantHop: 2},
		{name: "id with a newline", hop: "1", id: "a\nlevel=ERROR msg=forged", wantHop: 2},
		{name: "hop that would overflow", hop: strconv.Itoa(math.MaxInt), id: "ok", wantHop: 1, wantID: true},
		{name: "negative hop", hop: "-5", id: "ok", wantHop: 1, wantID: true},
	} {
		t.Run(row.name, func(t *testing.T) {
			msg := nats.NewMsg("hdr.create")
			msg.Data = []byte(`{}`)
			msg.Header.Set(messaging.HeaderHop, row.hop)
			msg.Header.Set(messaging.HeaderRequestID, row.id)
			if _, err := nc.RequestMsg(msg, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			c := <-calls
			if c.Hop != row.wantHop {
				t.Errorf("hop %d, want %d", c.Hop, row.wantHop)
			}
			if kept := c.RequestID == row.id; kept != row.wantID || !messaging.ValidRequestID(c.RequestID) {
				t.Errorf("request id %.40q (kept %v), want kept %v and a valid id", c.RequestID, kept, row.wantID)
			}
		})
	}
	// A void's reason is stored with what it voids: bounded, and still valid UTF-8 once cut.
	msg := nats.NewMsg("hdr.create")
	msg.Header.Set(messaging.HeaderReason, strings.Repeat("é", 10_000))
	if _, err := nc.RequestMsg(msg, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if c := <-calls; len(c.Reason) == 0 || len(c.Reason) > 4096 || !utf8.ValidString(c.Reason) {
		t.Errorf("a 20,000-byte reason came through as %d bytes (valid UTF-8: %v), want at most 4096, valid", len(c.Reason), utf8.ValidString(c.Reason))
	}
}

// A control answers a requester's inbox; a request naming any other subject as its reply is
// refused unhandled, and nothing is published there. (It answers _R_.… too, the reply subject the
// server makes up for a request through an import; no client may name one, so that case is
// TestChaosWithLeastPrivilege's, through deploy/nats.conf's imports.)
func TestControlAnswersOnlyAnInbox(t *testing.T) {
	nc := connect(t)
	var handled atomic.Int64
	if _, err := messaging.Serve(nc, messaging.Endpoint{Service: "ctl", Version: "1.0.0"}, nil, testkit.Logger(t),
		messaging.Control{Name: "chaos", Subject: "chaos.ctl", Handle: func(context.Context, []byte) (any, error) {
			handled.Add(1)
			return map[string]bool{"ok": true}, nil
		}}); err != nil {
		t.Fatal(err)
	}
	for _, row := range []struct {
		reply    string
		answered bool
	}{
		{"payment.create", false},
		{"_INBOX.x.1", true},
		{"chaos.ctl.changed", false},
	} {
		sub, err := nc.SubscribeSync(row.reply)
		if err != nil {
			t.Fatal(err)
		}
		before := handled.Load()
		if err := nc.PublishRequest("chaos.ctl", row.reply, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		// The control takes its requests one at a time, in order: once this one is answered,
		// the one before was handled, and any answer of it has reached sub.
		if _, err := nc.Request("chaos.ctl", []byte(`{}`), 5*time.Second); err != nil {
			t.Fatalf("%s: the request after it: %v", row.reply, err)
		}
		_, err = sub.NextMsg(10 * time.Millisecond)
		if answered, took := err == nil, handled.Load()-before-1; answered != row.answered || (took == 1) != row.answered {
			t.Errorf("reply %s: answered %v, handled %d; want %v", row.reply, answered, took, row.answered)
		}
		_ = sub.Unsubscribe()
	}
}
