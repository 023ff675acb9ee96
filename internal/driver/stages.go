// Package driver implements the custom executor's four stages: config,
// prepare, run and cleanup. Each stage is a separate process started by
// gitlab-runner; everything a later stage needs is found in Docker by the
// names and labels of package naming.
package driver

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/limits/cgroup"
)

// Deps is what every stage is given by the entry point.
type Deps struct {
	Config config.Config
	// Engine is the container engine; nil for the config stage.
	Engine engine.Engine
	Getenv func(string) string
	Stdout io.Writer // job log (prepare, run); protocol JSON (config)
	Stderr io.Writer // job log
	Log    *zap.Logger
	// Detached hands work no stage waits for to processes of their own;
	// nil does it in the foreground instead.
	Detached Detached
	// Cgroups manages the jobs' cgroups on the engine's host; nil when the
	// driver does not run beside the engine (job-wide limits then fall
	// back to the build container's own).
	Cgroups *cgroup.Host
}

// say writes one human line to the job log.
func (d Deps) say(format string, args ...any) {
	fmt.Fprintf(d.Stderr, format+"\n", args...)
}

// BuildFailure means the job's own script failed (or the job asked for
// something the admin does not allow): the job fails, the runner does not
// retry, and Code is the job's exit code when it has one.
type BuildFailure struct {
	Code   int
	Reason string
}

func (b *BuildFailure) Error() string {
	if b.Reason != "" {
		return b.Reason
	}
	return fmt.Sprintf("script exited with code %d", b.Code)
}

// ExitCode maps a stage's outcome to the process exit code gitlab-runner
// expects, writing a build failure's real code to BUILD_EXIT_CODE_FILE. It is
// the only place exit codes are chosen.
func ExitCode(err error, getenv func(string) string) (int, error) {
	if err == nil {
		return 0, nil
	}
	system := envCode(getenv, "SYSTEM_FAILURE_EXIT_CODE", 2)
	var bf *BuildFailure
	if !errors.As(err, &bf) {
		return system, nil
	}
	if path := getenv("BUILD_EXIT_CODE_FILE"); path != "" && bf.Code != 0 {
		if werr := os.WriteFile(path, []byte(strconv.Itoa(bf.Code)+"\n"), 0o600); werr != nil {
			return system, fmt.Errorf("writing BUILD_EXIT_CODE_FILE: %w", werr)
		}
	}
	return envCode(getenv, "BUILD_FAILURE_EXIT_CODE", 1), nil
}

func envCode(getenv func(string) string, key string, fallback int) int {
	if n, err := strconv.Atoi(strings.TrimSpace(getenv(key))); err == nil && n > 0 && n < 256 {
		return n
	}
	return fallback
}
