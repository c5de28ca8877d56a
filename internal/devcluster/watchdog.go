package devcluster

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// watchdogScript waits until its stdin reaches end of file — the write end
// belongs to the process that started the cluster, so the kernel closes it
// when that process dies, however it dies — or until SIGTERM (its
// parent-death signal), and then SIGKILLs
// every process working in or naming the cluster directory, and detaches
// the mounts below it. Nomad client agents outside dev mode leave their
// tasks running when they stop (so a restarted agent can adopt them); this
// is what takes those tasks down with a test binary that dies. It uses bash
// builtins only while scanning, so it forks little.
const watchdogScript = `
reap() {
  idle=0
  for _ in $(seq 1 300); do
    found=0
    for p in /proc/[0-9]*; do
      pid=${p#/proc/}
      [ "$pid" = "$$" ] && continue
      hit=0
      if cd -P "$p/cwd" 2>/dev/null; then
        case "$PWD/" in "$TPC_DIR"/*) hit=1 ;; esac
        cd /
      fi
      if [ $hit = 0 ] && mapfile -d '' args < "$p/cmdline" 2>/dev/null; then
        case "${args[*]}" in *"$TPC_DIR"*) hit=1 ;; esac
      fi
      if [ $hit = 1 ]; then kill -9 "$pid" 2>/dev/null; found=1; fi
    done
    if [ $found = 0 ]; then idle=$((idle + 1)); else idle=0; fi
    [ $idle -ge 10 ] && break
    sleep 0.1
  done
  while read -r _ _ _ _ mp _; do
    case "$mp/" in "$TPC_DIR"/*) echo "$mp" ;; esac
  done < /proc/self/mountinfo | sort -r | while read -r mp; do umount -l "$mp" 2>/dev/null; done
}
trap 'reap; exit 0' TERM INT
read -r _ || true
reap
`

// watchdog is a running watchdogScript.
type watchdog struct {
	*agent
	// alive is the write end of the watchdog's stdin, held (never written)
	// for as long as this process lives.
	alive *os.File
}

// startWatchdog runs watchdogScript for dir. Stop kills it with SIGKILL
// (which it cannot trap) before cleaning up itself.
func startWatchdog(dir string) (*watchdog, error) {
	logFile, err := os.Create(dir + "/watchdog.log")
	if err != nil {
		return nil, fmt.Errorf("open watchdog log: %w", err)
	}
	cmd := exec.Command("bash", "-c", watchdogScript)
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "TPC_DIR="+dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	r, w, err := os.Pipe()
	if err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("watchdog pipe: %w", err)
	}
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	err = cmd.Start()
	_ = r.Close()
	if err != nil {
		_ = w.Close()
		_ = logFile.Close()
		return nil, fmt.Errorf("start cluster watchdog: %w", err)
	}
	a := &agent{name: "watchdog", cmd: cmd, logPath: logFile.Name(), exited: make(chan struct{})}
	go func() {
		a.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(a.exited)
	}()
	return &watchdog{agent: a, alive: w}, nil
}

// stop kills the watchdog without letting it reap.
func (w *watchdog) stop() {
	w.kill()
	_ = w.alive.Close()
}
