package sandbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.starlark.net/starlark"
)

func scriptError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *sandbox.Error", err, err)
	}
	return e
}

func TestCompile_ErrorsNamePosition(t *testing.T) {
	tests := []struct {
		name, src string
		want      string
	}{
		{name: "syntax", src: "x = 1\nif x >\n  pass\n", want: "s.star:2:7: got newline, want primary expression"},
		{name: "undefined name", src: "x = 1\ny = poo.get(\"a\")\n", want: "s.star:2:5: undefined: poo"},
		{name: "no file access", src: "open(\"/etc/passwd\")\n", want: "s.star:1:1: undefined: open"},
		{name: "no os module", src: "print(os.environ)\n", want: "s.star:1:7: undefined: os"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile("s.star", []byte(tt.src))
			if err == nil {
				t.Fatal("compiled")
			}
			if e := scriptError(t, err); e.Line == 0 || err.Error() != tt.want {
				t.Fatalf("got %q, want %q", err, tt.want)
			}
		})
	}
}

func TestCompile_TooLarge(t *testing.T) {
	_, err := Compile("big.star", []byte(strings.Repeat("x = 1\n", MaxSourceBytes)))
	if err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("got %v", err)
	}
}

func exec(t *testing.T, src string, r Run) (*Result, error) {
	t.Helper()
	prog, err := Compile("s.star", []byte(src))
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return prog.Exec(context.Background(), r)
}

func TestExec_Limits(t *testing.T) {
	block := starlark.NewBuiltin("block", func(thread *starlark.Thread, _ *starlark.Builtin, _ starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
		<-Context(thread).Done()
		return nil, Context(thread).Err()
	})
	tests := []struct {
		name    string
		src     string
		limits  Limits
		outcome Outcome
		line    int
		msg     string
	}{
		{name: "infinite while", src: "x = 0\nwhile True:\n  x += 1\n", limits: Limits{MaxSteps: 10_000}, outcome: OutcomeStepLimit, msg: "step limit of 10000 exceeded"},
		{name: "huge for", src: "n = 0\nfor i in range(1 << 60):\n  n += i\n", limits: Limits{MaxSteps: 10_000}, outcome: OutcomeStepLimit, line: 2, msg: "step limit"},
		{name: "default step limit", src: "while True:\n  pass\n", outcome: OutcomeStepLimit, msg: "step limit of 1000000 exceeded"},
		{name: "wall clock in a loop", src: "while True:\n  pass\n", limits: Limits{MaxSteps: 1 << 62, Timeout: 50 * time.Millisecond}, outcome: OutcomeTimeout, msg: "time limit of 50ms exceeded"},
		{name: "wall clock in a call", src: "print(\"start\")\npool.block()\n", limits: Limits{Timeout: 50 * time.Millisecond}, outcome: OutcomeTimeout, line: 2, msg: "context deadline exceeded"},
		{name: "script error", src: "x = {}\ny = x[\"missing\"]\n", outcome: OutcomeError, line: 2, msg: `key "missing" not in dict`},
		{name: "fail()", src: "fail(\"no\")\n", outcome: OutcomeError, line: 1, msg: "fail: no"},
		{name: "recursion", src: "def f(n):\n  return f(n)\nf(1)\n", outcome: OutcomeError, line: 2, msg: "called recursively"},
		{name: "load", src: "load(\"x.star\", \"y\")\n", outcome: OutcomeError, line: 1, msg: "load not implemented"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog, err := Compile("s.star", []byte(tt.src))
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			start := time.Now()
			_, err = prog.Exec(context.Background(), Run{Limits: tt.limits, Modules: starlark.StringDict{"pool": &module{"block": block}}})
			if err == nil {
				t.Fatal("ran to the end")
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %s", d)
			}
			e := scriptError(t, err)
			if e.Outcome != tt.outcome || !strings.Contains(e.Msg, tt.msg) {
				t.Fatalf("got %s %q, want %s %q", e.Outcome, e.Msg, tt.outcome, tt.msg)
			}
			if tt.line != 0 && (e.Line != tt.line || !strings.HasPrefix(e.Error(), fmt.Sprintf("s.star:%d:", tt.line))) {
				t.Fatalf("got %q, want line %d", e.Error(), tt.line)
			}
		})
	}
}

func TestExec_CanceledContext(t *testing.T) {
	prog, err := Compile("s.star", []byte("while True:\n  pass\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = prog.Exec(ctx, Run{Limits: Limits{MaxSteps: 1 << 62}})
	if e := scriptError(t, err); e.Outcome != OutcomeCanceled {
		t.Fatalf("got %v", e.Outcome)
	}
}

func TestExec_PrintCaptured(t *testing.T) {
	var streamed []string
	res, err := exec(t, "for i in range(30):\n  print(\"line\", i)\nprint(\"a\\nb\")\nprint(\""+strings.Repeat("x", 2*MaxLineBytes)+"\")\n",
		Run{Print: func(l string) { streamed = append(streamed, l) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(streamed) != 33 || streamed[0] != "line 0" {
		t.Fatalf("streamed %d lines: %q", len(streamed), streamed[:3])
	}
	if len(res.Output) != MaxOutputLines || res.Output[MaxOutputLines-3] != "a" || res.Output[MaxOutputLines-2] != "b" {
		t.Fatalf("output %q", res.Output)
	}
	if last := res.Output[MaxOutputLines-1]; len(last) > MaxLineBytes+len("…") {
		t.Fatalf("long line kept at %d bytes", len(last))
	}
	if res.Steps == 0 {
		t.Fatal("no steps counted")
	}
}

func TestExec_NoStateBetweenRuns(t *testing.T) {
	prog, err := Compile("s.star", []byte("counter = []\ncounter.append(1)\nprint(len(counter))\n"))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		res, err := prog.Exec(context.Background(), Run{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Output[0] != "1" {
			t.Fatalf("state carried over: %q", res.Output)
		}
	}
}

func TestExec_ClockInjected(t *testing.T) {
	at := time.Date(2026, 3, 1, 22, 30, 0, 0, time.UTC)
	res, err := exec(t, "print(time.now().hour, math.floor(2.5), json.encode({\"a\": 1}))\n", Run{Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Output[0] != `22 2 {"a":1}` {
		t.Fatalf("got %q", res.Output[0])
	}
}

func TestExec_PanicInModuleIsAnError(t *testing.T) {
	boom := starlark.NewBuiltin("boom", func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
		panic("kaboom")
	})
	prog, err := Compile("s.star", []byte("pool.x()\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = prog.Exec(context.Background(), Run{Modules: starlark.StringDict{"pool": &module{"x": boom}}})
	if e := scriptError(t, err); e.Outcome != OutcomeError || !strings.Contains(e.Msg, "kaboom") {
		t.Fatalf("got %v", err)
	}
}

// module is a minimal attribute holder for tests.
type module map[string]starlark.Value

func (m *module) String() string        { return "module" }
func (m *module) Type() string          { return "module" }
func (m *module) Freeze()               {}
func (m *module) Truth() starlark.Bool  { return true }
func (m *module) Hash() (uint32, error) { return 0, errors.New("unhashable") }
func (m *module) Attr(name string) (starlark.Value, error) {
	return (*m)[name], nil
}
func (m *module) AttrNames() []string { return nil }
