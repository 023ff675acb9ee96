// Package custom is how gitlab-runner's custom executor is pointed at this
// binary: the [runners.custom] settings (each stage's exec and args, and
// exec timeouts that fit warmcache's own bounds), written as config.toml
// lines (warmcache migrate and register) and as the `gitlab-runner register`
// command (warmcache register), and the least each timeout must be (doctor).
package custom

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/warmcache/warmcache/internal/config"
)

// The runner's own default for each exec timeout it is not given
// (executors/custom/consts.go): an hour.
const RunnerDefaultTimeout = time.Hour

const (
	// configExecTimeout: the config stage reads warmcache's config and
	// prints one line.
	configExecTimeout = 60 * time.Second
	// cleanupMargin lets warmcache's own docker.cleanup_timeout end a slow
	// cleanup, with its own message, before the runner kills it.
	cleanupMargin = time.Minute
	// pullAllowance is what prepare needs at least besides the service
	// wait: image pulls (retried, docker.pull_attempts), the light GC and
	// reap passes (5 s each), container starts.
	pullAllowance = 10 * time.Minute
	// gracefulKillTimeout: on SIGTERM, run stops the job's processes
	// within 30 s (docs/protocol.md).
	gracefulKillTimeout = 60 * time.Second
	// forceKillTimeout is the runner's default.
	forceKillTimeout = 10 * time.Second
)

// Stages are the custom executor's stages, in the order the runner runs them.
var Stages = []string{"config", "prepare", "run", "cleanup"}

// Settings are the [runners.custom] values for one binary and config file.
type Settings struct {
	// Exe is the absolute path of the warmcache binary.
	Exe string
	// ConfigPath is passed with --config to every stage: a missing file
	// then fails the job instead of silently running with the defaults.
	ConfigPath string
	// Timeouts, in config.toml's order.
	Timeouts []Timeout
}

// Timeout is one exec timeout: its key without the section, its value and
// why it is that.
type Timeout struct {
	Key     string
	Seconds int
	Why     string
}

// For gives the settings for exe and the config at configPath, cfg being
// that config: prepare gets the runner's default (an hour, for pulls of
// large images and service starts), cleanup outlasts docker.cleanup_timeout.
func For(exe, configPath string, cfg config.Config) Settings {
	cleanup := Cleanup(cfg)
	return Settings{Exe: exe, ConfigPath: configPath, Timeouts: []Timeout{
		{"config_exec_timeout", seconds(configExecTimeout), "the config stage only reads " + configPath},
		{"prepare_exec_timeout", seconds(RunnerDefaultTimeout), "image pulls and service starts; the runner's default"},
		{"cleanup_exec_timeout", seconds(cleanup), fmt.Sprintf("docker.cleanup_timeout (%s) and a minute", cfg.Docker.CleanupTimeout)},
		{"graceful_kill_timeout", seconds(gracefulKillTimeout), "run stops the job's processes within 30 s of SIGTERM"},
		{"force_kill_timeout", seconds(forceKillTimeout), ""},
	}}
}

// SetPrepare replaces the prepare_exec_timeout, saying why.
func (s *Settings) SetPrepare(d time.Duration, why string) {
	for i := range s.Timeouts {
		if s.Timeouts[i].Key == "prepare_exec_timeout" {
			s.Timeouts[i] = Timeout{"prepare_exec_timeout", seconds(d), why}
		}
	}
}

// Cleanup is the cleanup_exec_timeout warmcache registers with: a minute
// more than docker.cleanup_timeout.
func Cleanup(cfg config.Config) time.Duration {
	return cfg.Docker.CleanupTimeout + cleanupMargin
}

// MinPrepare is the least prepare_exec_timeout prepare needs: the service
// wait (all services at once, services.wait_timeout) and time for pulls.
func MinPrepare(cfg config.Config) time.Duration {
	return cfg.Services.WaitTimeout + pullAllowance
}

