package testutil

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/internal/devcluster"
)

// Process is a binary a test runs, with its output in a log file that is
// printed when the test fails.
type Process struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string
	exited  chan struct{}
}

// processMarker is the environment variable that marks a test's process
// and everything it starts.
const processMarker = "TIDEPOOL_TEST_PROCESS"

var processes atomic.Int64

// StartProcess runs bin with args and env added to this process's
// environment. It is killed at cleanup, and by the kernel if the test binary
// dies.
func StartProcess(t testing.TB, name, bin string, env []string, args ...string) *Process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	// Every process the binary starts inherits the marker, so cleanup can
	// find the ones that would outlive it (nomad-autoscaler's plugins).
	marker := fmt.Sprintf("%d-%d", os.Getpid(), processes.Add(1))
	cmd.Env = append(append(os.Environ(), env...), processMarker+"="+marker)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Process{Name: name, Cmd: cmd, LogPath: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = f.Close(); close(p.exited) }()
	t.Cleanup(func() {
		p.Kill()
		for _, pid := range PIDsWithEnv(processMarker, marker) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s log ---\n%s", name, lastLines(b, 150))
		}
	})
	return p
}

// Kill sends SIGKILL and waits for the process to exit.
func (p *Process) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.exited
}

// Stop sends SIGTERM and waits up to timeout for a clean exit.
func (p *Process) Stop(timeout time.Duration) error {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s did not exit within %s of SIGTERM", p.Name, timeout)
	}
}

// Pause stops the process with SIGSTOP, as a long GC pause or a frozen VM
// would, and returns the function that resumes it (SIGCONT); resuming is
// safe to repeat and also happens at cleanup, so a paused process never
// outlives its test.
func (p *Process) Pause(t testing.TB) (resume func()) {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("pause %s: %v", p.Name, err)
	}
	resume = func() { _ = p.Cmd.Process.Signal(syscall.SIGCONT) }
	t.Cleanup(resume)
	if err := devcluster.WaitStopped(p.Cmd.Process.Pid, 5*time.Second); err != nil {
		t.Fatalf("pause %s: %v", p.Name, err)
	}
	return resume
}

// Log returns what the process has written so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

func lastLines(b []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// PIDsWithEnv lists processes whose environment holds key=value, such as
// the task of a Nomad allocation (NOMAD_ALLOC_ID=<id>).
func PIDsWithEnv(key, value string) []int {
	entries, _ := os.ReadDir("/proc")
	want := []byte(key + "=" + value + "\x00")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(append(env, 0), want) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// RunCommand runs bin to completion with args, stdin and env added to this
// process's environment, and returns its exit code, stdout and stderr. A
// binary that cannot be started fails the test.
func RunCommand(t testing.TB, bin string, env []string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s %v: %v", bin, args, err)
	}
	return code, out.String(), errb.String()
}
