// Command tidepool-dev runs the local development stack behind `make dev`:
// Consul and Nomad dev agents on their standard ports and the example echo
// job, then prints where everything is. Ctrl-C stops it all and leaves no
// process behind.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/tidepool-run/tidepool/e2e/cluster"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("tidepool-dev", flag.ContinueOnError)
	echoBin := fs.String("echo-bin", "bin/tidepool-echo", "path of the tidepool-echo binary")
	jobspec := fs.String("jobspec", "jobspecs/examples/echo.nomad.hcl", "echo jobspec to register")
	consulPort := fs.Int("consul-port", 8500, "Consul HTTP port")
	nomadPort := fs.Int("nomad-port", 4646, "Nomad HTTP port")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := dev(ctx, *echoBin, *jobspec, *consulPort, *nomadPort); err != nil {
		fmt.Fprintf(os.Stderr, "tidepool-dev: %v\n", err)
		return 1
	}
	return 0
}

func dev(ctx context.Context, echoBin, jobspec string, consulPort, nomadPort int) error {
	echoBin, err := filepath.Abs(echoBin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(echoBin); err != nil {
		return fmt.Errorf("echo binary: %w (run `make build`)", err)
	}
	src, err := os.ReadFile(jobspec)
	if err != nil {
		return fmt.Errorf("read jobspec: %w", err)
	}

	step("starting Consul and Nomad dev agents")
	c, err := cluster.Start(ctx, cluster.Config{Name: "dev", ConsulHTTPPort: consulPort, NomadHTTPPort: nomadPort})
	if err != nil {
		return err
	}
	defer func() {
		step("stopping agents and their tasks")
		c.Stop()
		step("stopped")
	}()
	step("agents ready; logs in %s", c.Dir)

	job, err := c.Nomad.Jobs().ParseHCLOpts(&nomadapi.JobsParseRequest{
		JobHCL:    string(src),
		Variables: fmt.Sprintf("echo_bin = %q\n", echoBin),
	})
	if err != nil {
		return fmt.Errorf("parse %s: %w", jobspec, err)
	}
	if _, _, err := c.Nomad.Jobs().Register(job, nil); err != nil {
		return fmt.Errorf("register %s: %w", jobspec, err)
	}
	step("registered job %q; waiting for it to pass its health check", *job.ID)

	addr, err := waitPassing(ctx, c, "echo")
	if err != nil {
		return err
	}
	if err := probe(ctx, addr); err != nil {
		return err
	}

	fmt.Printf(`
Tidepool dev stack is up.

  Consul UI   http://%[1]s/ui
  Nomad UI    %[2]s/ui
  echo        http://%[3]s

Try:
  curl http://%[3]s/hello
  export CONSUL_HTTP_ADDR=%[1]s NOMAD_ADDR=%[2]s

Ctrl-C stops everything.
`, c.ConsulAddr, c.NomadAddr, addr)
	<-ctx.Done()
	fmt.Println()
	return nil
}

func step(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}

// waitPassing blocks on Consul until a passing instance of service exists
// and returns its address.
func waitPassing(ctx context.Context, c *cluster.Cluster, service string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var index uint64
	for {
		q := (&consulapi.QueryOptions{WaitIndex: index, WaitTime: 10 * time.Second}).WithContext(ctx)
		entries, meta, err := c.Consul.Health().Service(service, "", true, q)
		switch {
		case err == nil && len(entries) > 0:
			s := entries[0].Service
			return fmt.Sprintf("%s:%d", s.Address, s.Port), nil
		case err == nil:
			index = meta.LastIndex
		case ctx.Err() != nil:
			return "", fmt.Errorf("service %q not passing: %w", service, ctx.Err())
		default:
			time.Sleep(time.Second) // Consul hiccup: retry without a tight loop
		}
	}
}

func probe(ctx context.Context, addr string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/hello", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe echo: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return errors.New("probe echo: " + resp.Status)
	}
	return nil
}
