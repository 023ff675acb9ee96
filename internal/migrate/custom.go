package migrate

import (
	"fmt"
	"strings"
	"time"

	"github.com/warmcache/warmcache/internal/config"
)

// Exec timeouts of the [runners.custom] block, in seconds.
const (
	// configExecTimeout: the config stage reads warmcache's config and
	// prints one line.
	configExecTimeout = 60
	// defaultPrepareTimeout is the runner's own default for
	// prepare_exec_timeout: pulls of large images and service starts.
	defaultPrepareTimeout = time.Hour
	// cleanupMargin lets warmcache's own docker.cleanup_timeout end a slow
	// cleanup, with its own message, before the runner kills it.
	cleanupMargin = time.Minute
	// gracefulKillTimeout: on SIGTERM, run stops the job's processes
	// within 30 s (docs/protocol.md).
	gracefulKillTimeout = 60
	// forceKillTimeout is the runner's default.
	forceKillTimeout = 10
)

// customBlock is the [runners.custom] block to paste into gitlab-runner's
// config.toml, as TOML comments: warmcache's config stays one file that
// loads as it is, and the block is pasted by removing the leading "# ".
func customBlock(name string, o Options, cfg config.Config, runner map[string]any) string {
	prepare, prepareWhy := prepareTimeout(runner)
	cleanup := int((cfg.Docker.CleanupTimeout + cleanupMargin).Seconds())
	args := func(stage string) string {
		return fmt.Sprintf("[%s, %s, %s]", tomlValue("--config"), tomlValue(o.ConfigPath), tomlValue(stage))
	}
	var b strings.Builder
	line := func(format string, a ...any) { fmt.Fprintf(&b, "# "+format+"\n", a...) }
	b.WriteString("# ---- gitlab-runner's config.toml ----\n")
	line("In the [[runners]] entry named %q, set executor = \"custom\", delete its", name)
	line("[runners.docker] section (and [[runners.docker.services]]), and paste the")
	line("lines below inside that entry, without their leading \"# \". Everything")
	line("else in the entry (url, token, [runners.cache], ...) stays as it is.")
	b.WriteString("#\n")
	line("  [runners.custom]")
	for _, stage := range []string{"config", "prepare", "run", "cleanup"} {
		line("    %s_exec = %s", stage, tomlValue(o.Exe))
		line("    %s_args = %s", stage, args(stage))
	}
	line("    config_exec_timeout = %d  # the config stage only reads %s", configExecTimeout, o.ConfigPath)
	line("    prepare_exec_timeout = %d  # %s", prepare, prepareWhy)
	line("    cleanup_exec_timeout = %d  # docker.cleanup_timeout (%s) and a minute", cleanup, cfg.Docker.CleanupTimeout)
	line("    graceful_kill_timeout = %d  # run stops the job's processes within 30 s of SIGTERM", gracefulKillTimeout)
	line("    force_kill_timeout = %d", forceKillTimeout)
	return b.String()
}

// prepareTimeout is the runner's prepare_timeout when it has one, else
// the runner's default for the custom executor.
func prepareTimeout(runner map[string]any) (int, string) {
	var d time.Duration
	switch v := runner["prepare_timeout"].(type) {
	case string:
		d, _ = time.ParseDuration(v)
	case int64:
		d = time.Duration(v)
	}
	if d >= time.Second {
		return int(d.Seconds()), "the runner's prepare_timeout"
	}
	return int(defaultPrepareTimeout.Seconds()), "image pulls and service starts; the runner's default"
}
