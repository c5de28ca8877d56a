package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// TestLeaderPausedPastItsSession_WritesNothingOnResume freezes the leader
// process (SIGSTOP) in the middle of a reconcile pass — after it has read
// the member records, while it waits on Nomad — until its session expires
// and the standby leads and changes the pool; then thaws it (SIGCONT). The
// thawed leader holds a plan made from what it read before the pause;
// nothing of it may land. Which comes first after the thaw, the write or
// the notice that the lock is gone, is up to the scheduler;
// plugin/controller's TestReconcile_ALeaderFrozenMidPassWritesNothing
// pins the worst order, a write already sent.
func TestLeaderPausedPastItsSession_WritesNothingOnResume(t *testing.T) {
	e := newEnv(t)
	_, a := e.startServer("ctrl-a")
	p := e.createPool("p-fence001", 2, 30*time.Second, time.Second)
	e.waitRunning(p.ID, 2, 90*time.Second)
	_, b := e.startServer("ctrl-b") // standby: a leads already

	// Hold a's next pass on Nomad: it reads the records, then waits for
	// the job. The pool now wants a third member.
	resumeNomad := e.c.PauseNomad(t)
	e.modify(p.ID, func(p *pool.Pool) { p.Spec.DesiredCount = 3 })
	time.Sleep(2 * time.Second)
	resumeA := a.Pause(t)
	paused := time.Now()
	resumeNomad()
	t.Logf("leader paused mid-pass (it read 2 members and wants 3)")

	testutil.Eventually(t, 60*time.Second, 200*time.Millisecond, "the standby leads", func(context.Context) error {
		if !strings.Contains(b.Log(), "acquired leadership") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	t.Logf("standby leads %s after the pause (session TTL 10s, lock-delay 1s)", time.Since(paused).Round(time.Millisecond))
	e.waitRunning(p.ID, 3, 90*time.Second)
	want := keys(e.members(p.ID))

	mark := len(a.Log())
	resumeA()
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, "the old leader notices it lost the lock", func(context.Context) error {
		if !strings.Contains(a.Log()[mark:], "lost leadership") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	testutil.Never(t, 10*time.Second, 200*time.Millisecond, "a write of the old leader lands", func(context.Context) error {
		ms := e.members(p.ID)
		if got := keys(ms); !slices.Equal(got, want) {
			return fmt.Errorf("members %v, want the new leader's %v", got, want)
		}
		for id, m := range ms {
			if m.Phase != pool.PhaseRunning {
				return fmt.Errorf("member %s is %s", id, m.Phase)
			}
		}
		if got := keys(groups(e.job(p))); !slices.Equal(got, want) {
			return fmt.Errorf("job groups %v, want %v", got, want)
		}
		return nil
	})
	after := a.Log()[mark:]
	for _, line := range strings.Split(after, "\n") {
		if strings.Contains(line, "member created") || strings.Contains(line, "job purged") {
			t.Errorf("the thawed leader logged a write that landed: %s", line)
		}
	}
	if i := strings.Index(after, "reconcile failed"); i >= 0 {
		t.Logf("the thawed leader's pass: %s", strings.SplitN(after[i:], "\n", 2)[0])
	}
}
