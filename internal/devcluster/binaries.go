package devcluster

import (
	"fmt"
	"os"
	"path/filepath"
)

// Binaries are the agent executables a cluster runs.
type Binaries struct {
	Consul string
	Nomad  string
}

// CacheDir is where scripts/install-tools.sh puts the pinned agents and tools:
// $TIDEPOOL_CACHE, else $XDG_CACHE_HOME/tidepool, else ~/.cache/tidepool.
func CacheDir() string {
	if d := os.Getenv("TIDEPOOL_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "tidepool")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "tidepool-cache")
	}
	return filepath.Join(home, ".cache", "tidepool")
}

// LocateBinaries finds the agents: $TIDEPOOL_CONSUL_BIN and
// $TIDEPOOL_NOMAD_BIN when set, else the pinned builds in CacheDir.
func LocateBinaries() (Binaries, error) {
	b := Binaries{
		Consul: envOr("TIDEPOOL_CONSUL_BIN", filepath.Join(CacheDir(), "bin", "consul")),
		Nomad:  envOr("TIDEPOOL_NOMAD_BIN", filepath.Join(CacheDir(), "bin", "nomad")),
	}
	for name, path := range map[string]string{"consul": b.Consul, "nomad": b.Nomad} {
		if err := executable(name, path); err != nil {
			return Binaries{}, err
		}
	}
	return b, nil
}

// NomadAutoscaler finds the nomad-autoscaler agent: $TIDEPOOL_NOMAD_AUTOSCALER_BIN
// when set, else the pinned build in CacheDir.
func NomadAutoscaler() (string, error) {
	path := envOr("TIDEPOOL_NOMAD_AUTOSCALER_BIN", filepath.Join(CacheDir(), "bin", "nomad-autoscaler"))
	return path, executable("nomad-autoscaler", path)
}

func executable(name, path string) error {
	if fi, err := os.Stat(path); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s agent not found at %s: run `make tools` to build the pinned agents", name, path)
	}
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
