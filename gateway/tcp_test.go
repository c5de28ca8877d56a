package gateway

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/gateway/routing"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// replyAtEOF is a TCP member that reads until its client shuts its write
// side, then answers with how much it read.
func replyAtEOF(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				b, _ := io.ReadAll(c)
				_, _ = fmt.Fprintf(c, "got %d bytes", len(b))
			}()
		}
	}()
	return ln.Addr().String()
}

func TestTunnel_HalfCloseStillGetsTheReply(t *testing.T) {
	member := replyAtEOF(t)
	g := newGatewayWith(t, Config{Name: "tcp"}, routing.Snapshot{
		Pools: []*pool.Pool{{ID: "p-1", Owner: "alice", Spec: pool.Spec{Name: "web", Active: true,
			Ports: []pool.Port{{Label: "tcp", Number: 9000, Protocol: pool.ProtocolTCP}}}}},
		Members:   []*pool.Member{{ID: "m-a", PoolID: "p-1", Phase: pool.PhaseRunning, Addresses: map[string]string{"tcp": member}}},
		Instances: []routing.Instance{{PoolID: "p-1", Member: "m-a", Port: "tcp", Address: member, Passing: true}},
	})
	knowToken(g, "alice-secret", "alice", pool.PermUsePools)
	srv := httptest.NewServer(g)
	defer srv.Close()

	local, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &Forwarder{Gateway: srv.URL, Token: "alice-secret", Pool: "web", Port: 9000, OnError: func(err error) { t.Error(err) }}
	go func() { _ = f.Serve(ctx, local) }()

	conn, err := net.Dial("tcp", local.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("hello, member")); err != nil {
		t.Fatal(err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	reply, err := io.ReadAll(conn)
	if err != nil || string(reply) != "got 13 bytes" {
		t.Fatalf("reply %q, %v: want the member's answer after the half-close", reply, err)
	}
}
