package order

import (
	"context"
	"testing"
	"time"

	"github.com/failsafe-go/failsafe-go/adaptivelimiter"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/breakerchain/breakerchain/internal/config"
)

// TestDrainPaceFollowsClientsLatency shows the drain's pace: whole with no clients, from one
// re-drive when they come, growing while their latency holds, halving when it rises, and whole
// again only once no client has posted for a second.
func TestDrainPaceFollowsClientsLatency(t *testing.T) {
	share := 32
	var p drainPace
	now := time.Unix(0, 0)
	// interval passes one interval with n clients' orders of d each, and returns what is allowed.
	interval := func(n int, d time.Duration) int {
		for range n {
			p.observe(d)
		}
		now = now.Add(paceInterval)
		return p.allowedAt(now, share)
	}

	// Given no clients, the drain takes its whole share.
	if got := p.allowedAt(now, share); got != share {
		t.Fatalf("at first: %d allowed, want the share %d", got, share)
	}
	if got := interval(paceMinSamples-1, time.Second); got != share {
		t.Fatalf("too few clients' orders to tell: %d allowed, want the share %d still", got, share)
	}
	// When clients come, the drain starts again from one, learns their latency from the next
	// interval, and grows by one while they are as fast.
	if got := interval(20, 30*time.Millisecond); got != 1 {
		t.Fatalf("clients back: %d allowed, want 1", got)
	}
	for want := 2; want <= 6; want++ {
		if got := interval(20, 40*time.Millisecond); got != want {
			t.Fatalf("clients' latency within %.1f × their fastest: %d allowed, want %d", paceTolerance, got, want)
		}
	}
	// When their latency rises past the tolerance, what is in force halves: the share, if it
	// fell below what was allowed; down to one, never none.
	share = 4
	for _, want := range []int{2, 1, 1} {
		if got := interval(20, 70*time.Millisecond); got != want {
			t.Fatalf("clients' latency %.2f × their fastest, share %d: %d allowed, want %d", 70.0/40, share, got, want)
		}
	}
	share = 32
	// Light traffic is still clients: an interval goes on until it has enough of their orders.
	for range 2 {
		if got := interval(3, 40*time.Millisecond); got != 1 {
			t.Fatalf("three clients' orders a quarter second: %d allowed, want 1 still", got)
		}
	}
	if got := interval(3, 40*time.Millisecond); got != 2 { // nine orders: enough, and as fast
		t.Fatalf("after three quarters of a second of light traffic as fast as before: %d allowed, want 2", got)
	}
	// Clients gone for a second: the whole share again.
	for range 3 {
		interval(0, 0)
	}
	if got := interval(0, 0); got != share {
		t.Fatalf("no client for a second: %d allowed, want the share %d", got, share)
	}
}

// TestClientsOrdersPaceTheDrain shows the wiring: a client's order's permit is timed for the
// pace, a re-drive's is not, and what spare gives re-drives is what the pace allows.
func TestClientsOrdersPaceTheDrain(t *testing.T) {
	a := newAdmission(config.Admission{Max: 16, MaxWait: time.Millisecond}, prometheus.NewRegistry())
	client, ok := a.admit(context.Background())
	if !ok {
		t.Fatal("a client's order was refused by an idle limit")
	}
	client.Record()
	redrive, ok := a.tryRedrive(false)
	if !ok {
		t.Fatal("no room for a re-drive under an idle limit")
	}
	redrive.Record()
	if a.pace.n != 1 {
		t.Fatalf("the pace saw %d orders, want 1: the client's (a re-drive's time says nothing of clients' latency)", a.pace.n)
	}
	if got := a.spare(false); got != 8 {
		t.Fatalf("spare: %d, want half the limit of 16 while no client has been seen for long", got)
	}
	a.pace.allowed, a.pace.start = 3, time.Now() // clients slowed: three re-drives allowed
	if got := a.spare(false); got != 3 {
		t.Fatalf("spare: %d, want the 3 the pace allows", got)
	}
}

// TestGivenBackPermitWakesTheRedriver: a re-driver waiting for room is told as soon as any
// permit is given back, a re-drive's or a client's, rather than finding out at its next poll.
func TestGivenBackPermitWakesTheRedriver(t *testing.T) {
	a := newAdmission(config.Admission{Max: 16, MaxWait: time.Millisecond}, prometheus.NewRegistry())
	told := func() bool {
		select {
		case <-a.freed:
			return true
		default:
			return false
		}
	}
	client, _ := a.admit(context.Background())
	redrive, ok := a.tryRedrive(false)
	if !ok {
		t.Fatal("no room for a re-drive under an idle limit")
	}
	if told() {
		t.Fatal("told of room freed before any permit was given back")
	}
	redrive.Record()
	if !told() {
		t.Fatal("a re-drive's permit given back: the re-driver was not told")
	}
	client.Record()
	if !told() {
		t.Fatal("a client's permit given back: the re-driver was not told")
	}
	dropped, _ := a.tryRedrive(false)
	dropped.Drop()
	if !told() {
		t.Fatal("a re-drive's permit dropped: the re-driver was not told")
	}
	if told() {
		t.Fatal("told twice of one permit")
	}
}

// TestWokenRedriverFindsRoom: a re-driver waiting for room (with no poll to fall back on) wakes
// when a re-drive's permit is given back, and finds room then. (That the release is done before
// the re-driver is told is in the order of redrivePermit.Record's calls; a race this test would
// rarely catch.)
func TestWokenRedriverFindsRoom(t *testing.T) {
	a := newAdmission(config.Admission{Max: 16, MaxWait: time.Millisecond}, prometheus.NewRegistry())
	var held []adaptivelimiter.Permit
	for a.spare(false) > 0 {
		p, ok := a.tryRedrive(false)
		if !ok {
			t.Fatal("spare said room, tryRedrive found none")
		}
		held = append(held, p)
	}
	woke := make(chan int)
	go func() {
		a.awaitFreed(context.Background(), time.Hour)
		woke <- a.spare(false)
	}()
	held[0].Record()
	select {
	case room := <-woke:
		if room == 0 {
			t.Fatal("woken by a re-drive's permit given back, the re-driver found no room")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a re-drive's permit was given back and the waiting re-driver did not wake")
	}
}
