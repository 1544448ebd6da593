// Package testutil holds the small helpers kaar's test packages share:
// a goroutine-safe output buffer for the processes and servers a test
// starts, and a free loopback port.
package testutil

import (
	"bytes"
	"net"
	"sync"
	"testing"
)

// Buffer collects output written by other goroutines (a process's stdout
// and stderr, a server's log) and reads it safely.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// FreePort is a TCP port free on 127.0.0.1 at the time of the call.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }() // a listener only probed for its port
	return l.Addr().(*net.TCPAddr).Port
}
