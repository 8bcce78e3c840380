package testkit

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/breakerchain/breakerchain/internal/mongowire"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// Proxy forwards MongoDB wire traffic to a store and, when armed, either drops the store's reply
// to the next insert command and cuts that connection (the insert lands, its sender never hears
// so), or answers the next inserts itself with an error document, as a primary stepping down
// would (the inserts never reach the store), or holds the next inserts and delivers them late,
// as a partition would; or cuts the store off altogether (Cut) until Restore.
type Proxy struct {
	ln       net.Listener
	target   string
	mu       sync.Mutex
	cut      bool                   // every connection is refused
	conns    map[net.Conn]struct{}  // both ends of every open connection, for Cut to close
	holding  atomic.Int64           // held inserts not delivered yet
	drops    atomic.Int32           // insert replies still to be dropped
	dropIn   atomic.Pointer[string] // the collection whose inserts they are; "" for any
	dropped  atomic.Int64
	failures atomic.Int32 // inserts still to be answered with failure
	failure  atomic.Pointer[failure]
	answered atomic.Int64
	delays   atomic.Int32 // inserts still to be held
	delay    atomic.Pointer[delay]
	landed   atomic.Int64 // held inserts delivered
}

// delay is which inserts to hold, and for how long.
type delay struct {
	collection string
	d          time.Duration
}

// DelayNextInserts holds the next n insert commands into collection for d, then delivers each
// to the store on a connection of its own (its sender has given up and hung up by then, as a
// client does when a partition outlasts its timeout; the bytes it sent still arrive). The
// sender never hears back.
func (p *Proxy) DelayNextInserts(collection string, n int, d time.Duration) {
	p.delay.Store(&delay{collection: collection, d: d})
	p.delays.Store(int32(n))
}

// Landed counts the held inserts delivered to the store (answered by it, whatever it said).
func (p *Proxy) Landed() int64 { return p.landed.Load() }

// Holding counts the held inserts still to be delivered: until it is 0, one may still land.
func (p *Proxy) Holding() int64 { return p.holding.Load() }

// Cut closes every connection through the proxy and refuses new ones until Restore, as a store
// that went away would: a command in flight may or may not have landed, the next ones fail at
// once. Held inserts are in the network already: they are still delivered.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for c := range conns {
		_ = c.Close()
	}
}

// Restore lets connections through again after Cut.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// track keeps c and s for Cut, or reports false when the store is cut off.
func (p *Proxy) track(c, s net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	if p.conns == nil {
		p.conns = map[net.Conn]struct{}{}
	}
	p.conns[c], p.conns[s] = struct{}{}, struct{}{}
	return true
}

func (p *Proxy) untrack(c, s net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

// hold delivers msg, an insert, to the store after d on a connection of its own.
func (p *Proxy) hold(msg []byte, d time.Duration) {
	defer p.holding.Add(-1)
	time.Sleep(d)
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	if _, err := s.Write(msg); err != nil {
		return
	}
	header := make([]byte, 16)
	if _, err := io.ReadFull(s, header); err == nil {
		p.landed.Add(1)
	}
}

// failure is how to answer which inserts.
type failure struct {
	collection string // "" for any
	reply      []byte
}

// StartProxy listens on a free loopback port and forwards to target (host:port).
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target}
	t.Cleanup(func() { _ = ln.Close() })
	go p.accept()
	return p
}

// Addr is where clients connect.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// DropNextInsertReply arms the proxy for one insert into collection ("" for any).
func (p *Proxy) DropNextInsertReply(collection string) { p.DropNextInsertReplies(collection, 1) }

// DropNextInsertReplies arms the proxy for the next n inserts into collection ("" for any).
func (p *Proxy) DropNextInsertReplies(collection string, n int) {
	p.dropIn.Store(&collection)
	p.drops.Store(int32(n))
}

// Dropped counts the replies dropped.
func (p *Proxy) Dropped() int64 { return p.dropped.Load() }

