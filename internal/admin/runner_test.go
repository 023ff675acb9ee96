package admin

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/internal/config"
)

func TestRunnerCheck(t *testing.T) {
	const runner = `
[[runners]]
  name = "w"
  executor = "custom"
  limit = %LIMIT%
  [runners.custom]
    config_exec = "/usr/bin/warmcache"
    prepare_exec = "/usr/bin/warmcache"
    run_exec = "/usr/bin/warmcache"
    cleanup_exec = "/usr/bin/warmcache"
`
	for _, tc := range []struct {
		name, file     string // file "": none
		concurrentJobs int
		want           string
	}{
		{"absent", "", 1,
			"ok   runner config: no %PATH%; gitlab-runner's concurrent and exec timeouts not checked (--runner-config names another)\n"},
		{"agree, runner defaults", "concurrent = 2\n" + strings.ReplaceAll(runner, "%LIMIT%", "0"), 2,
			"ok   runner \"w\": exec timeouts fit (prepare 3600 s, cleanup 3600 s)\n" +
				"ok   runner config: up to 2 jobs at once (concurrent = 2), as limits.concurrent_jobs\n"},
		{"concurrent unset is 1", strings.ReplaceAll(runner, "%LIMIT%", "0"), 1,
			"ok   runner \"w\": exec timeouts fit (prepare 3600 s, cleanup 3600 s)\n" +
				"ok   runner config: up to 1 jobs at once (concurrent = 1), as limits.concurrent_jobs\n"},
		{"limit below concurrent disagrees", "concurrent = 4\n" + strings.ReplaceAll(runner, "%LIMIT%", "2"), 1,
			"ok   runner \"w\": exec timeouts fit (prepare 3600 s, cleanup 3600 s)\n" +
				"warn runner config: gitlab-runner runs up to 2 warmcache jobs at once (the limit of runner \"w\"), limits.concurrent_jobs = 1: make them equal, or each job's default share of the host is wrong\n"},
		{"short timeouts", "concurrent = 1\n" + strings.ReplaceAll(runner, "%LIMIT%", "1") + "    prepare_exec_timeout = 300\n    cleanup_exec_timeout = 300\n", 1,
			"warn runner \"w\": prepare_exec_timeout = 300 is shorter than prepare needs (services.wait_timeout 30s and time for pulls): set at least 630\n" +
				"warn runner \"w\": cleanup_exec_timeout = 300 is not longer than docker.cleanup_timeout (5m0s): the runner kills a slow cleanup before warmcache ends it, leaking the job's containers; set 360 (warmcache register)\n" +
				"ok   runner config: up to 1 jobs at once (concurrent = 1), as limits.concurrent_jobs\n"},
		{"no warmcache runner", "concurrent = 1\n[[runners]]\n  name = \"d\"\n  executor = \"docker\"\n", 1,
			"warn runner config: no runner in %PATH% runs warmcache (executor = \"custom\" with warmcache as its exec): `warmcache register` prints one\n"},
		{"not TOML", "concurrent = [", 1,
			"warn runner config: %PATH%: toml: line 1 (last key \"concurrent\"): unexpected EOF; expected value\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.toml")
			if tc.file != "" {
				if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cfg := config.Default()
			cfg.Limits.ConcurrentJobs = tc.concurrentJobs
			var found []finding
			add := func(level, format string, args ...any) {
				found = append(found, finding{level, fmt.Sprintf(format, args...)})
			}
			runnerCheck(Deps{Config: cfg}, path, add)
			var got bytes.Buffer
			if err := report(Deps{Stdout: &got}, found); err != nil {
				t.Errorf("report: %v", err)
			}
			if want := strings.ReplaceAll(tc.want, "%PATH%", path); got.String() != want {
				t.Errorf("got\n%s\nwant\n%s", got.String(), want)
			}
		})
	}
}
