package poolspec

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: no spec file, however malformed, panics the decoder; every
// failure carries at least one diagnostic. Run:
// go test -fuzz FuzzParse ./plugin/poolspec/
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.pool.hcl")
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err == nil {
			f.Add(b)
		}
	}
	template := []byte("job \"x\" {\n  group \"g\" {}\n}\n")
	readFile := func(path string) ([]byte, error) {
		if filepath.Base(path) == "missing.hcl" {
			return nil, errors.New("no such file")
		}
		return template, nil
	}
	d := DefaultDefaults()
	f.Fuzz(func(t *testing.T, src []byte) {
		res, diags := Parse("fuzz.pool.hcl", src, readFile, d)
		if diags.HasErrors() {
			if res != nil {
				t.Fatal("a result together with errors")
			}
			return
		}
		if res == nil {
			t.Fatal("neither a result nor an error")
		}
	})
}
