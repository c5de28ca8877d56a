package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzServeHTTP sends any host, path, method and token to a gateway with
// one pool and checks what a client may rely on: no panic; a host that is
// not the pool's never reaches the member; a status is one the contract
// names; error answers are JSON; the member never sees the caller's token.
func FuzzServeHTTP(f *testing.F) {
	f.Add("alice--web--8080.localhost", "/", "GET", "")
	f.Add("alice--web--8080.localhost", "/x?y=1", "POST", "Bearer admin-secret")
	f.Add("bob--web--8080.localhost", "/", "GET", "bearer x")
	f.Add("127.0.0.1:4681", "/v1/routes", "GET", "Bearer admin-secret")
	f.Add("alice--web--9999.localhost", "/metrics", "DELETE", "")
	upstream := headerEcho(f)
	g := newStaticGatewayPort(f, upstream.Listener.Addr().String(), false)
	knowToken(g, "admin-secret", "root", "admin")
	allowed := map[int]bool{200: true, 204: true, 400: true, 401: true, 403: true, 404: true, 405: true, 413: true, 429: true, 502: true, 503: true, 504: true}
	f.Fuzz(func(t *testing.T, host, path, method, auth string) {
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path+method+host+auth, " \r\n\t\x00") || method == "" {
			return // not an HTTP request a server would parse
		}
		req, err := http.NewRequest(method, "http://gateway"+path, nil)
		if err != nil {
			return
		}
		req.Host = host
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		if !allowed[rec.Code] {
			t.Fatalf("%s %s%s: status %d", method, host, path, rec.Code)
		}
		body := rec.Body.String()
		if rec.Code >= 400 && !strings.HasPrefix(strings.TrimSpace(body), "{") {
			t.Fatalf("%s %s%s: error %d is not JSON: %.100s", method, host, path, rec.Code, body)
		}
		if rec.Code == 200 && strings.Contains(body, "admin-secret") {
			t.Fatalf("%s %s%s: the member saw the caller's token", method, host, path)
		}
	})
}
