// Package script is the `pool` module of Tidepool's scaler scripts
// (SPEC.md §7): pool.list(), pool.get(name), pool.set_size(name, n),
// pool.start(name) and pool.stop(name), each answering with PoolInfo as
// Starlark dicts. Every call goes through API, which the REST client
// satisfies, so a script can do exactly what its token can: the API
// checks permissions, ownership and limits, and a refusal raises a
// Starlark error carrying the API's message at the script's line.
//
// `tidepool script run` runs a script with the caller's token; the
// leader runs a pool's scheduled scaler as the pool's owner
// (plugin/scaler). Both go through Run.
package script

import (
	"context"
	"fmt"
	"time"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"github.com/tidepool-run/tidepool/plugin/api"
	"github.com/tidepool-run/tidepool/plugin/api/client"
	"github.com/tidepool-run/tidepool/plugin/sandbox"
)

// API is what the pool module calls; *client.Client satisfies it.
type API interface {
	ListPools(ctx context.Context) (*api.PoolList, error)
	GetPool(ctx context.Context, ref string) (*api.PoolInfo, error)
	SetSize(ctx context.Context, ref string, n int) (*api.PoolInfo, error)
	Start(ctx context.Context, ref string) (*api.PoolInfo, error)
	Stop(ctx context.Context, ref string) (*api.PoolInfo, error)
}

var _ API = (*client.Client)(nil)

// Module returns the pool module over a.
func Module(a API) *starlarkstruct.Module {
	poolFn := func(name string, call func(ctx context.Context, ref string) (*api.PoolInfo, error)) *starlark.Builtin {
		return starlark.NewBuiltin("pool."+name, func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var ref string
			if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &ref); err != nil {
				return nil, err
			}
			return answer(b.Name(), func() (any, error) { return call(sandbox.Context(thread), ref) })
		})
	}
	return &starlarkstruct.Module{
		Name: sandbox.ModulePool,
		Members: starlark.StringDict{
			"list": starlark.NewBuiltin("pool.list", func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
				if err := starlark.UnpackArgs(b.Name(), args, kwargs); err != nil {
					return nil, err
				}
				return answer(b.Name(), func() (any, error) {
					list, err := a.ListPools(sandbox.Context(thread))
					if err != nil {
						return nil, err
					}
					return list.Pools, nil
				})
			}),
			"get":   poolFn("get", a.GetPool),
			"start": poolFn("start", a.Start),
			"stop":  poolFn("stop", a.Stop),
			"set_size": starlark.NewBuiltin("pool.set_size", func(thread *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
				var ref string
				var n int
				if err := starlark.UnpackArgs(b.Name(), args, kwargs, "name", &ref, "n", &n); err != nil {
					return nil, err
				}
				return answer(b.Name(), func() (any, error) { return a.SetSize(sandbox.Context(thread), ref, n) })
			}),
		},
	}
}

// answer runs an API call and converts its result; a failure is an error
// naming the function, which the interpreter places at the calling line.
func answer(fn string, call func() (any, error)) (starlark.Value, error) {
	v, err := call()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn, err)
	}
	return ToStarlark(v)
}

// Options tune Run.
type Options struct {
	Limits sandbox.Limits
	// Print receives each printed line as it is printed.
	Print func(line string)
	// Now is time.now() in the script; nil means the wall clock.
	Now func() time.Time
}

// Run compiles src (named file in errors) and runs it once against a.
// Script failures are *sandbox.Error with the failing line.
func Run(ctx context.Context, file string, src []byte, a API, opts Options) (*sandbox.Result, error) {
	prog, err := sandbox.Compile(file, src)
	if err != nil {
		return &sandbox.Result{}, err
	}
	return prog.Exec(ctx, sandbox.Run{
		Modules: starlark.StringDict{sandbox.ModulePool: Module(a)},
		Limits:  opts.Limits,
		Print:   opts.Print,
		Now:     opts.Now,
	})
}