// MinCleanup is the least cleanup_exec_timeout cleanup needs: more than
// docker.cleanup_timeout, so that warmcache's own bound ends a slow
// cleanup (and says so) before the runner kills it.
func MinCleanup(cfg config.Config) time.Duration {
	return cfg.Docker.CleanupTimeout + time.Second
}

// Block is the [runners.custom] section as config.toml lines inside a
// [[runners]] entry, each line starting with prefix ("# " for a block to
// paste without its comment marks).
func (s Settings) Block(prefix string) string {
	var b strings.Builder
	line := func(format string, a ...any) { fmt.Fprintf(&b, prefix+format+"\n", a...) }
	line("  [runners.custom]")
	for _, stage := range Stages {
		line("    %s_exec = %s", stage, tomlString(s.Exe))
		line("    %s_args = [%s, %s, %s]", stage, tomlString("--config"), tomlString(s.ConfigPath), tomlString(stage))
	}
	for _, t := range s.Timeouts {
		if t.Why == "" {
			line("    %s = %d", t.Key, t.Seconds)
		} else {
			line("    %s = %d  # %s", t.Key, t.Seconds, t.Why)
		}
	}
	return b.String()
}

// Registration is what `gitlab-runner register` is given besides the
// [runners.custom] settings.
type Registration struct {
	// URL and Token of the GitLab instance and the runner; a value
	// starting with $ is a shell variable, left for the shell to expand.
	URL, Token string
	// Name is the runner's name in config.toml (--description).
	Name string
	// Limit is the runner's limit: warmcache's limits.concurrent_jobs.
	Limit int
}

// RegisterCommand is the `gitlab-runner register` command, one flag a
// line, that writes the runner entry of r and s into gitlab-runner's
// config.toml. The flags are the runner's own (commands/register.go and
// CustomConfig's "long" tags, under the "custom" namespace); each stage's
// args are repeated flags, given with "=" because they start with "--".
func (s Settings) RegisterCommand(r Registration) string {
	flags := [][2]string{
		{"--url", r.URL}, {"--token", r.Token}, {"--description", r.Name},
		{"--executor", "custom"}, {"--limit", fmt.Sprint(r.Limit)},
	}
	for _, stage := range Stages {
		flags = append(flags, [2]string{"--custom-" + stage + "-exec", s.Exe})
		for _, arg := range []string{"--config", s.ConfigPath, stage} {
			flags = append(flags, [2]string{"--custom-" + stage + "-args=" + shellQuote(arg), ""})
		}
	}
	for _, t := range s.Timeouts {
		flags = append(flags, [2]string{"--custom-" + strings.ReplaceAll(t.Key, "_", "-"), fmt.Sprint(t.Seconds)})
	}
	var b strings.Builder
	b.WriteString("gitlab-runner register --non-interactive")
	for _, f := range flags {
		b.WriteString(" \\\n  " + f[0])
		if f[1] != "" {
			b.WriteString(" " + shellQuote(f[1]))
		}
	}
	return b.String() + "\n"
}

// Entry is the [[runners]] entry RegisterCommand writes, as config.toml.
func (s Settings) Entry(r Registration) string {
	var b strings.Builder
	b.WriteString("[[runners]]\n")
	fmt.Fprintf(&b, "  name = %s\n  url = %s\n  token = %s\n", tomlString(r.Name), tomlString(r.URL), tomlString(r.Token))
	fmt.Fprintf(&b, "  executor = \"custom\"\n  limit = %d\n", r.Limit)
	b.WriteString(s.Block(""))
	return b.String()
}

func seconds(d time.Duration) int { return int(d / time.Second) }

// tomlString is s as a TOML basic string.
func tomlString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`).Replace(s) + `"`
}

var (
	shellSafe = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)
	shellVar  = regexp.MustCompile(`^\$[A-Za-z_][A-Za-z0-9_]*$`)
)

// shellQuote is s as one shell word; "$NAME" stays a variable the shell
// expands.
func shellQuote(s string) string {
	switch {
	case shellVar.MatchString(s):
		return `"` + s + `"`
	case shellSafe.MatchString(s):
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
