package devcluster

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"syscall"
)

// unmountUnder detaches every mount below dir, deepest first. Nomad mounts a
// tmpfs for each task's secrets and private directories when it runs as
// root; it unmounts them when it garbage-collects an allocation, which a
// killed agent never does.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer func() { _ = f.Close() }()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Field 5 is the mount point, with spaces escaped as \040.
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := strings.ReplaceAll(fields[4], `\040`, " ")
		if within(mp, dir) {
			points = append(points, mp)
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, mp := range points {
		_ = syscall.Unmount(mp, syscall.MNT_DETACH)
	}
}
