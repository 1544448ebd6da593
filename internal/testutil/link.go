package testutil

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Link is a TCP relay between a client and a server on loopback that a
// test can cut (every connection closed, new ones refused) and restore:
// a network partition between two processes that both keep running.
type Link struct {
	target string
	ln     net.Listener

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
}

// NewLink relays 127.0.0.1:<Link.Port> to target until the test ends.
func NewLink(t testing.TB, target string) *Link {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &Link{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	go l.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		l.Cut()
	})
	return l
}

// Port is the relay's port on 127.0.0.1.
func (l *Link) Port() int { return l.ln.Addr().(*net.TCPAddr).Port }

// Cut closes every relayed connection and refuses new ones until Restore.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = true
	for c := range l.conns {
		_ = c.Close()
	}
	clear(l.conns)
}

// Restore accepts connections again.
func (l *Link) Restore() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = false
}

func (l *Link) serve() {
	for {
		in, err := l.ln.Accept()
		if err != nil {
			return
		}
		go l.relay(in)
	}
}

// track registers c unless the link is cut.
func (l *Link) track(c ...net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut {
		return false
	}
	for _, x := range c {
		l.conns[x] = struct{}{}
	}
	return true
}

func (l *Link) relay(in net.Conn) {
	out, err := net.Dial("tcp", l.target)
	if err != nil {
		_ = in.Close()
		return
	}
	if !l.track(in, out) {
		_ = in.Close()
		_ = out.Close()
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	_ = in.Close()
	_ = out.Close()
	l.mu.Lock()
	delete(l.conns, in)
	delete(l.conns, out)
	l.mu.Unlock()
}
