package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/gin-gonic/gin"

	"github.com/tidepool-run/tidepool/gateway/routing"
)

// portRef names one port of one owner's pool.
type portRef struct {
	owner, name string
	port        int
}

// resolve is the port's route in t, as a one-element list; empty when the
// table has no such pool or port.
func (p portRef) resolve(t *routing.Table) []*routing.Route {
	if pl, ok := t.Pool(p.owner, p.name); ok {
		if r := pl.Ports[p.port]; r != nil {
			return []*routing.Route{r}
		}
	}
	return nil
}

// dialMember connects to a member of the port's route in the current
// table, moving on to the next one when a dial fails. The member's slot is
// taken before the dial, so a drain never sees it idle while a connection
// is being made; the caller releases the returned lease when the
// connection ends.
func dialMember(ctx context.Context, table func() *routing.Table, p portRef) (net.Conn, routing.Lease, error) {
	var tried []*routing.Backend
	var lastErr error
	d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	for {
		lease, ok := routing.AcquireCurrent(table, p.resolve, routing.RoundRobin, routing.TCP, tried)
		if !ok {
			if lastErr == nil {
				lastErr = errNoMember
			}
			return nil, routing.Lease{}, lastErr
		}
		tried = append(tried, lease.Backend)
		conn, err := d.DialContext(ctx, "tcp", lease.Backend.Addr)
		if err != nil {
			lease.Release()
			lastErr = err
			continue
		}
		return conn, lease, nil
	}
}

// pipe copies both ways until both directions end, half-closing each side
// as its source finishes.
func pipe(a, b io.ReadWriteCloser) {
	var wg sync.WaitGroup
	cp := func(dst, src io.ReadWriteCloser) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Go(func() { cp(a, b) })
	wg.Go(func() { cp(b, a) })
	wg.Wait()
	_ = a.Close()
	_ = b.Close()
}

// tunnel serves GET /proxy/spaces/{pool}/port/{port}: a WebSocket carrying
// one TCP connection to one member of the caller's pool, in binary
// messages.
func (g *Gateway) tunnel(c *gin.Context) {
	cl, err := g.tokens.caller(c.Request)
	if err != nil {
		writeAuthError(c.Writer, err, "")
		return
	}
	port, err := strconv.Atoi(c.Param("port"))
	if err != nil {
		writeError(c.Writer, http.StatusBadRequest, "port must be the pool's port number")
		return
	}
	owner, name := cl.User, c.Param("pool")
	if o, n, ok := strings.Cut(name, "--"); ok && cl.admin() {
		owner, name = o, n
	}
	ref := portRef{owner: owner, name: name, port: port}
	if len(ref.resolve(g.watcher.Table())) == 0 {
		writeError(c.Writer, http.StatusNotFound, fmt.Sprintf("no pool %q with port %d", name, port))
		return
	}
	upstream, lease, err := dialMember(c.Request.Context(), g.watcher.Table, ref)
	if err != nil {
		status, msg := classify(c.Request.Context(), err)
		if status == 0 {
			return
		}
		writeError(c.Writer, status, msg)
		return
	}
	defer lease.Release()
	ws, err := websocket.Accept(c.Writer, c.Request, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		_ = upstream.Close()
		return
	}
	ws.SetReadLimit(-1)
	g.metrics.tcpConn(lease.Route)
	pipe(newWSStream(context.WithoutCancel(c.Request.Context()), ws), upstream)
}

// tcpListeners runs the raw TCP listeners of the config.
type tcpListeners struct {
	lns   []net.Listener
	conns sync.Map // net.Conn → struct{}
	wg    sync.WaitGroup
}

func (g *Gateway) startTCPListeners(ctx context.Context) (*tcpListeners, error) {
	t := &tcpListeners{}
	for _, l := range g.cfg.TCPListeners {
		owner, name, ok := strings.Cut(l.Pool, "/")
		if !ok {
			t.close()
			return nil, fmt.Errorf("tcp_listener %s: pool must be \"owner/name\", got %q", l.Address, l.Pool)
		}
		ln, err := net.Listen("tcp", l.Address)
		if err != nil {
			t.close()
			return nil, fmt.Errorf("tcp_listener: %w", err)
		}
		t.lns = append(t.lns, ln)
		g.log.Info("forwarding tcp", "addr", ln.Addr().String(), "pool", l.Pool, "port", l.Port)
		t.wg.Go(func() { g.acceptTCP(ctx, t, ln, owner, name, l.Port) })
	}
	return t, nil
}

func (g *Gateway) acceptTCP(ctx context.Context, t *tcpListeners, ln net.Listener, owner, name string, port int) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				g.log.Error("tcp accept", "error", err)
			}
			return
		}
		t.conns.Store(conn, struct{}{})
		t.wg.Go(func() {
			defer t.conns.Delete(conn)
			upstream, lease, err := dialMember(ctx, g.watcher.Table, portRef{owner: owner, name: name, port: port})
			if err != nil {
				_ = conn.Close()
				return
			}
			defer lease.Release()
			g.metrics.tcpConn(lease.Route)
			pipe(conn, upstream)
		})
	}
}

func (t *tcpListeners) close() {
	for _, ln := range t.lns {
		_ = ln.Close()
	}
}

// shutdown stops accepting and gives open connections until ctx is done.
func (t *tcpListeners) shutdown(ctx context.Context) {
	t.close()
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	t.conns.Range(func(k, _ any) bool {
		_ = k.(net.Conn).Close()
		return true
	})
	<-done
}
