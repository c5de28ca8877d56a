package main

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// tcpEcho copies every byte it reads on a connection back to the peer.
type tcpEcho struct {
	ln  net.Listener
	log hclog.Logger

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	closing bool // set by shutdown; no connection is added after it
	wg      sync.WaitGroup
}

func newTCPEcho(ln net.Listener, log hclog.Logger) *tcpEcho {
	return &tcpEcho{ln: ln, log: log, conns: make(map[net.Conn]struct{})}
}

func (e *tcpEcho) serve() {
	for {
		c, err := e.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				e.log.Error("tcp accept", "error", err)
			}
			return
		}
		e.mu.Lock()
		if e.closing {
			e.mu.Unlock()
			_ = c.Close()
			return
		}
		e.conns[c] = struct{}{}
		// Added under the lock, before shutdown can start waiting.
		e.wg.Add(1)
		e.mu.Unlock()
		go func() {
			defer e.wg.Done()
			defer func() {
				e.mu.Lock()
				delete(e.conns, c)
				e.mu.Unlock()
				_ = c.Close()
			}()
			_, _ = io.Copy(c, c)
		}()
	}
}

// shutdown stops accepting, lets open connections run until ctx is done and
// then closes them.
func (e *tcpEcho) shutdown(ctx context.Context) {
	e.mu.Lock()
	e.closing = true
	e.mu.Unlock()
	_ = e.ln.Close()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	e.mu.Lock()
	for c := range e.conns {
		_ = c.Close()
	}
	e.mu.Unlock()
	<-done
}
