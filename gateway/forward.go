package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	// Transport, when set, dials the gateway (e.g. trusting its CA for
	// https); http.DefaultTransport otherwise.
	Transport http.RoundTripper
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
	opts := &websocket.DialOptions{HTTPHeader: h}
	if f.Transport != nil {
		// No client timeout: it would cut the tunnel, which outlives the
		// handshake.
		opts.HTTPClient = &http.Client{Transport: f.Transport}
	}
	ws, resp, err := websocket.Dial(ctx, target, opts) //nolint:bodyclose // Dial closes the handshake body
	if err != nil {
		_ = conn.Close()
		if resp != nil {
			return fmt.Errorf("open tunnel: %s", strings.TrimSpace(resp.Status))
		}
		return fmt.Errorf("open tunnel: %w", err)
	}
	ws.SetReadLimit(-1)
	pipe(conn, newWSStream(context.WithoutCancel(ctx), ws))
	return nil
}

// wsStream carries one TCP byte stream over a WebSocket in binary
// messages, with half-close: CloseWrite sends a text message "EOF", and
// reading one ends the stream for the reader while the other direction
// goes on. So a client that shuts its write side still gets the reply.
type wsStream struct {
	ctx    context.Context
	ws     *websocket.Conn
	reader io.Reader
	eof    bool
}

// eofMessage is the half-close marker, sent as a text message.
const eofMessage = "EOF"

func newWSStream(ctx context.Context, ws *websocket.Conn) *wsStream {
	return &wsStream{ctx: ctx, ws: ws}
}

func (s *wsStream) Read(p []byte) (int, error) {
	for {
		if s.eof {
			return 0, io.EOF
		}
		if s.reader != nil {
			n, err := s.reader.Read(p)
			if errors.Is(err, io.EOF) {
				s.reader = nil
				if n > 0 {
					return n, nil
				}
				continue
			}
			return n, err
		}
		typ, r, err := s.ws.Reader(s.ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
				return 0, io.EOF
			}
			return 0, err
		}
		if typ == websocket.MessageText {
			msg, _ := io.ReadAll(io.LimitReader(r, 16))
			if string(msg) == eofMessage {
				s.eof = true
				continue
			}
			return 0, fmt.Errorf("tunnel: unexpected text message %q", msg)
		}
		s.reader = r
	}
}

func (s *wsStream) Write(p []byte) (int, error) {
	if err := s.ws.Write(s.ctx, websocket.MessageBinary, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite tells the other end that no more bytes come this way.
func (s *wsStream) CloseWrite() error {
	return s.ws.Write(s.ctx, websocket.MessageText, []byte(eofMessage))
}

func (s *wsStream) Close() error { return s.ws.Close(websocket.StatusNormalClosure, "") }
