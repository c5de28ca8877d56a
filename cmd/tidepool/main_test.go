package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRun_ExitCodes(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "version", args: []string{"version"}, wantCode: exitOK, wantStdout: "tidepool dev"},
		{name: "unknown command", args: []string{"frobnicate"}, wantCode: exitUsage},
		{name: "version with argument", args: []string{"version", "x"}, wantCode: exitUsage, wantStderr: "takes no arguments"},
		{name: "unknown flag", args: []string{"version", "-nope"}, wantCode: exitUsage, wantStderr: "-nope"},
		{name: "script group alone", args: []string{"script"}, wantCode: exitUsage},
		{name: "script run without a file", args: []string{"script", "run"}, wantCode: exitUsage, wantStderr: "takes 1 argument"},
		{name: "script run with a bad timeout", args: []string{"script", "run", "-timeout", "soon", "x.star"}, wantCode: exitUsage, wantStderr: "-timeout"},
		{name: "script run of a missing file", args: []string{"script", "run", "does-not-exist.star"}, wantCode: exitError, wantStderr: "read script"},
		{name: "script run of a script that does not parse", args: []string{"script", "run", "testdata/bad.star"}, wantCode: exitError, wantStderr: "testdata/bad.star:2:5: undefined: poo"},
		{name: "script run printing", args: []string{"script", "run", "testdata/hello.star"}, wantCode: exitOK, wantStdout: "hello 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout %q does not contain %q", stdout.String(), tt.wantStdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}
