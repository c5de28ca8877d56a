package cluster

import (
	"bufio"
	"context"
	"os"
	"strings"
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
	c, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start test cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, path := range c.LogFiles() {
				t.Logf("--- last %d lines of %s ---\n%s", logTailLines, path, tail(path, logTailLines))
			}
		}
		c.Stop()
	})
	return c
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