// FailNextInserts has the proxy answer the next n insert commands into collection ("" for any)
// with reply (a server error document such as {ok: 0, code: 10107, codeName:
// "NotWritablePrimary"}) instead of passing them on.
func (p *Proxy) FailNextInserts(collection string, n int, reply bson.D) error {
	doc, err := bson.Marshal(reply)
	if err != nil {
		return err
	}
	p.failure.Store(&failure{collection: collection, reply: doc})
	p.failures.Store(int32(n))
	return nil
}

// Answered counts the inserts the proxy answered itself.
func (p *Proxy) Answered() int64 { return p.answered.Load() }

// takeFailure returns the reply to answer an insert into collection with, if it is one to fail.
func (p *Proxy) takeFailure(collection string) []byte {
	f := p.failure.Load()
	if f == nil || (f.collection != "" && f.collection != collection) || !take(&p.failures) {
		return nil
	}
	p.answered.Add(1)
	return f.reply
}

// take counts n down by one and reports whether it was above zero.
func take(n *atomic.Int32) bool {
	for {
		v := n.Load()
		if v <= 0 {
			return false
		}
		if n.CompareAndSwap(v, v-1) {
			return true
		}
	}
}

// lockedWriter lets two relays write whole messages to one connection.
type lockedWriter struct {
	mu sync.Mutex
	net.Conn
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.Conn.Write(b)
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		if !p.track(c, s) {
			_ = c.Close()
			_ = s.Close()
			continue
		}
		var (
			mu     sync.Mutex
			doomed = map[int32]bool{} // request ids of inserts whose reply is to be dropped
		)
		cut := func() { _ = c.Close(); _ = s.Close(); p.untrack(c, s) }
		client := &lockedWriter{Conn: c}
		go relay(c, s, func(msg []byte, id, _ int32, cmd, coll string) verdict { // client → store
			if cmd != "insert" {
				return forward
			}
			if dl := p.delay.Load(); dl != nil && (dl.collection == coll || dl.collection == "") && take(&p.delays) {
				p.holding.Add(1)
				go p.hold(msg, dl.d)
				return skip
			}
			if reply := p.takeFailure(coll); reply != nil {
				if _, err := client.Write(mongowire.Reply(id, reply)); err != nil {
					return stop
				}
				return skip
			}
			if in := p.dropIn.Load(); in != nil && (*in == "" || *in == coll) && take(&p.drops) {
				mu.Lock()
				doomed[id] = true
				mu.Unlock()
			}
			return forward
		}, cut)
		go relay(s, client, func(_ []byte, _, responseTo int32, _, _ string) verdict { // store → client
			mu.Lock()
			drop := doomed[responseTo]
			mu.Unlock()
			if drop {
				p.dropped.Add(1)
				cut()
				return stop
			}
			return forward
		}, cut)
	}
}

// verdict is what a relay does with a message.
type verdict int

const (
	forward verdict = iota // pass it on
	skip                   // it was dealt with: do not pass it on
	stop                   // end the relay
)

// relay copies wire messages from src to dst as pass says.
func relay(src net.Conn, dst io.Writer, pass func(msg []byte, id, responseTo int32, cmd, coll string) verdict, cut func()) {
	defer cut()
	for {
		msg, err := mongowire.Read(src)
		if err != nil {
			return
		}
		cmd, coll := command(msg)
		switch pass(msg, msg.RequestID(), msg.ResponseTo(), cmd, coll) {
		case stop:
			return
		case skip:
			continue
		}
		if _, err := dst.Write(msg); err != nil {
			return
		}
	}
}

// command is the name of an OP_MSG's command and that key's value when it is a string (the
// collection of an insert).
func command(msg mongowire.Message) (name, collection string) {
	body, name, ok := msg.Command()
	if !ok {
		return "", ""
	}
	collection, _ = body.Index(0).Value().StringValueOK()
	return name, collection
}
