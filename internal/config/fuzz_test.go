package config

import (
	"os"
	"strings"
	"testing"
)

// FuzzParse: any text either fails with a one-line message or gives a
// config that passes validation; nothing panics.
func FuzzParse(f *testing.F) {
	full, err := os.ReadFile("testdata/full.toml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(full))
	f.Add("")
	f.Add("[docker]\npull_policy = [\"always\", \"never\"]\n")
	f.Add("[cache]\nprofiles = [\"go\", \"go\"]\n[[cache.custom]]\nname = \"x\"\npaths = [\"/\"]\n")
	f.Add("[docker\nhost = 5\n")
	f.Fuzz(func(t *testing.T, text string) {
		cfg, err := Parse(text)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error spans lines: %q", err)
			}
			return
		}
		if problems := cfg.validate(); len(problems) > 0 {
			t.Fatalf("accepted an invalid config: %v", problems)
		}
	})
}
