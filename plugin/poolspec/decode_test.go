package poolspec

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestParseFile_Golden decodes every testdata/*.pool.hcl and compares the
// result with its .golden file: the spec as JSON, or the error text.
func TestParseFile_Golden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.pool.hcl")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".pool.hcl")
		t.Run(name, func(t *testing.T) {
			got := render(t, path)
			golden := strings.TrimSuffix(path, ".pool.hcl") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden (run with -update to create): %v", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s:\n--- got ---\n%s\n--- want ---\n%s", path, golden, got, want)
			}
		})
	}
}

func render(t *testing.T, path string) string {
	t.Helper()
	res, err := ParseFile(path, DefaultDefaults())
	if err != nil {
		return "error:\n" + err.Error() + "\n"
	}
	spec := res.Spec
	spec.Template = "file:" + res.TemplatePath
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

func TestSourceMap_LocatesServerFieldErrors(t *testing.T) {
	res, err := ParseFile("testdata/full.pool.hcl", DefaultDefaults())
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]string{
		"autoscaling.max_scale":      "testdata/full.pool.hcl:34:5: autoscaling.max_scale: too big",
		"ports[1].number":            "testdata/full.pool.hcl:13:5: ports[1].number: too big",
		"ports[1].label":             "testdata/full.pool.hcl:12:8: ports[1].label: too big",
		"methods.names[1]":           "testdata/full.pool.hcl:18:30: methods.names[1]: too big",
		"name":                       "testdata/full.pool.hcl:1:6: name: too big",
		"drain.nonexistent":          "testdata/full.pool.hcl:23:3: drain.nonexistent: too big",
		"something.the.file.omitted": "testdata/full.pool.hcl:1:1: something.the.file.omitted: too big",
	}
	for field, want := range tests {
		if got := res.Source.Locate(field, "too big"); got != want {
			t.Errorf("Locate(%q) = %q, want %q", field, got, want)
		}
	}
}

// TestExamples_Parse keeps the shipped example specs valid.
func TestExamples_Parse(t *testing.T) {
	files, _ := filepath.Glob("../../jobspecs/examples/*.pool.hcl")
	if len(files) == 0 {
		t.Fatal("no example pool specs found")
	}
	for _, f := range files {
		if _, err := ParseFile(f, DefaultDefaults()); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}
