// Package sandbox runs Tidepool's Starlark dialect for scaler scripts: a
// script is compiled once (syntax and undefined names are reported with
// file:line:column before anything runs), then executed in a fresh thread
// with a step limit and a wall-clock limit, with print captured, no load(),
// and nothing kept between runs. Starlark itself has no file, network or
// environment access; the only doors out are the modules the caller
// predeclares (package script supplies `pool`).
//
// The package depends on no other Tidepool package, so the API server and
// the spec decoder can check scripts without the pool module.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	starjson "go.starlark.net/lib/json"
	starmath "go.starlark.net/lib/math"
	startime "go.starlark.net/lib/time"
	"go.starlark.net/resolve"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// ModulePool is the name of the module the caller supplies; Compile
// accepts references to it.
const ModulePool = "pool"

// Limits bound one run of a script.
type Limits struct {
	// MaxSteps is Starlark's abstract computation step budget
	// (starlark.Thread.SetMaxExecutionSteps); 0 means DefaultMaxSteps.
	MaxSteps uint64
	// Timeout is the wall-clock budget, API calls included; 0 means
	// DefaultTimeout.
	Timeout time.Duration
}

// Defaults for Limits: a scaling decision takes thousands of steps and a
// few API calls; a million steps is about a second of tight looping.
const (
	DefaultMaxSteps = 1_000_000
	DefaultTimeout  = 10 * time.Second
)

func (l Limits) withDefaults() Limits {
	if l.MaxSteps == 0 {
		l.MaxSteps = DefaultMaxSteps
	}
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	return l
}

// Output bounds: a status record keeps the last MaxOutputLines printed
// lines, each cut to MaxLineBytes.
const (
	MaxOutputLines = 20
	MaxLineBytes   = 512
)

// MaxSourceBytes bounds a script's size.
const MaxSourceBytes = 64 << 10 // pool.MaxScalerSourceBytes, without importing it

// Outcome classifies how a run ended.
type Outcome string

// Outcomes of a run.
const (
	OutcomeOK        Outcome = "ok"
	OutcomeError     Outcome = "error"
	OutcomeStepLimit Outcome = "step_limit"
	OutcomeTimeout   Outcome = "timeout"
	OutcomeCanceled  Outcome = "canceled"
)

