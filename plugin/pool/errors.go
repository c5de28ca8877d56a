package pool

import (
	"fmt"
	"strings"
)

// FieldError is one problem with one field of a spec or request body,
// named by its JSON path.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError carries every problem found, so users fix them all at once.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	if len(parts) == 1 {
		return "invalid pool spec: " + parts[0]
	}
	return fmt.Sprintf("invalid pool spec (%d problems): %s", len(parts), strings.Join(parts, "; "))
}
