package reconcile

import (
	"flag"
	"os"
	"testing"
)

// TestMain raises rapid's default of 100 checks per property: planning is
// cheap, and rare interleavings are where planners go wrong.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("rapid.checks"); f != nil && f.Value.String() == f.DefValue {
		_ = f.Value.Set("3000")
	}
	os.Exit(m.Run())
}