// Error is a script that failed to compile or run, located in its source.
type Error struct {
	Outcome Outcome
	// File, Line and Col locate the failing statement; Line is 0 when
	// the error has no position.
	File      string
	Line, Col int
	Msg       string
	// Backtrace is Starlark's traceback, for logs.
	Backtrace string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.Msg
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// options is Tidepool's dialect: Python-like control flow at top level and
// while loops (the step limit bounds them), no recursion.
var options = &syntax.FileOptions{Set: true, While: true, TopLevelControl: true, GlobalReassign: true}

// stdlib are the modules every script gets besides pool.
func stdlib() starlark.StringDict {
	return starlark.StringDict{
		"time": startime.Module,
		"math": starmath.Module,
		"json": starjson.Module,
	}
}

func isPredeclared(name string) bool {
	return name == ModulePool || stdlib().Has(name)
}

// Program is a compiled script.
type Program struct {
	file string
	prog *starlark.Program
}

// Compile parses and resolves src, named file in error positions. Every
// problem comes back as an *Error with its position.
func Compile(file string, src []byte) (*Program, error) {
	if len(src) > MaxSourceBytes {
		return nil, &Error{Outcome: OutcomeError, File: file, Msg: fmt.Sprintf("script is %d bytes; the limit is %d", len(src), MaxSourceBytes)}
	}
	_, prog, err := starlark.SourceProgramOptions(options, file, src, isPredeclared)
	if err != nil {
		return nil, compileError(file, err)
	}
	return &Program{file: file, prog: prog}, nil
}

// Check reports whether src compiles, as Compile does.
func Check(file string, src []byte) error {
	_, err := Compile(file, src)
	return err
}

func compileError(file string, err error) error {
	var se syntax.Error
	var re resolve.ErrorList
	switch {
	case errors.As(err, &se):
		return posError(OutcomeError, se.Pos, se.Msg)
	case errors.As(err, &re):
		msgs := make([]string, 0, len(re))
		for _, e := range re[1:] {
			msgs = append(msgs, fmt.Sprintf("%d:%d: %s", e.Pos.Line, e.Pos.Col, e.Msg))
		}
		out := posError(OutcomeError, re[0].Pos, re[0].Msg)
		if len(msgs) > 0 {
			out.Msg += " (also " + strings.Join(msgs, "; ") + ")"
		}
		return out
	default:
		return &Error{Outcome: OutcomeError, File: file, Msg: err.Error()}
	}
}

func posError(o Outcome, p syntax.Position, msg string) *Error {
	return &Error{Outcome: o, File: p.Filename(), Line: int(p.Line), Col: int(p.Col), Msg: msg}
}

// Run configures one execution.
type Run struct {
	// Modules are predeclared besides time, math and json: pool.
	Modules starlark.StringDict
	Limits  Limits
	// Print, when set, receives each printed line as it is printed.
	Print func(line string)
	// Now is time.now() inside the script; nil means time.Now.
	Now func() time.Time
}

// Result is what a run printed and how much it computed.
type Result struct {
	// Output holds the last MaxOutputLines printed lines.
	Output []string
	Steps  uint64
}

// Exec runs the program once in a fresh thread. It never panics: a panic
// in a module becomes an error. ctx bounds the run as the timeout does;
// modules read it with Context.
func (p *Program) Exec(ctx context.Context, r Run) (res *Result, err error) {
	lim := r.Limits.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, lim.Timeout)
	defer cancel()

	res = &Result{}
	var mu sync.Mutex
	thread := &starlark.Thread{
		Name: p.file,
		Print: func(_ *starlark.Thread, msg string) {
			for line := range strings.SplitSeq(msg, "\n") {
				if len(line) > MaxLineBytes {
					line = line[:MaxLineBytes] + "…"
				}
				mu.Lock()
				res.Output = append(res.Output, line)
				if len(res.Output) > MaxOutputLines {
					res.Output = res.Output[len(res.Output)-MaxOutputLines:]
				}
				mu.Unlock()
				if r.Print != nil {
					r.Print(line)
				}
			}
		},
		// No load(): a script is one file.
		Load: nil,
	}
	var stop stopReason
	thread.OnMaxSteps = func(t *starlark.Thread) {
		stop.set(OutcomeStepLimit)
		t.Cancel(fmt.Sprintf("step limit of %d exceeded", lim.MaxSteps))
	}
	thread.SetMaxExecutionSteps(lim.MaxSteps)
	thread.SetLocal(contextKey, ctx)
	now := r.Now
	if now == nil {
		now = time.Now
	}
	startime.SetNow(thread, func() (time.Time, error) { return now(), nil })

	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				stop.set(OutcomeTimeout)
				thread.Cancel(fmt.Sprintf("time limit of %s exceeded", lim.Timeout))
			} else {
				stop.set(OutcomeCanceled)
				thread.Cancel("canceled")
			}
		case <-done:
		}
	}()

	defer func() {
		if v := recover(); v != nil {
			err = &Error{Outcome: OutcomeError, File: p.file, Msg: fmt.Sprintf("internal error: %v", v)}
		}
		res.Steps = thread.ExecutionSteps()
	}()
	predeclared := stdlib()
	for k, v := range r.Modules {
		predeclared[k] = v
	}
	if _, err := p.prog.Init(thread, predeclared); err != nil {
		stopped := stop.get()
		if stopped == "" && ctx.Err() != nil {
			// A call out noticed the deadline before the watcher did.
			stopped = OutcomeCanceled
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				stopped = OutcomeTimeout
			}
		}
		return res, runError(p.file, err, stopped)
	}
	return res, nil
}

func runError(file string, err error, stopped Outcome) error {
	out := &Error{Outcome: OutcomeError, File: file, Msg: err.Error()}
	if stopped != "" {
		out.Outcome = stopped
	}
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		out.Msg = ee.Msg
		out.Backtrace = ee.Backtrace()
		// The innermost frame in the script: a builtin's frame has no
		// position of its own.
		for i := len(ee.CallStack) - 1; i >= 0; i-- {
			if pos := ee.CallStack[i].Pos; pos.IsValid() && pos.Filename() != "<builtin>" {
				out.File, out.Line, out.Col = pos.Filename(), int(pos.Line), int(pos.Col)
				break
			}
		}
	}
	if i := strings.Index(out.Msg, "Starlark computation cancelled: "); i >= 0 {
		out.Msg = strings.TrimPrefix(out.Msg[i:], "Starlark computation cancelled: ")
	}
	return out
}

// stopReason records why the thread was cancelled, first reason wins.
type stopReason struct {
	mu sync.Mutex
	o  Outcome
}

func (s *stopReason) set(o Outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.o == "" {
		s.o = o
	}
}

func (s *stopReason) get() Outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.o
}

const contextKey = "tidepool.context"

// Context is the run's context, for modules that call out (API calls end
// with the run's time limit).
func Context(thread *starlark.Thread) context.Context {
	if ctx, ok := thread.Local(contextKey).(context.Context); ok {
		return ctx
	}
	return context.Background()
}
