package pool

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func validSpec() Spec {
	as := DefaultAutoscaling()
	return Spec{
		Name: "web", Template: "job {}", DesiredCount: 2, Active: true,
		Ports:       []Port{{Label: "http", Number: 8080, Protocol: ProtocolHTTP}},
		Drain:       Drain{Timeout: Duration(15 * time.Second), GracePeriod: Duration(15 * time.Second)},
		Autoscaling: &as,
	}
}

func TestSpec_Validate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Spec)
		limits Limits
		fields []string // the fields reported, in order; none = valid
	}{
		{name: "valid", mutate: func(*Spec) {}},
		{name: "name with double dash", mutate: func(s *Spec) { s.Name = "a--b" }, fields: []string{"name"}},
		{name: "name too long", mutate: func(s *Spec) { s.Name = "a" + strings.Repeat("b", 63) }, fields: []string{"name"}},
		{name: "count over limit", mutate: func(s *Spec) { s.DesiredCount = 11 }, limits: Limits{MaxDesiredCount: 10}, fields: []string{"desired_count"}},
		{name: "max_scale over server limit", mutate: func(s *Spec) { s.Autoscaling.MaxScale = 50 }, limits: Limits{MaxScaleLimit: 20}, fields: []string{"autoscaling.max_scale"}},
		{name: "unlimited max_scale with a server limit", mutate: func(s *Spec) { s.Autoscaling.MaxScale = 0 }, limits: Limits{MaxScaleLimit: 20}, fields: []string{"autoscaling.max_scale"}},
		{name: "zero initial scale needs the server's permission", mutate: func(s *Spec) { s.Autoscaling.InitialScale = 0 }, fields: []string{"autoscaling.initial_scale"}},
		{name: "zero initial scale allowed", mutate: func(s *Spec) { s.Autoscaling.InitialScale = 0 }, limits: Limits{AllowZeroInitialScale: true}},
		{name: "activation below min", mutate: func(s *Spec) { s.Autoscaling.MinScale = 2; s.Autoscaling.ActivationScale = 1 }, fields: []string{"autoscaling.activation_scale"}},
		{name: "stable window not whole seconds", mutate: func(s *Spec) { s.Autoscaling.StableWindow = Duration(6500 * time.Millisecond) }, fields: []string{"autoscaling.stable_window"}},
		{name: "scale down delay over an hour", mutate: func(s *Spec) { s.Autoscaling.ScaleDownDelay = Duration(2 * time.Hour) }, fields: []string{"autoscaling.scale_down_delay"}},
		{name: "panic window", mutate: func(s *Spec) { s.Autoscaling.PanicWindowPercentage = 0 }, fields: []string{"autoscaling.panic_window_percentage"}},
		{name: "methods on a tcp port", mutate: func(s *Spec) {
			s.Ports[0].Protocol = ProtocolTCP
			s.Methods = &Methods{Names: []string{"a"}, Port: "http", Path: "/rpc"}
		}, fields: []string{"methods.port"}},
		{name: "every problem at once", mutate: func(s *Spec) { s.Name = ""; s.Template = " "; s.Ports = nil }, fields: []string{"name", "template", "ports"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSpec()
			tt.mutate(&s)
			err := s.Validate(tt.limits)
			if len(tt.fields) == 0 {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("want a *ValidationError, got %v", err)
			}
			var got []string
			for _, f := range verr.Fields {
				got = append(got, f.Field)
			}
			if strings.Join(got, ",") != strings.Join(tt.fields, ",") {
				t.Fatalf("fields = %v, want %v (%v)", got, tt.fields, err)
			}
		})
	}
}

func TestJobID_RoundTrip(t *testing.T) {
	p := &Pool{ID: "p-0a1b2c3d", Owner: "alice", Spec: Spec{Name: "search-api"}}
	if got := p.JobID(); got != "alice--search-api--p-0a1b2c3d" {
		t.Fatalf("JobID = %q", got)
	}
	if id, ok := IDFromJobID(p.JobID()); !ok || id != p.ID {
		t.Fatalf("IDFromJobID = %q, %v", id, ok)
	}
	if _, ok := IDFromJobID("echo"); ok {
		t.Fatal("a foreign job id parsed as a pool's")
	}
}

