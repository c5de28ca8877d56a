package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/tidepool-run/tidepool/plugin/nomadjob"
	"github.com/tidepool-run/tidepool/plugin/pool"
	"github.com/tidepool-run/tidepool/plugin/store"
)

func abort(c *gin.Context, status int, msg string) {
	c.AbortWithStatusJSON(status, Error{Error: msg})
}

func invalid(c *gin.Context, msg string, fields []pool.FieldError) {
	c.AbortWithStatusJSON(http.StatusBadRequest, Error{Error: msg, Fields: fields})
}

// fail maps an error class to its status: the one place that does.
func (s *Server) fail(c *gin.Context, err error) {
	var verr *pool.ValidationError
	switch {
	case errors.As(err, &verr):
		invalid(c, verr.Error(), verr.Fields)
	case errors.Is(err, store.ErrNotFound):
		abort(c, http.StatusNotFound, err.Error())
	case errors.Is(err, store.ErrNameTaken):
		abort(c, http.StatusConflict, err.Error())
	case errors.Is(err, store.ErrPoolActive):
		abort(c, http.StatusConflict, store.ErrPoolActive.Error())
	case errors.Is(err, errStale), errors.Is(err, errAutoscaling), errors.Is(err, store.ErrConflict):
		abort(c, http.StatusConflict, err.Error())
	case errors.Is(err, context.Canceled):
		c.Abort() // the client went away
	case errors.Is(err, nomadjob.ErrNomadUnavailable):
		c.Header("Retry-After", "5")
		abort(c, http.StatusServiceUnavailable, err.Error())
	case errors.Is(err, store.ErrUnavailable):
		c.Header("Retry-After", "5")
		abort(c, http.StatusServiceUnavailable, "Consul is unreachable or slow; retry: "+err.Error())
	default:
		s.Log.Error("request failed", "method", c.Request.Method, "path", c.FullPath(), "error", err)
		abort(c, http.StatusInternalServerError, "internal error: "+err.Error())
	}
}

var (
	errStale       = errors.New("the pool changed since you read it (If-Match generation is stale): read it again")
	errAutoscaling = errors.New("autoscaling owns this pool's size: remove the autoscaling block to set it by hand")
)

// decode reads a JSON body strictly: bounded size, unknown fields refused,
// nothing after the value. On failure it answers and returns false.
func (s *Server) decode(c *gin.Context, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			abort(c, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", MaxBodyBytes))
			return false
		}
		abort(c, http.StatusBadRequest, "read body: "+err.Error())
		return false
	}
	if err := DecodeStrict(body, v); err != nil {
		var fe *pool.ValidationError
		if errors.As(err, &fe) {
			invalid(c, "invalid request body", fe.Fields)
		} else {
			abort(c, http.StatusBadRequest, err.Error())
		}
		return false
	}
	return true
}

// DecodeStrict unmarshals one JSON value, refusing unknown fields and
// trailing data. Field-level problems come back as a *pool.ValidationError.
func DecodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return errors.New("invalid JSON: unexpected data after the body")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("invalid JSON: unexpected data after the body")
	}
	return nil
}

func jsonError(err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("request body is empty: send a JSON object")
	case errors.As(err, &syntax):
		return fmt.Errorf("invalid JSON at byte %d: %s", syntax.Offset, syntax.Error())
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(body)"
		}
		return &pool.ValidationError{Fields: []pool.FieldError{{Field: field, Message: "must be " + jsonType(typ.Type.Kind().String()) + ", not " + typ.Value}}}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return &pool.ValidationError{Fields: []pool.FieldError{{Field: name, Message: "unknown field"}}}
	default:
		return fmt.Errorf("invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
}

func jsonType(kind string) string {
	switch kind {
	case "int", "int64", "int32", "float64", "float32", "uint64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice":
		return "a list"
	case "struct", "map", "ptr":
		return "an object"
	}
	return kind
}

func itoa(i int) string { return strconv.Itoa(i) }
