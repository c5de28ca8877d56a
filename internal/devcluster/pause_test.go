package devcluster

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestWaitStopped(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	pid := cmd.Process.Pid
	if err := WaitStopped(pid, 50*time.Millisecond); err == nil {
		t.Fatal("a running process was reported stopped")
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if err := WaitStopped(pid, 5*time.Second); err != nil {
		t.Fatalf("after SIGSTOP: %v", err)
	}
	_ = syscall.Kill(pid, syscall.SIGCONT)
	if err := WaitStopped(pid, 50*time.Millisecond); err == nil {
		t.Fatal("a resumed process was reported stopped")
	}
}
