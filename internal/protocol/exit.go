package protocol

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

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
	system := envCode(getenv, EnvSystemFailureExitCode, 2)
	var bf *BuildFailure
	if !errors.As(err, &bf) {
		return system, nil
	}
	if path := getenv(EnvBuildExitCodeFile); path != "" && bf.Code != 0 {
		if werr := os.WriteFile(path, []byte(strconv.Itoa(bf.Code)+"\n"), 0o600); werr != nil {
			return system, fmt.Errorf("writing %s: %w", EnvBuildExitCodeFile, werr)
		}
	}
	return envCode(getenv, EnvBuildFailureExitCode, 1), nil
}

func envCode(getenv func(string) string, key string, fallback int) int {
	if n, err := strconv.Atoi(strings.TrimSpace(getenv(key))); err == nil && n > 0 && n < 256 {
		return n
	}
	return fallback
}
