package credentials

import (
	"slices"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/job"
)

// Secrets lists every value to mask in the job log: the payload's own
// secrets (job token, masked variables, registry passwords) and the
// service-account tokens of cfg that can be read now. A token file that
// cannot be read is skipped: a stage must not fail over masking, and
// prepare already refused to deliver a broken one.
func Secrets(cfg config.Env, j job.Job, readFile func(string) ([]byte, error)) []string {
	var out []string
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, s := range j.Secrets() {
		add(s)
	}
	for _, t := range cfg.Tokens {
		if token, err := ReadToken(t.TokenFile, readFile); err == nil {
			add(token)
		}
	}
	return out
}
