// Command tidepool-minproxy is the floor every Go reverse proxy stands on:
// net/http/httputil.ReverseProxy with one fixed upstream and default
// settings. scripts/bench-gateway.sh measures the gateway against it.
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
	// #nosec G114 -- a benchmark tool on loopback.
	if err := http.ListenAndServe(*listen, httputil.NewSingleHostReverseProxy(target)); err != nil { //nolint:gosec // benchmark tool
		fmt.Fprintln(os.Stderr, "tidepool-minproxy:", err)
		os.Exit(1)
	}
}
