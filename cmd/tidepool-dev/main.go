// Command tidepool-dev runs the local development stack behind `make dev`:
// Consul and Nomad dev agents on their standard ports, one `tidepool
// server`, and the example echo pool, then prints where everything is.
// Ctrl-C stops it all and leaves no process behind.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/tidepool-run/tidepool/internal/devcluster"
	"github.com/tidepool-run/tidepool/plugin/api/client"
	"github.com/tidepool-run/tidepool/plugin/poolspec"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("tidepool-dev", flag.ContinueOnError)
	binDir := fs.String("bin-dir", "bin", "directory holding tidepool and tidepool-echo")
	spec := fs.String("pool", "jobspecs/examples/echo.pool.hcl", "pool spec to apply")
	consulPort := fs.Int("consul-port", 8500, "Consul HTTP port")
	nomadPort := fs.Int("nomad-port", 4646, "Nomad HTTP port")
	apiAddr := fs.String("api-addr", "127.0.0.1:4680", "controller API address")
	tokenFile := fs.String("token-file", ".dev/token", "where to write the bootstrapped admin token")
	gatewayAddr := fs.String("gateway-addr", "127.0.0.1:4681", "gateway address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// Output piped to a pager or tee that Ctrl-C ends first must not kill
	// us before the agents are stopped.
	signal.Ignore(syscall.SIGPIPE)
	if err := dev(ctx, *binDir, *spec, *apiAddr, *gatewayAddr, *tokenFile, *consulPort, *nomadPort); err != nil {
		fmt.Fprintf(os.Stderr, "tidepool-dev: %v\n", err)
		return 1
	}
	return 0
}

