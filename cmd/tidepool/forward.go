package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"

	"github.com/tidepool-run/tidepool/gateway"
)

// forwardCommand is `tidepool pool forward <pool> <port>`.
func forwardCommand() *command {
	var listen, gw string
	return &command{
		synopsis: "Forward a local TCP port to a pool port through the gateway",
		usage:    "tidepool pool forward [options] <pool> <port>",
		details: "Listens locally and carries each connection over a WebSocket tunnel through the gateway\n" +
			"  to one member of your pool. Runs until Ctrl-C.",
		args: []string{"pool", "port"},
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&listen, "listen", "127.0.0.1:0", "local address to listen on")
			fs.StringVar(&gw, "gateway", "", "gateway URL (default $TIDEPOOL_GATEWAY_ADDR or http://127.0.0.1:4681)")
		},
		run: func(ctx context.Context, r *runner, args []string) int {
			port, err := strconv.Atoi(args[1])
			if err != nil {
				r.ui.Error(fmt.Sprintf("port must be the pool's port number, got %q", args[1]))
				return exitUsage
			}
			if gw == "" {
				gw = os.Getenv("TIDEPOOL_GATEWAY_ADDR")
			}
			if gw == "" {
				gw = "http://127.0.0.1:4681"
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return r.fail(err)
			}
			f := &gateway.Forwarder{Gateway: gw, Token: r.token, Pool: args[0], Port: port, Transport: r.client.Transport(),
				OnError: func(err error) { r.ui.Error("Error: " + err.Error()) }}
			r.ui.Output(fmt.Sprintf("Forwarding %s → pool %q port %d through %s (Ctrl-C stops)", ln.Addr(), args[0], port, gw))
			if err := f.Serve(ctx, ln); err != nil {
				return r.fail(err)
			}
			return exitOK
		},
	}
}