func TestDuration_JSON(t *testing.T) {
	b, err := json.Marshal(Drain{Timeout: Duration(90 * time.Second), GracePeriod: Duration(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"timeout":"1m30s","grace_period":"1h"}` {
		t.Fatalf("got %s", b)
	}
	var d Drain
	if err := json.Unmarshal([]byte(`{"timeout":"15 seconds"}`), &d); err == nil || !strings.Contains(err.Error(), "15 seconds") {
		t.Fatalf("want an error naming the bad value, got %v", err)
	}
	if err := json.Unmarshal([]byte(`{"timeout":15}`), &d); err == nil {
		t.Fatal("a bare number must be rejected")
	}
}

func TestCheckStatsRequest(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	fresh := NewStatsNonce(now, []byte{1, 2, 3})
	old := NewStatsNonce(now.Add(-time.Minute), []byte{1, 2, 3})
	tests := []struct {
		name, nonce, auth string
		key               []byte
		ok                bool
	}{
		{"valid", fresh, StatsRequestAuth(key, fresh), key, true},
		{"replayed after a minute", old, StatsRequestAuth(key, old), key, false},
		{"another key", fresh, StatsRequestAuth([]byte("x"), fresh), key, false},
		{"no key configured", fresh, StatsRequestAuth(nil, fresh), nil, false},
		{"no nonce", "", StatsRequestAuth(key, ""), key, false},
		{"not a timestamp", "abc.def", StatsRequestAuth(key, "abc.def"), key, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckStatsRequest(tt.key, tt.nonce, tt.auth, now); (err == nil) != tt.ok {
				t.Fatalf("CheckStatsRequest = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	body := []byte(`{"members":[]}`)
	sig := StatsSignature(key, fresh, body)
	if CheckStatsSignature(key, fresh, body, sig) != nil {
		t.Fatal("a valid signature failed")
	}
	if CheckStatsSignature(key, fresh, []byte(`{"members":[{}]}`), sig) == nil {
		t.Fatal("a changed body passed")
	}
	if CheckStatsSignature(key, old, body, sig) == nil {
		t.Fatal("a signature for another nonce passed")
	}
}

func TestNewMemberID_SixtyFourBits(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewMemberID()
		if len(id) != len("m-")+16 || seen[id] {
			t.Fatalf("id %q: want m- and 16 hex digits, never repeated", id)
		}
		seen[id] = true
	}
}

func TestBearerToken(t *testing.T) {
	for header, want := range map[string]string{
		"Bearer abc": "abc", "bearer abc": "abc", "BEARER  abc ": "abc", " Bearer abc": "abc",
		"Basic abc": "", "Bearer": "", "Bearer ": "", "": "", "abc": "",
	} {
		got, ok := BearerToken(header)
		if got != want || ok != (want != "") {
			t.Errorf("BearerToken(%q) = %q, %v; want %q", header, got, ok, want)
		}
	}
}

func TestValidateHostLabels(t *testing.T) {
	s := validSpec()
	s.Name = "a" + strings.Repeat("b", 50)
	if err := ValidateHostLabels("alice", &s); err == nil || !strings.Contains(err.Error(), "63") {
		t.Fatalf("a 67-byte host label: %v", err)
	}
	s.Name = "web"
	if err := ValidateHostLabels("alice", &s); err != nil {
		t.Fatal(err)
	}
}

func TestValidate_TemplateSize(t *testing.T) {
	s := validSpec()
	s.Template = strings.Repeat("#", MaxTemplateBytes+1)
	var verr *ValidationError
	if err := s.Validate(Limits{}); !errors.As(err, &verr) || verr.Fields[0].Field != "template" {
		t.Fatalf("an oversized template: %v", err)
	}
}
