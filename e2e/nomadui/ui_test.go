// Package nomadui opens a pool's job in the Nomad web UI with a real
// headless Chromium, driven over the DevTools protocol (chromedp): the
// members must read as task groups of one job, with Tidepool's meta shown.
package nomadui

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tidepool-run/tidepool/e2e/testutil"
	"github.com/tidepool-run/tidepool/internal/devcluster"
	"github.com/tidepool-run/tidepool/plugin/nomadjob"
	"github.com/tidepool-run/tidepool/plugin/pool"
)

// chromium finds a Chromium binary: $TIDEPOOL_CHROMIUM, else Debian's.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TIDEPOOL_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium installed (apt-get install chromium, or set TIDEPOOL_CHROMIUM); CI installs it")
	return ""
}

// browser starts headless Chromium with the flags that work on a closed,
// root-run machine, and a fresh profile.
func browser(t *testing.T, bin string) context.Context {
	t.Helper()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1000),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Run(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium (%s): %v", bin, err)
	}
	return ctx
}

// page is what the browser shows now: the rendered text of the page.
func page(ctx context.Context) (string, error) {
	var text string
	err := chromedp.Run(ctx, chromedp.Evaluate(`document.body ? document.body.innerText : ""`, &text))
	return text, err
}

// show navigates to u and waits until the rendered page holds every want.
// On failure it saves a screenshot and logs the page text.
func show(ctx context.Context, t *testing.T, u string, want ...string) {
	t.Helper()
	if err := chromedp.Run(ctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("open %s: %v", u, err)
	}
	var last string
	defer func() {
		if !t.Failed() {
			return
		}
		var png []byte
		if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err == nil {
			path := filepath.Join(os.TempDir(), fmt.Sprintf("nomadui-%d.png", time.Now().UnixNano()))
			if os.WriteFile(path, png, 0o644) == nil {
				t.Logf("screenshot: %s", path)
			}
		}
		t.Logf("page text:\n%s", last)
	}()
	testutil.Eventually(t, 60*time.Second, 250*time.Millisecond, "the Nomad UI renders "+u, func(context.Context) error {
		var err error
		if last, err = page(ctx); err != nil {
			return err
		}
		for _, w := range want {
			if !strings.Contains(last, w) {
				return fmt.Errorf("%q not shown yet", w)
			}
		}
		return nil
	})
}

func TestNomadUI_ShowsPoolMembersAsTaskGroupsWithMeta(t *testing.T) {
	bin := chromium(t)
	tidepool := testutil.BuildBinary(t, "./cmd/tidepool")
	echo := testutil.BuildBinary(t, "./cmd/tidepool-echo")
	c := devcluster.New(t, devcluster.Config{Name: "ui"})
	apiAddr, _ := testutil.StartServer(t, tidepool, c.Env())
	_, api := testutil.Bootstrap(t, apiAddr)
	ctx := context.Background()
	info, err := api.CreatePool(ctx, &pool.Spec{
		Name: "web", DesiredCount: 2, Active: true,
		Ports:    []pool.Port{{Label: "http", Number: 8080, Protocol: pool.ProtocolHTTP, Public: true}},
		Drain:    pool.Drain{Timeout: pool.Duration(2 * time.Second), GracePeriod: pool.Duration(2 * time.Second)},
		Template: testutil.EchoJob{Bin: echo, Service: "ui-web"}.HCL(),
	})
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 90*time.Second, 250*time.Millisecond, "2 members alive", func(ctx context.Context) error {
		if info, err = api.GetPool(ctx, "web"); err != nil {
			return err
		}
		if info.AliveMembers != 2 {
			return fmt.Errorf("%d alive", info.AliveMembers)
		}
		return nil
	})

	b := browser(t, bin)
	job := c.NomadAddr + "/ui/jobs/" + url.PathEscape(info.NomadJobID) + "@default"
	started := time.Now()
	// The job page lists every member as a task group, and the job meta.
	want := []string{info.NomadJobID, nomadjob.MetaPoolID, info.PoolID, nomadjob.MetaManaged, nomadjob.MetaOwner}
	for _, m := range info.Members {
		want = append(want, m.ID)
	}
	show(b, t, job, want...)
	t.Logf("job page rendered with %d member groups and the tidepool_* meta in %s", len(info.Members), time.Since(started).Round(time.Millisecond))

	// A member's task group page shows its own meta.
	m := info.Members[0]
	show(b, t, job+"/"+url.PathEscape(m.ID), m.ID, nomadjob.MetaMember, nomadjob.MetaGeneration)
}