func dev(ctx context.Context, binDir, specPath, apiAddr, gatewayAddr, tokenFile string, consulPort, nomadPort int) error {
	binDir, err := filepath.Abs(binDir)
	if err != nil {
		return err
	}
	for _, b := range []string{"tidepool", "tidepool-echo"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return fmt.Errorf("%s: %w (run `make build`)", b, err)
		}
	}
	res, err := poolspec.ParseFile(specPath, poolspec.DefaultDefaults())
	if err != nil {
		return err
	}
	// Nomad's raw_exec finds tidepool-echo on the agent's PATH.
	if err := os.Setenv("PATH", binDir+string(os.PathListSeparator)+os.Getenv("PATH")); err != nil {
		return err
	}

	step("starting Consul and Nomad dev agents")
	c, err := devcluster.Start(ctx, devcluster.Config{Name: "dev", ConsulHTTPPort: consulPort, NomadHTTPPort: nomadPort})
	if err != nil {
		return err
	}
	defer func() {
		step("stopping agents and their tasks")
		c.Stop()
		step("stopped")
	}()
	step("agents ready; logs in %s", c.Dir)

	server, logPath, err := startServer(c, binDir, apiAddr)
	if err != nil {
		return err
	}
	defer func() {
		step("stopping the controller")
		_ = server.Process.Signal(syscall.SIGTERM)
		_ = server.Wait()
	}()
	if err := waitHealthy(ctx, apiAddr); err != nil {
		return fmt.Errorf("controller: %w; see %s", err, logPath)
	}
	step("controller serving on http://%s; log in %s", apiAddr, logPath)

	gw, gwLog, err := startGateway(c, binDir, gatewayAddr)
	if err != nil {
		return err
	}
	defer func() {
		step("stopping the gateway")
		_ = gw.Process.Signal(syscall.SIGTERM)
		_ = gw.Wait()
	}()
	if err := waitHealthy(ctx, gatewayAddr); err != nil {
		return fmt.Errorf("gateway: %w; see %s", err, gwLog)
	}
	step("gateway serving on http://%s; log in %s", gatewayAddr, gwLog)

	api, err := client.New(apiAddr, "")
	if err != nil {
		return err
	}
	boot, err := api.Bootstrap(ctx)
	if err != nil {
		return fmt.Errorf("bootstrap a token: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(tokenFile), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(tokenFile, []byte(boot.Token+"\n"), 0o600); err != nil {
		return fmt.Errorf("write token: %w", err)
	}
	step("bootstrapped an admin token into %s", tokenFile)

	step("applying %s", specPath)
	apply := exec.CommandContext(ctx, filepath.Join(binDir, "tidepool"), "pool", "apply", specPath)
	apply.Env = append(os.Environ(), "TIDEPOOL_ADDR=http://"+apiAddr, "TIDEPOOL_TOKEN="+boot.Token)
	apply.Stdout, apply.Stderr = os.Stdout, os.Stderr
	if err := apply.Run(); err != nil {
		return fmt.Errorf("tidepool pool apply: %w", err)
	}
	cl, err := client.New(apiAddr, boot.Token)
	if err != nil {
		return err
	}
	info, err := cl.GetPool(ctx, res.Spec.Name)
	if err != nil {
		return err
	}
	addrs := map[string]string{}
	for _, m := range info.Members {
		addrs[m.ID] = m.Address
	}
	p := struct{ JobID, Name string }{info.NomadJobID, info.Name}

	fmt.Printf(`
Tidepool dev stack is up.

  Consul UI    http://%[1]s/ui
  Nomad UI     %[2]s/ui/jobs/%[3]s
  Controller   http://%[4]s/v1/health
  Gateway      http://%[6]s/v1/health

Through the gateway (round-robin over the members):
  curl -H 'Host: %[7]s.localhost' http://%[6]s/hello
  curl http://%[7]s.localhost:%[8]s/hello

Pool %[5]q members, directly:
`, c.ConsulAddr, c.NomadAddr, p.JobID, apiAddr, p.Name, gatewayAddr, fmt.Sprintf("%s--%s--%d", info.Owner, info.Name, info.Spec.Ports[0].Number), portOf(gatewayAddr))
	for _, m := range sortedKeys(addrs) {
		fmt.Printf("  %-10s curl http://%s/hello\n", m, addrs[m])
	}
	fmt.Printf(`
Try the CLI (the admin token is in %[4]s):
  export TIDEPOOL_TOKEN=$(cat %[4]s)
  bin/tidepool pool list
  bin/tidepool pool status %[5]s
  bin/tidepool pool set-size %[5]s 1
  bin/tidepool pool stop %[5]s && bin/tidepool pool start %[5]s

And the agents' own:
  export CONSUL_HTTP_ADDR=%[1]s NOMAD_ADDR=%[2]s
  nomad job status %[3]s

Ctrl-C stops everything.
`, c.ConsulAddr, c.NomadAddr, p.JobID, tokenFile, p.Name)
	<-ctx.Done()
	fmt.Println()
	return nil
}

func step(format string, args ...any) {
	fmt.Printf("==> "+format+"\n", args...)
}

func startServer(c *devcluster.Cluster, binDir, apiAddr string) (*exec.Cmd, string, error) {
	return startTidepool(c, binDir, "server", "-http-addr", apiAddr, "-name", "dev", "-allowed-drivers", "raw_exec")
}

func startGateway(c *devcluster.Cluster, binDir, addr string) (*exec.Cmd, string, error) {
	return startTidepool(c, binDir, "gateway", "-http-addr", addr, "-name", "dev")
}

// startTidepool runs a tidepool daemon against the cluster, logging into
// the cluster directory.
func startTidepool(c *devcluster.Cluster, binDir, what string, args ...string) (*exec.Cmd, string, error) {
	logPath := filepath.Join(c.Dir, "tidepool-"+what+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(filepath.Join(binDir, "tidepool"), append([]string{what}, args...)...)
	cmd.Env = append(os.Environ(), c.Env()...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, "", fmt.Errorf("start %s: %w", what, err)
	}
	return cmd, logPath, nil
}

func waitHealthy(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return errors.New("not healthy within 30s")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
