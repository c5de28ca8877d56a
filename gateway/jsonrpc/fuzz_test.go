package jsonrpc

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzDecode checks what Decode promises for any input: it never panics;
// a non-batch decodes to exactly one request; a batch is a JSON array with
// as many elements as requests; and decoded requests survive re-encoding.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"echo","params":[1]}`,
		`[{"jsonrpc":"2.0","id":"a","method":"x"},{"jsonrpc":"2.0","method":"n"}]`,
		`[]`, `[1,2]`, `{"jsonrpc":"2.0","id":{},"method":"x"}`, ` {"id":null} `, `{`, `null`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		reqs, batch, err := Decode(body)
		if err != nil {
			return
		}
		if !batch && len(reqs) != 1 {
			t.Fatalf("a single call decoded to %d requests", len(reqs))
		}
		if batch {
			var elems []json.RawMessage
			if json.Unmarshal(bytes.TrimSpace(body), &elems) != nil || len(elems) != len(reqs) {
				t.Fatalf("a batch of %d elements decoded to %d requests", len(elems), len(reqs))
			}
		}
		for _, r := range reqs {
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatalf("a decoded request does not encode: %v", err)
			}
			var back Request
			if err := json.Unmarshal(b, &back); err != nil || back.Method != r.Method || back.JSONRPC != r.JSONRPC {
				t.Fatalf("request %+v did not survive re-encoding: %+v %v", r, back, err)
			}
			if r.Validate() == nil && r.Method == "" {
				t.Fatal("a request without a method validated")
			}
		}
	})
}
