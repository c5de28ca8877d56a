package devcluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
)

// TB is the part of testing.TB the harness needs; *testing.T satisfies it.
// Taking an interface keeps package testing out of the `make dev` binary.
type TB interface {
	Helper()
	Cleanup(func())
	Failed() bool
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Name() string
}

// logTailLines is how much of each agent log a failed test prints.
const logTailLines = 80

// New starts a cluster for a test and stops it in t.Cleanup, which also runs
// when the test fails or panics. When the test has failed, the tail of each
// agent's log is printed first.
func New(t TB, cfg Config) *Cluster {
	t.Helper()
	stopOnSignal()
	c, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start test cluster: %v", err)
	}
	live.add(c)
	t.Cleanup(func() {
		defer live.remove(c)
		if t.Failed() {
			for _, path := range c.LogFiles() {
				if _, err := os.Stat(path); err != nil {
					continue
				}
				t.Logf("--- last %d lines of %s ---\n%s", logTailLines, path, tail(path, logTailLines))
			}
		}
		c.Stop()
	})
	return c
}

// live tracks the clusters of running tests, for stopOnSignal.
var live = &registry{clusters: map[*Cluster]struct{}{}}

type registry struct {
	mu       sync.Mutex
	clusters map[*Cluster]struct{}
}

func (r *registry) add(c *Cluster) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clusters[c] = struct{}{}
}

func (r *registry) remove(c *Cluster) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.clusters, c)
}

func (r *registry) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.clusters {
		c.Stop()
	}
}

var signalOnce sync.Once

// stopOnSignal makes a test binary that gets SIGINT or SIGTERM (Ctrl-C, or
// `go test` giving up) stop its clusters before it exits: a test binary
// would otherwise die at once and leave Nomad's tasks behind. Only tests
// install it; `make dev` handles its own signals.
func stopOnSignal() {
	signalOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			sig := <-ch
			fmt.Fprintf(os.Stderr, "cluster: caught %v, stopping test clusters\n", sig)
			live.stopAll()
			os.Exit(1)
		}()
	})
}

func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer func() { _ = f.Close() }()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
