package api

import (
	"testing"

	"github.com/tidepool-run/tidepool/plugin/poolspec"
)

// FuzzDecodeSpec: no body, however malformed, panics the decoder or the
// validator. Run: go test -fuzz FuzzDecodeSpec ./plugin/api/
func FuzzDecodeSpec(f *testing.F) {
	for _, seed := range []string{
		`{"name":"web","template":"job {}","desired_count":2,"ports":[{"label":"http","number":8080,"protocol":"http"}]}`,
		`{"name":"web","autoscaling":{"min_scale":1,"max_scale":3,"stable_window":"60s"},"drain":{"timeout":"1s"}}`,
		`{"methods":{"names":["a","b"],"port":"http","path":"/rpc"},"scaler":{"script":"x","interval":"15s"}}`,
		`{"desired_count":"3"}`, `[]`, `null`, `{"autoscaling":null}`, `{"drain":{"timeout":15}}`, `{`, ``,
	} {
		f.Add([]byte(seed))
	}
	d := poolspec.DefaultDefaults()
	f.Fuzz(func(t *testing.T, body []byte) {
		spec, err := DecodeSpec(body, d)
		if err != nil {
			return
		}
		_ = spec.Validate(d.Limits)
	})
}
