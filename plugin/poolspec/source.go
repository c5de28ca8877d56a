package poolspec

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// SourceMap locates spec fields, named by their JSON paths
// ("autoscaling.min_scale", "ports[1].number"), in a spec file.
type SourceMap struct {
	ranges map[string]hcl.Range
	// fallback is the pool block's header, for fields the file omits.
	fallback hcl.Range
}

func newSourceMap(f *hcl.File) *SourceMap {
	sm := &SourceMap{ranges: map[string]hcl.Range{}}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return sm
	}
	for _, blk := range body.Blocks {
		if blk.Type != "pool" {
			continue
		}
		sm.fallback = blk.DefRange()
		if len(blk.LabelRanges) > 0 {
			sm.ranges["name"] = blk.LabelRanges[0]
		}
		sm.add("", blk.Body)
	}
	return sm
}

// blockFields maps HCL block types to the JSON field they decode into.
var blockFields = map[string]string{"port": "ports"}

func (sm *SourceMap) add(prefix string, body *hclsyntax.Body) {
	for name, attr := range body.Attributes {
		path := prefix + name
		sm.ranges[path] = attr.SrcRange
		// List elements, as in methods.names[1].
		if tuple, ok := attr.Expr.(*hclsyntax.TupleConsExpr); ok {
			for i, e := range tuple.Exprs {
				sm.ranges[fmt.Sprintf("%s[%d]", path, i)] = e.Range()
			}
		}
	}
	counts := map[string]int{}
	for _, blk := range body.Blocks {
		field := blk.Type
		if f, ok := blockFields[field]; ok {
			field = f
		}
		path := prefix + field
		if _, repeated := blockFields[blk.Type]; repeated {
			path = fmt.Sprintf("%s[%d]", path, counts[blk.Type])
			counts[blk.Type]++
			// The block's label is its "label" field.
			if len(blk.LabelRanges) > 0 {
				sm.ranges[path+".label"] = blk.LabelRanges[0]
			}
		}
		if _, seen := sm.ranges[path]; !seen {
			sm.ranges[path] = blk.DefRange()
		}
		sm.add(path+".", blk.Body)
	}
}

// Range returns where field is written, or the closest enclosing block when
// the file leaves it out (a default was applied).
func (sm *SourceMap) Range(field string) hcl.Range {
	for f := field; f != ""; f = parent(f) {
		if r, ok := sm.ranges[f]; ok {
			return r
		}
	}
	return sm.fallback
}

func parent(field string) string {
	if i := strings.LastIndexAny(field, ".["); i >= 0 {
		return field[:i]
	}
	return ""
}

func (sm *SourceMap) diag(field, msg string) *hcl.Diagnostic {
	r := sm.Range(field)
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: field + ": " + msg, Subject: &r}
}

// Locate renders a field error reported by the server as
// file:line:column: field: message.
func (sm *SourceMap) Locate(field, msg string) string {
	return FormatDiagnostic(sm.diag(field, msg))
}
