package testkit

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards MongoDB wire traffic to a store and, when armed, drops the store's reply to the
// next insert command and cuts that connection: the insert lands, its sender never hears so.
type Proxy struct {
	ln      net.Listener
	target  string
	armed   atomic.Bool
	dropped atomic.Int64
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

// DropNextInsertReply arms the proxy for one insert.
func (p *Proxy) DropNextInsertReply() { p.armed.Store(true) }

// Dropped counts the replies dropped.
func (p *Proxy) Dropped() int64 { return p.dropped.Load() }

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
		var (
			mu     sync.Mutex
			doomed = map[int32]bool{} // request ids of inserts whose reply is to be dropped
		)
		cut := func() { _ = c.Close(); _ = s.Close() }
		go relay(c, s, func(id, _ int32, cmd string) bool { // client → store
			if cmd == "insert" && p.armed.CompareAndSwap(true, false) {
				mu.Lock()
				doomed[id] = true
				mu.Unlock()
			}
			return true
		}, cut)
		go relay(s, c, func(_, responseTo int32, _ string) bool { // store → client
			mu.Lock()
			drop := doomed[responseTo]
			mu.Unlock()
			if drop {
				p.dropped.Add(1)
				cut()
			}
			return !drop
		}, cut)
	}
}

// relay copies wire messages from src to dst while pass says so.
func relay(src, dst net.Conn, pass func(id, responseTo int32, cmd string) bool, cut func()) {
	defer cut()
	header := make([]byte, 16)
	for {
		if _, err := io.ReadFull(src, header); err != nil {
			return
		}
		size := int(binary.LittleEndian.Uint32(header))
		if size < 16 || size > 48<<20 {
			return
		}
		msg := make([]byte, size)
		copy(msg, header)
		if _, err := io.ReadFull(src, msg[16:]); err != nil {
			return
		}
		id := int32(binary.LittleEndian.Uint32(msg[4:]))
		responseTo := int32(binary.LittleEndian.Uint32(msg[8:]))
		if !pass(id, responseTo, command(msg)) {
			return
		}
		if _, err := dst.Write(msg); err != nil {
			return
		}
	}
}

// command is the name of an OP_MSG's command: the first key of its body section.
func command(msg []byte) string {
	const opMsg = 2013
	// header(16) flags(4) kind(1) then the BSON body: length(4) type(1) name\0
	if len(msg) < 27 || binary.LittleEndian.Uint32(msg[12:]) != opMsg || msg[20] != 0 {
		return ""
	}
	name := msg[26:]
	for i, b := range name {
		if b == 0 {
			return string(name[:i])
		}
	}
	return ""
}
