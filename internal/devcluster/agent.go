package devcluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// agent is one running agent process.
type agent struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	waitErr error
}

// startAgent runs bin with args in dir, output to dir/<name>.log. The agent
// gets SIGTERM if this process dies, and its own process group so a Ctrl-C
// at the terminal reaches it only through that path (a second signal would
// make Nomad skip its clean shutdown).
func startAgent(dir, name, bin string, args ...string) (*agent, error) {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = agentEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	a := &agent{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		a.waitErr = cmd.Wait()
		if a.waitErr == nil {
			a.waitErr = errors.New("exit status 0")
		}
		_ = logFile.Close()
		close(a.exited)
	}()
	return a, nil
}

// agentEnv is this process's environment without the variables that would
// point an agent at another cluster or another cloud.
func agentEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "CONSUL_") || strings.HasPrefix(k, "NOMAD_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// WaitStopped waits until every thread of process pid has stopped (after a
// SIGSTOP, which the kernel delivers asynchronously), so a test that pauses
// a process knows nothing of it runs any more. It gives up after within.
func WaitStopped(pid int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		running, err := runningThreads(pid)
		if err != nil {
			return err
		}
		if running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d: %d threads still running %s after SIGSTOP", pid, running, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runningThreads counts the threads of pid not in a stopped state.
func runningThreads(pid int) (int, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("list threads of %d: %w", pid, err)
	}
	running := 0
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "stat"))
		if err != nil {
			continue // the thread exited
		}
		// The state follows the command name, which is in parentheses
		// and may itself contain spaces or parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			continue
		}
		if state := b[i+2]; state != 'T' && state != 't' {
			running++
		}
	}
	return running, nil
}

// signal sends sig to the agent's process; an agent that has exited is
// an error.
func (a *agent) signal(sig syscall.Signal) error {
	select {
	case <-a.exited:
		return fmt.Errorf("%s has exited (%w); see %s", a.name, a.waitErr, a.logPath)
	default:
	}
	if err := a.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", a.name, err)
	}
	return nil
}

// kill ends the agent's whole process group at once and waits for it.
func (a *agent) kill() {
	select {
	case <-a.exited:
		return
	default:
	}
	_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
	}
}

// killReferencing SIGKILLs every process whose working directory or command
// line lies in dir: tasks and executors Nomad left behind. It repeats until
// none is found (or a bound is reached), as killing an executor can briefly
// leave its task visible.
func killReferencing(dir string) {
	for range 20 {
		pids := referencing(dir)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// referencing lists processes other than this one that use dir.
func referencing(dir string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		proc := filepath.Join("/proc", e.Name())
		if cwd, err := os.Readlink(filepath.Join(proc, "cwd")); err == nil && within(cwd, dir) {
			pids = append(pids, pid)
			continue
		}
		if cmdline, err := os.ReadFile(filepath.Join(proc, "cmdline")); err == nil && strings.Contains(string(cmdline), dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+string(filepath.Separator))
}

// reapOrphans removes cluster directories under root whose owner process is
// gone, killing whatever still runs from them.
func reapOrphans(root string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if !orphaned(dir) {
			continue
		}
		killReferencing(dir)
		unmountUnder(dir)
		_ = os.RemoveAll(dir)
	}
}

// orphaned reports whether the process that owns a cluster directory,
// named <name>-<pid>-<random>, is gone.
func orphaned(dir string) bool {
	parts := strings.Split(filepath.Base(dir), "-")
	if len(parts) < 3 {
		return false
	}
	pid, err := strconv.Atoi(parts[len(parts)-2])
	return err == nil && !processAlive(pid)
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
