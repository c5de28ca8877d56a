package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/coder/websocket"
)

// Forwarder is the client side of the TCP-over-WebSocket tunnel: each
// connection accepted locally becomes one tunnel, to one member.
type Forwarder struct {
	// Gateway is the gateway's base URL, e.g. http://127.0.0.1:4681.
	Gateway string
	Token   string
	Pool    string
	Port    int
	// OnError reports a connection that could not be tunneled.
	OnError func(error)
}

// TunnelURL is the WebSocket URL of a pool port's tunnel.
func (f *Forwarder) TunnelURL() (string, error) {
	u, err := url.Parse(f.Gateway)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("invalid gateway address %q", f.Gateway)
	}
	switch u.Scheme {
	case "http", "":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	u.Path = "/proxy/spaces/" + url.PathEscape(f.Pool) + "/port/" + strconv.Itoa(f.Port)
	return u.String(), nil
}

// Serve tunnels every connection accepted on ln until ctx is done.
func (f *Forwarder) Serve(ctx context.Context, ln net.Listener) error {
	target, err := f.TunnelURL()
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); _ = ln.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Go(func() {
			if err := f.tunnel(ctx, conn, target); err != nil && f.OnError != nil {
				f.OnError(err)
			}
		})
	}
}

func (f *Forwarder) tunnel(ctx context.Context, conn net.Conn, target string) error {
	h := http.Header{}
	if f.Token != "" {
		h.Set("Authorization", "Bearer "+f.Token)
	}
	ws, resp, err := websocket.Dial(ctx, target, &websocket.DialOptions{HTTPHeader: h}) //nolint:bodyclose // Dial closes the handshake body
	if err != nil {
		_ = conn.Close()
		if resp != nil {
			return fmt.Errorf("open tunnel: %s", strings.TrimSpace(resp.Status))
		}
		return fmt.Errorf("open tunnel: %w", err)
	}
	ws.SetReadLimit(-1)
	pipe(conn, websocket.NetConn(context.WithoutCancel(ctx), ws, websocket.MessageBinary))
	return nil
}
