// Command tidepool-minproxy is the floor every Go reverse proxy stands on:
// net/http/httputil.ReverseProxy with one fixed upstream. Its transport is
// Go's default but for the idle pool: Go keeps 2 idle connections per host,
// so under 50 connections the default proxy dials for most requests and
// flatters anything compared with it; this one keeps up to 1024.
// scripts/bench-gateway.sh measures the gateway against it.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4690", "listen address")
	upstream := flag.String("upstream", "", "upstream host:port")
	flag.Parse()
	if *upstream == "" {
		fmt.Fprintln(os.Stderr, "tidepool-minproxy: -upstream is required")
		os.Exit(2)
	}
	target, err := url.Parse("http://" + *upstream)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tidepool-minproxy:", err)
		os.Exit(2)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns, transport.MaxIdleConnsPerHost = 1024, 1024
	proxy.Transport = transport
	// #nosec G114 -- a benchmark tool on loopback.
	if err := http.ListenAndServe(*listen, proxy); err != nil { //nolint:gosec // benchmark tool
		fmt.Fprintln(os.Stderr, "tidepool-minproxy:", err)
		os.Exit(1)
	}
}
