package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/coder/websocket"
	"github.com/hashicorp/go-hclog"

	"github.com/tidepool-run/tidepool/gateway/jsonrpc"
)

// maxSleep bounds /sleep and the sleep method so a typo cannot pin a member.
const maxSleep = 5 * time.Minute

// maxRPCBody bounds a JSON-RPC request body.
const maxRPCBody = 1 << 20

// identity is who answers: Nomad's group name is the Tidepool member id.
type identity struct {
	Member  string `json:"member"`
	AllocID string `json:"alloc_id"`
}

// echoReply is the body of every plain HTTP answer.
type echoReply struct {
	identity
	Method  string `json:"method"`
	Path    string `json:"path"`
	Host    string `json:"host"`
	SleptMS int64  `json:"slept_ms,omitempty"`
	// Headers are the request's headers, on GET /headers only.
	Headers http.Header `json:"headers,omitempty"`
}

func newHandler(id identity, log hclog.Logger) http.Handler {
	h := &handler{id: id, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.HandleFunc("/sleep", h.sleep)
	mux.HandleFunc("GET /sse", h.sse)
	mux.HandleFunc("/ws", h.websocket)
	mux.HandleFunc("POST /rpc", h.rpc)
	mux.HandleFunc("GET /headers", h.headers)
	mux.HandleFunc("/", h.echo)
	return mux
}

type handler struct {
	id  identity
	log hclog.Logger
}

func (h *handler) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

func (h *handler) echo(w http.ResponseWriter, r *http.Request) {
	h.reply(w, r, 0)
}

// headers answers with the request's headers, so tests can see what a
// member is told (and never told) by the gateway.
func (h *handler) headers(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(echoReply{identity: h.id, Method: r.Method, Path: r.URL.RequestURI(), Host: r.Host, Headers: r.Header})
}

func (h *handler) sleep(w http.ResponseWriter, r *http.Request) {
	d, err := parseMillis(r.URL.Query().Get("ms"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := sleepCtx(r.Context(), d); err != nil {
		return // client went away
	}
	h.reply(w, r, d.Milliseconds())
}

func (h *handler) reply(w http.ResponseWriter, r *http.Request, slept int64) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Tidepool-Member", h.id.Member)
	_ = json.NewEncoder(w).Encode(echoReply{
		identity: h.id,
		Method:   r.Method,
		Path:     r.URL.RequestURI(),
		Host:     r.Host,
		SleptMS:  slept,
	})
}

// sse streams n server-sent events (?n=, default 3), one every
// interval_ms (default 100), flushing each, to show streaming works end to
// end.
func (h *handler) sse(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 1 || n > 1000 {
		n = 3
	}
	every, err := parseMillis(r.URL.Query().Get("interval_ms"))
	if err != nil {
		every = 100 * time.Millisecond
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	for i := range n {
		if i > 0 && sleepCtx(r.Context(), every) != nil {
			return
		}
		if _, err := fmt.Fprintf(w, "id: %d\ndata: %s %d\n\n", i, h.id.Member, i); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// websocket echoes every message back with its type until the peer closes.
func (h *handler) websocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered the client
	}
	defer func() { _ = c.CloseNow() }()
	ctx := r.Context()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == -1 && !errors.Is(err, context.Canceled) {
				h.log.Debug("websocket read", "error", err)
			}
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

// rpc serves the JSON-RPC 2.0 methods "echo" (returns its params and who
// answered) and "sleep" ({"ms": N}), including batches and notifications.
func (h *handler) rpc(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRPCBody))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, jsonrpc.NewError(nil, jsonrpc.CodeInvalidRequest, "request body too large"))
		return
	}
	reqs, batch, err := jsonrpc.Decode(body)
	if err != nil {
		if errors.Is(err, jsonrpc.ErrEmptyBatch) {
			writeJSON(w, http.StatusOK, jsonrpc.NewError(nil, jsonrpc.CodeInvalidRequest, "empty batch"))
			return
		}
		writeJSON(w, http.StatusOK, jsonrpc.NewError(nil, jsonrpc.CodeParseError, "parse error: "+err.Error()))
		return
	}
	var out []jsonrpc.Response
	for i := range reqs {
		resp, ok := h.call(r.Context(), &reqs[i])
		if ok {
			out = append(out, resp)
		}
	}
	switch {
	case len(out) == 0:
		w.WriteHeader(http.StatusNoContent)
	case batch:
		writeJSON(w, http.StatusOK, out)
	default:
		writeJSON(w, http.StatusOK, out[0])
	}
}

// call runs one request; ok is false for a notification.
func (h *handler) call(ctx context.Context, req *jsonrpc.Request) (resp jsonrpc.Response, ok bool) {
	if err := req.Validate(); err != nil {
		return jsonrpc.NewError(req.ID, jsonrpc.CodeInvalidRequest, err.Error()), true
	}
	var result any
	switch req.Method {
	case "echo":
		result = struct {
			identity
			Params json.RawMessage `json:"params,omitempty"`
		}{h.id, req.Params}
	case "sleep":
		var p struct {
			MS int64 `json:"ms"`
		}
		if err := json.Unmarshal(req.Params, &p); err != nil || p.MS < 0 || time.Duration(p.MS)*time.Millisecond > maxSleep {
			return jsonrpc.NewError(req.ID, jsonrpc.CodeInvalidParams, `params must be {"ms": N} with 0 <= N <= 300000`), !req.IsNotification()
		}
		if err := sleepCtx(ctx, time.Duration(p.MS)*time.Millisecond); err != nil {
			return jsonrpc.NewError(req.ID, jsonrpc.CodeInternalError, "cancelled"), !req.IsNotification()
		}
		result = struct {
			identity
			SleptMS int64 `json:"slept_ms"`
		}{h.id, p.MS}
	default:
		return jsonrpc.NewError(req.ID, jsonrpc.CodeMethodNotFound, "method not found: "+req.Method), !req.IsNotification()
	}
	if req.IsNotification() {
		return jsonrpc.Response{}, false
	}
	resp, err := jsonrpc.NewResult(req.ID, result)
	if err != nil {
		return jsonrpc.NewError(req.ID, jsonrpc.CodeInternalError, err.Error()), true
	}
	return resp, true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func parseMillis(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("ms is required, e.g. /sleep?ms=200")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || time.Duration(n)*time.Millisecond > maxSleep {
		return 0, errors.New("ms must be a whole number of milliseconds from 0 to 300000")
	}
	return time.Duration(n) * time.Millisecond, nil
}

// sleepCtx waits for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
