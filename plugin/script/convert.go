package script

import (
	"encoding"
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"sort"
	"strings"

	"go.starlark.net/starlark"
)

// ToStarlark converts an API value (PoolInfo, PoolList, …) to Starlark the
// way encoding/json would render it: structs become dicts keyed by their
// JSON names (omitempty, omitzero and embedded structs honoured), slices lists,
// nil pointers None, integers ints, floats floats, and values with their
// own JSON or text form (times, durations) strings.
func ToStarlark(v any) (starlark.Value, error) {
	return toStarlark(reflect.ValueOf(v))
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)

func toStarlark(v reflect.Value) (starlark.Value, error) {
	if !v.IsValid() {
		return starlark.None, nil
	}
	if v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return starlark.None, nil
		}
		if v.Type().Implements(jsonMarshaler) || v.Type().Implements(textMarshaler) {
			return marshaled(v)
		}
		return toStarlark(v.Elem())
	}
	if v.Type().Implements(jsonMarshaler) || v.Type().Implements(textMarshaler) {
		return marshaled(v)
	}
	switch v.Kind() {
	case reflect.Bool:
		return starlark.Bool(v.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return starlark.MakeInt64(v.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return starlark.MakeUint64(v.Uint()), nil
	case reflect.Float32, reflect.Float64:
		return starlark.Float(v.Float()), nil
	case reflect.String:
		return starlark.String(v.String()), nil
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return starlark.NewList(nil), nil
		}
		elems := make([]starlark.Value, v.Len())
		for i := range elems {
			e, err := toStarlark(v.Index(i))
			if err != nil {
				return nil, err
			}
			elems[i] = e
		}
		return starlark.NewList(elems), nil
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			return nil, fmt.Errorf("cannot convert %s: map keys must be strings", v.Type())
		}
		d := starlark.NewDict(v.Len())
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		for _, k := range keys {
			e, err := toStarlark(v.MapIndex(k))
			if err != nil {
				return nil, err
			}
			_ = d.SetKey(starlark.String(k.String()), e)
		}
		return d, nil
	case reflect.Struct:
		d := starlark.NewDict(v.NumField())
		if err := structFields(v, d); err != nil {
			return nil, err
		}
		return d, nil
	default:
		return nil, fmt.Errorf("cannot convert a %s to Starlark", v.Type())
	}
}

// structFields adds v's exported fields to d under their JSON names.
func structFields(v reflect.Value, d *starlark.Dict) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" && opts == "" {
			continue
		}
		fv := v.Field(i)
		if f.Anonymous && name == "" && fv.Kind() == reflect.Struct {
			if err := structFields(fv, d); err != nil {
				return err
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		if strings.Contains(","+opts+",", ",omitempty,") && isEmpty(fv) ||
			strings.Contains(","+opts+",", ",omitzero,") && isZero(fv) {
			continue
		}
		e, err := toStarlark(fv)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		_ = d.SetKey(starlark.String(name), e)
	}
	return nil
}

// isEmpty is encoding/json's omitempty test.
func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Struct:
		return false
	default:
		return v.IsZero()
	}
}

// isZero is encoding/json's omitzero test: the value's IsZero method when
// it has one, else the zero value.
func isZero(v reflect.Value) bool {
	if v.Kind() == reflect.Pointer && v.IsNil() {
		return true
	}
	if z, ok := v.Interface().(interface{ IsZero() bool }); ok {
		return z.IsZero()
	}
	return v.IsZero()
}

// marshaled converts a value through its own JSON form.
func marshaled(v reflect.Value) (starlark.Value, error) {
	b, err := json.Marshal(v.Interface())
	if err != nil {
		return nil, err
	}
	var x any
	if err := json.Unmarshal(b, &x); err != nil {
		return nil, err
	}
	return toStarlark(reflect.ValueOf(x))
}

// FromStarlark converts a Starlark value made of None, bools, ints,
// floats, strings, lists, tuples and string-keyed dicts to plain Go
// (nil, bool, int64 or *big.Int, float64, string, []any, map[string]any),
// which encoding/json renders as the API does.
func FromStarlark(v starlark.Value) (any, error) {
	switch x := v.(type) {
	case starlark.NoneType:
		return nil, nil
	case starlark.Bool:
		return bool(x), nil
	case starlark.Int:
		if i, ok := x.Int64(); ok {
			return i, nil
		}
		return new(big.Int).Set(x.BigInt()), nil
	case starlark.Float:
		return float64(x), nil
	case starlark.String:
		return string(x), nil
	case starlark.Indexable: // list, tuple
		out := make([]any, x.Len())
		for i := range out {
			e, err := FromStarlark(x.Index(i))
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return out, nil
	case *starlark.Dict:
		out := make(map[string]any, x.Len())
		for _, item := range x.Items() {
			k, ok := item[0].(starlark.String)
			if !ok {
				return nil, fmt.Errorf("dict key %s is a %s, not a string", item[0], item[0].Type())
			}
			e, err := FromStarlark(item[1])
			if err != nil {
				return nil, err
			}
			out[string(k)] = e
		}
		return out, nil
	default:
		return nil, fmt.Errorf("cannot convert a %s from Starlark", v.Type())
	}
}
