package routing

import (
	"strings"
	"testing"
)

// FuzzParseHost checks ParseHost's contract on any host: a label it
// accepts is lower case, has no dot and exactly two "--", and, put back in
// front of the domain, parses to itself.
func FuzzParseHost(f *testing.F) {
	for _, seed := range []string{
		"alice--web--8080.localhost", "ALICE--web--8080.localhost:4681", "alice--web--8080.localhost.",
		"a.b--c--d.localhost", "alice--web.localhost", "[::1]:80", "--.localhost", "alice--web--8080.example.com",
		":----.loCAlhost:", "a b--c--d.localhost",
	} {
		f.Add(seed, "localhost")
	}
	f.Fuzz(func(t *testing.T, host, domain string) {
		domain = strings.ToLower(domain)
		label, ok := ParseHost(host, domain)
		if !ok {
			if label != "" {
				t.Fatalf("rejected %q but returned %q", host, label)
			}
			return
		}
		if label != strings.ToLower(label) || strings.ContainsAny(label, ".: ") || strings.Count(label, "--") != 2 {
			t.Fatalf("ParseHost(%q, %q) accepted label %q", host, domain, label)
		}
		if again, ok := ParseHost(label+"."+domain, domain); !ok || again != label {
			t.Fatalf("label %q of %q does not parse back (%q, %v)", label, host, again, ok)
		}
	})
}
