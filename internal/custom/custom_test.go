package custom

import (
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/config"
)

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/bin/warmcache": "/usr/bin/warmcache",
		"$CI_SERVER_URL":     `"$CI_SERVER_URL"`,
		"a b":                "'a b'",
		"it's":               `'it'\''s'`,
		"$x y":               "'$x y'",
		"":                   "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestSettings(t *testing.T) {
	cfg := config.Default()
	cfg.Docker.CleanupTimeout = 10 * time.Minute
	cfg.Services.WaitTimeout = 2 * time.Minute
	s := For("/usr/bin/warmcache", "/etc/warmcache/config.toml", cfg)
	s.SetPrepare(15*time.Minute, "the runner's prepare_timeout")
	block := s.Block("# ")
	for _, line := range []string{
		"#   [runners.custom]\n",
		"#     cleanup_args = [\"--config\", \"/etc/warmcache/config.toml\", \"cleanup\"]\n",
		"#     prepare_exec_timeout = 900  # the runner's prepare_timeout\n",
		"#     cleanup_exec_timeout = 660  # docker.cleanup_timeout (10m0s) and a minute\n",
		"#     force_kill_timeout = 10\n",
	} {
		if !strings.Contains(block, line) {
			t.Errorf("block lacks %q:\n%s", line, block)
		}
	}
	if got := MinPrepare(cfg); got != 12*time.Minute {
		t.Errorf("MinPrepare = %s", got)
	}
	if got := MinCleanup(cfg); got != 10*time.Minute+time.Second {
		t.Errorf("MinCleanup = %s", got)
	}
}
