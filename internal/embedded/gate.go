package embedded

import (
	"bufio"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/breakerchain/breakerchain/internal/mongowire"
)

// writeGate stands in front of the embedded FerretDB and lets one insert, update or
// findAndModify at a time into each database. SQLite has one writer per database file, and
// FerretDB lets every connection try: the losers sleep in SQLite's busy handler (1, 2, 5, 10, 15,
// 20, 25 … 100 ms, not woken when the lock frees), and under load most writers in the store were
// asleep. A queue here hands the turn to the next writer the moment FerretDB answers the last
// one (docs/design.md, "The embedded store's write gate"). Reads pass as before: SQLite's WAL
// lets readers in beside a writer.
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

// relay carries one client connection's messages both ways until either side ends.
func (g *writeGate) relay(client, store net.Conn) {
	c := &connection{owed: map[int32]int{}, delivered: make(chan struct{}, 1)}
	done := make(chan struct{})
	go replies(store, client, c, done)
	g.requests(client, store, c, done)
	// The client has sent all it will: let the store answer what it was sent (the turn is given
	// back when the write it was taken for is done, not before), then the store hangs up.
	if u, ok := store.(*net.UnixConn); ok {
		_ = u.CloseWrite()
	} else {
		_ = store.Close()
	}
	<-done
	c.ended()
	g.mu.Lock()
	delete(g.conns, client)
	delete(g.conns, store)
	g.mu.Unlock()
}

// requests carries requests from client to store. Before a gated write it waits until the
// client has had every reply it is owed, then for its database's turn. It returns when the
// client stops sending, or the replies end (done).
func (g *writeGate) requests(client, store net.Conn, c *connection, done <-chan struct{}) {
	r := bufio.NewReader(client)
	for {
		msg, err := mongowire.Read(r)
		if err != nil {
			return
		}
		if db, ok := writesTo(msg); ok {
			if !c.settled(done) {
				return
			}
			turn := g.turn(db)
			select {
			case turn <- struct{}{}:
				c.hold(msg.RequestID(), turn)
			case <-done:
				return
			}
		}
		if msg.ExpectsReply() {
			c.owe(msg.RequestID())
		}
		if _, err := store.Write(msg); err != nil {
			return
		}
	}
}

// replies carries the store's replies to the client, giving back the turn as soon as the reply
// to its write comes. When either side ends it closes both, and done.
func replies(store, client net.Conn, c *connection, done chan<- struct{}) {
	defer close(done)
	defer client.Close()
	defer store.Close()
	r := bufio.NewReader(store)
	for {
		msg, err := mongowire.Read(r)
		if err != nil {
			return
		}
		c.answered(msg.ResponseTo())
		if _, err := client.Write(msg); err != nil {
			return
		}
		c.paid(msg.ResponseTo())
	}
}

// connection is one relayed connection's account: the replies its client is owed, and the one
// turn it may hold. A gated write waits until nothing is owed, so a client that stops reading
// its replies holds up only itself, as it did without the gate, never a turn.
type connection struct {
	mu        sync.Mutex
	owed      map[int32]int // requests whose replies the client has not had, counted by id
	delivered chan struct{} // a nudge: a reply was delivered
	turn      chan struct{} // the turn held, or nil
	turnFor   int32         // the request it is held for
}

func (c *connection) owe(id int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.owed[id]++ // a client may use an id twice
}

// paid records that the client has had the reply to id.
func (c *connection) paid(id int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owed[id] > 0 {
		if c.owed[id]--; c.owed[id] == 0 {
			delete(c.owed, id)
		}
		select {
		case c.delivered <- struct{}{}:
		default:
		}
	}
}

// settled waits until the client is owed nothing; false if the replies ended first.
func (c *connection) settled(done <-chan struct{}) bool {
	for {
		c.mu.Lock()
		n := len(c.owed)
		c.mu.Unlock()
		if n == 0 {
			return true
		}
		select {
		case <-c.delivered:
		case <-done:
			return false
		}
	}
}

func (c *connection) hold(id int32, turn chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.turn, c.turnFor = turn, id
}

// answered gives the turn back if it is held for request id.
func (c *connection) answered(id int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.turn != nil && c.turnFor == id {
		<-c.turn
		c.turn = nil
	}
}

// ended gives back the turn the connection holds, if any: nothing will answer it now.
func (c *connection) ended() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.turn != nil {
		<-c.turn
		c.turn = nil
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
	// A turn is kept for each database named: a name no database can have (MongoDB's are at most
	// 64 bytes) passes ungated, for FerretDB to refuse, rather than growing the gate.
	db, ok = v.StringValueOK()
	return db, ok && len(db) <= 64
}
