// Command tidepool-echo is the backend Tidepool's examples, end-to-end tests
// and benchmarks run as pool members. It answers HTTP with who it is (the
// Nomad group, i.e. the member id, and the allocation id), sleeps on request,
// echoes WebSocket messages, TCP bytes and JSON-RPC calls, and shuts down
// gracefully so drains can be observed finishing in-flight work.
//
// Under Nomad it listens on NOMAD_ADDR_http and NOMAD_ADDR_tcp (the port
// labels "http" and "tcp"); flags override them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("tidepool-echo", flag.ContinueOnError)
	httpAddr := fs.String("http-addr", envAddr("http", "127.0.0.1:8080"), "HTTP listen address (default from NOMAD_ADDR_http)")
	tcpAddr := fs.String("tcp-addr", envAddr("tcp", ""), "TCP echo listen address; empty disables it (default from NOMAD_ADDR_tcp)")
	grace := fs.Duration("shutdown-timeout", 30*time.Second, "how long in-flight work may take to finish after SIGTERM")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "tidepool-echo", Level: hclog.Info})

	id := identity{Member: os.Getenv("NOMAD_GROUP_NAME"), AllocID: os.Getenv("NOMAD_ALLOC_ID")}
	if id.Member == "" {
		id.Member, _ = os.Hostname()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, log, id, *httpAddr, *tcpAddr, *grace); err != nil {
		log.Error("exiting", "error", err)
		return 1
	}
	return 0
}

// envAddr returns Nomad's address for a port label, or def.
func envAddr(label, def string) string {
	if v := os.Getenv("NOMAD_ADDR_" + label); v != "" {
		return v
	}
	return def
}

// serve runs the HTTP and TCP listeners until ctx is done, then lets
// in-flight work finish for at most grace.
func serve(ctx context.Context, log hclog.Logger, id identity, httpAddr, tcpAddr string, grace time.Duration) error {
	hl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return fmt.Errorf("listen http: %w", err)
	}
	srv := &http.Server{
		Handler:           newHandler(id, log),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Go(func() {
		if err := srv.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve http: %w", err)
		}
	})
	log.Info("serving http", "addr", hl.Addr().String(), "member", id.Member, "alloc_id", id.AllocID)

	var tcp *tcpEcho
	if tcpAddr != "" {
		tl, err := net.Listen("tcp", tcpAddr)
		if err != nil {
			_ = hl.Close()
			return fmt.Errorf("listen tcp: %w", err)
		}
		tcp = newTCPEcho(tl, log)
		wg.Go(tcp.serve)
		log.Info("serving tcp echo", "addr", tl.Addr().String())
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "grace", grace.String())
	case runErr = <-errc:
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
		log.Warn("in-flight http requests cut off", "error", err)
	}
	if tcp != nil {
		tcp.shutdown(shutdownCtx)
	}
	wg.Wait()
	return runErr
}
