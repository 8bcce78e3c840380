package embedded

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/breakerchain/breakerchain/internal/mongowire"
)

// writeGate stands in front of the embedded FerretDB and lets one insert or update at a time into
// each database. SQLite has one writer per database file, and FerretDB lets every connection
// try: the losers sleep in SQLite's busy handler (1, 2, 5, 10, 15, 20, 25 ms, not woken when the
// lock frees), and under load most writers in the store were asleep. A queue here hands the
// turn to the next writer the moment FerretDB answers the last one (docs/design.md, "The
// embedded store's write gate"). Reads pass as before: SQLite's WAL lets readers in beside a
// writer.
//
// It reads each message's header, and an OP_MSG's command name and $db; the rest is relayed
// unread.
type writeGate struct {
	ln    net.Listener
	store string // FerretDB's own Unix socket

	mu    sync.Mutex
	turns map[string]chan struct{} // per database: holding its one token is having the turn
	conns map[net.Conn]struct{}    // open on either side, closed by stop
	wg    sync.WaitGroup
}

// gated are the commands that wait for a turn: those that write documents, but delete. A delete
// carries a batch of statements, each its own transaction in FerretDB (or, for $in, a scan of the
// collection first): holding the turn across the batch kept the inserts clients wait on behind
// cleanup nobody waits on, and cost 16 clients a fifth of their pace (docs/BENCHMARKS.md).
// Other writes (create, drop, createIndexes) are rare and pass ungated, as all did before.
var gated = map[string]bool{"insert": true, "update": true, "findAndModify": true, "findandmodify": true}

func startWriteGate(addr, store string) (*writeGate, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	g := &writeGate{ln: ln, store: store, turns: map[string]chan struct{}{}, conns: map[net.Conn]struct{}{}}
	g.wg.Add(1)
	go g.accept()
	return g, nil
}

func (g *writeGate) accept() {
	defer g.wg.Done()
	for {
		client, err := g.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return // by stop
		}
		if err != nil { // out of file descriptors, say: try again in a moment, as net/http does
			time.Sleep(10 * time.Millisecond)
			continue
		}
		store, err := net.Dial("unix", g.store)
		if err != nil || !g.track(client, store) {
			_ = client.Close()
			if store != nil {
				_ = store.Close()
			}
			continue
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			g.relay(client, store)
		}()
	}
}

// track registers a connection pair so stop can close it; false once the gate is stopping.
func (g *writeGate) track(conns ...net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.conns == nil {
		return false
	}
	for _, c := range conns {
		g.conns[c] = struct{}{}
	}
	return true
}

// relay carries one client connection's messages both ways until either side ends. Turns taken
// for requests are given back when their reply comes, or when the connection ends without one.
func (g *writeGate) relay(client, store net.Conn) {
	held := &heldTurns{byRequest: map[int32]chan struct{}{}}
	done := make(chan struct{})
	go replies(store, client, held, done)
	g.requests(client, store, held, done)
	_ = client.Close()
	_ = store.Close()
	<-done
	held.giveBackAll()
	g.mu.Lock()
	delete(g.conns, client)
	delete(g.conns, store)
	g.mu.Unlock()
}

// requests carries requests from client to store, taking its database's turn before each gated
// write. It returns when either side ends (done: the replies ended).
func (g *writeGate) requests(client, store net.Conn, held *heldTurns, done <-chan struct{}) {
	r := bufio.NewReader(client)
	for {
		msg, err := mongowire.Read(r)
		if err != nil {
			return
		}
		if db, ok := writesTo(msg); ok {
			turn := g.turn(db)
			select {
			case turn <- struct{}{}:
				held.hold(msg.RequestID(), turn)
			case <-done:
				return
			}
		}
		if _, err := store.Write(msg); err != nil {
			return
		}
	}
}

// replies carries the store's replies to the client, giving back the turn each one answers. When
// either side ends it closes both, and done.
func replies(store, client net.Conn, held *heldTurns, done chan<- struct{}) {
	defer close(done)
	defer client.Close()
	defer store.Close()
	r := bufio.NewReader(store)
	for {
		msg, err := mongowire.Read(r)
		if err != nil {
			return
		}
		held.giveBack(msg.ResponseTo())
		if _, err := client.Write(msg); err != nil {
			return
		}
	}
}

// heldTurns are the turns one connection's requests hold, by request id, until their replies.
type heldTurns struct {
	mu        sync.Mutex
	byRequest map[int32]chan struct{}
}

func (h *heldTurns) hold(id int32, turn chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.byRequest[id] = turn
}

func (h *heldTurns) giveBack(id int32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if turn, ok := h.byRequest[id]; ok {
		delete(h.byRequest, id)
		<-turn
	}
}

func (h *heldTurns) giveBackAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, turn := range h.byRequest {
		delete(h.byRequest, id)
		<-turn
	}
}

// turn is the token channel of one database, made on its first write.
func (g *writeGate) turn(db string) chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.turns[db]
	if !ok {
		t = make(chan struct{}, 1)
		g.turns[db] = t
	}
	return t
}

// stop closes the listener and every relayed connection, and waits for their goroutines.
func (g *writeGate) stop() {
	_ = g.ln.Close()
	g.mu.Lock()
	for c := range g.conns {
		_ = c.Close()
	}
	g.conns = nil
	g.mu.Unlock()
	g.wg.Wait()
}

// writesTo says whether msg is a gated command that waits for its reply, and which database it
// writes to.
func writesTo(msg mongowire.Message) (db string, ok bool) {
	body, name, ok := msg.Command()
	if !ok || !gated[name] || !msg.ExpectsReply() {
		return "", false
	}
	v, err := body.LookupErr("$db")
	if err != nil {
		return "", false
	}
	return v.StringValueOK()
}
