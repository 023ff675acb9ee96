package admin

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/warmcache/warmcache/internal/custom"
)

// DefaultRunnerConfig is where gitlab-runner keeps its config.toml when it
// runs as root (as its Debian package installs it).
const DefaultRunnerConfig = "/etc/gitlab-runner/config.toml"

// runnerFile is what doctor reads of gitlab-runner's config.toml: the keys
// of common/config.go that concern warmcache.
type runnerFile struct {
	Concurrent *int `toml:"concurrent"`
	Runners    []struct {
		Name     string `toml:"name"`
		Executor string `toml:"executor"`
		Limit    int    `toml:"limit"`
		Custom   struct {
			ConfigExec         string `toml:"config_exec"`
			PrepareExec        string `toml:"prepare_exec"`
			RunExec            string `toml:"run_exec"`
			CleanupExec        string `toml:"cleanup_exec"`
			PrepareExecTimeout *int   `toml:"prepare_exec_timeout"`
			CleanupExecTimeout *int   `toml:"cleanup_exec_timeout"`
		} `toml:"custom"`
	} `toml:"runners"`
}

// runnerCheck reads gitlab-runner's config.toml at path, when there is
// one it can read, and says whether the runner's concurrency and the exec
// timeouts of its warmcache runners fit warmcache's config.
func runnerCheck(d Deps, path string, add func(level, format string, args ...any)) {
	if path == "" {
		return
	}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		add("ok", "runner config: no %s; gitlab-runner's concurrent and exec timeouts not checked (--runner-config names another)", path)
		return
	case errors.Is(err, fs.ErrPermission):
		add("warn", "runner config: %s is not readable by this user; run doctor as gitlab-runner's user (or root) to check it", path)
		return
	case err != nil:
		add("warn", "runner config: %v", err)
		return
	}
	var f runnerFile
	if _, err := toml.Decode(string(data), &f); err != nil {
		add("warn", "runner config: %s: %s", path, strings.Join(strings.Fields(err.Error()), " "))
		return
	}
	// The runner's own default for concurrent is 1.
	concurrent := 1
	if f.Concurrent != nil {
		concurrent = *f.Concurrent
	}
	var ours []string
	limitSum, unlimited := 0, false
	for _, r := range f.Runners {
		c := r.Custom
		if r.Executor != "custom" || !isWarmcache(c.ConfigExec, c.PrepareExec, c.RunExec, c.CleanupExec) {
			continue
		}
		ours = append(ours, fmt.Sprintf("%q", r.Name))
		if r.Limit <= 0 {
			unlimited = true
		}
		limitSum += r.Limit
		timeoutsCheck(d, r.Name, c.PrepareExecTimeout, c.CleanupExecTimeout, add)
	}
	if len(ours) == 0 {
		add("warn", "runner config: no runner in %s runs warmcache (executor = \"custom\" with warmcache as its exec): `warmcache register` prints one", path)
		return
	}
	jobs, why := concurrent, fmt.Sprintf("concurrent = %d", concurrent)
	if !unlimited && limitSum < concurrent {
		jobs, why = limitSum, fmt.Sprintf("the limit of runner %s", strings.Join(ours, ", "))
		if len(ours) > 1 {
			why = fmt.Sprintf("the limits of runners %s together", strings.Join(ours, ", "))
		}
	}
	if want := d.Config.Limits.ConcurrentJobs; jobs != want {
		add("warn", "runner config: gitlab-runner runs up to %d warmcache jobs at once (%s), limits.concurrent_jobs = %d: make them equal, or each job's default share of the host is wrong", jobs, why, want)
		return
	}
	add("ok", "runner config: up to %d jobs at once (%s), as limits.concurrent_jobs", jobs, why)
}

// timeoutsCheck compares one warmcache runner's prepare and cleanup exec
// timeouts (the runner's default when unset) with what the stages need.
func timeoutsCheck(d Deps, name string, prepare, cleanup *int, add func(level, format string, args ...any)) {
	ok := true
	if got, need := execTimeout(prepare), custom.MinPrepare(d.Config); got < need {
		ok = false
		add("warn", "runner %q: prepare_exec_timeout = %d is shorter than prepare needs (services.wait_timeout %s and time for pulls): set at least %d", name, secs(got), d.Config.Services.WaitTimeout, secs(need))
	}
	if got, need := execTimeout(cleanup), custom.MinCleanup(d.Config); got < need {
		ok = false
		add("warn", "runner %q: cleanup_exec_timeout = %d is not longer than docker.cleanup_timeout (%s): the runner kills a slow cleanup before warmcache ends it, leaking the job's containers; set %d (warmcache register)", name, secs(got), d.Config.Docker.CleanupTimeout, secs(custom.Cleanup(d.Config)))
	}
	if ok {
		add("ok", "runner %q: exec timeouts fit (prepare %d s, cleanup %d s)", name, secs(execTimeout(prepare)), secs(execTimeout(cleanup)))
	}
}

// execTimeout is an exec timeout of [runners.custom] in seconds, or the
// runner's default when it is unset or not positive.
func execTimeout(seconds *int) time.Duration {
	if seconds == nil || *seconds <= 0 {
		return custom.RunnerDefaultTimeout
	}
	return time.Duration(*seconds) * time.Second
}

func secs(d time.Duration) int { return int(d / time.Second) }

// isWarmcache reports whether any stage's exec is a warmcache binary.
func isWarmcache(execs ...string) bool {
	for _, e := range execs {
		if filepath.Base(e) == "warmcache" {
			return true
		}
	}
	return false
}
