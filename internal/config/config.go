// Package config loads and validates warmcache's TOML configuration.
//
// The file is owned by the runner admin. Key names are a compatibility
// promise: once released, a key keeps its name and meaning.
package config

import (
	"errors"
	"fmt"
	"os"
	pathpkg "path"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/warmcache/warmcache/internal/limits"
	"github.com/warmcache/warmcache/internal/protocol"
)

// DefaultPath is read when neither --config nor $WARMCACHE_CONFIG names a
// file. Unlike an explicitly named file, it may be absent.
const DefaultPath = "/etc/warmcache/config.toml"

// EnvVar names the environment variable that points at the config file.
const EnvVar = "WARMCACHE_CONFIG"

// Pull policies, as the Docker executor spells them.
const (
	PullAlways       = "always"
	PullIfNotPresent = "if-not-present"
	PullNever        = "never"
)

// Config is the whole admin configuration.
type Config struct {
	Docker Docker `toml:"docker"`
	Cache  Cache  `toml:"cache"`
	Reap   Reap   `toml:"reap"`
	Log    Log    `toml:"log"`

	Services Services `toml:"services"`
	Env      Env      `toml:"env"`
	// Limits are the jobs' CPU, memory and pids limits; package limits
	// owns its keys and their checks.
	Limits limits.Config `toml:"limits"`
}

// Services configures the containers of a job's `services:`.
type Services struct {
	// WaitTimeout bounds the wait for each service's exposed ports to
	// open; the job goes on either way. 0 skips the wait.
	WaitTimeout time.Duration `toml:"wait_timeout"`
	// MaxPerJob caps how many services one job may start; a job asking
	// for more fails before anything starts.
	MaxPerJob int `toml:"max_per_job"`
}

// maxServicesLimit bounds services.max_per_job: each service is a
// container started at every prepare.
const maxServicesLimit = 50

// Reap configures the removal of resources of jobs that ended without
// cleanup (runner crash, host reboot).
type Reap struct {
	// Grace is added to a job's timeout before its resources count as
	// abandoned.
	Grace time.Duration `toml:"grace"`
	// AtPrepare runs a short, bounded pass at every prepare, so that no
	// cron job is needed for correctness.
	AtPrepare bool `toml:"at_prepare"`
}

// Cache selects the persistent cache profiles every job gets.
type Cache struct {
	// Enabled switches persistent caches (and the persistent cache_dir) on.
	Enabled bool `toml:"enabled"`
	// Profiles names the profiles to mount: built-in ones (go, npm, pip,
	// maven, gradle, cargo; git, the warm checkout at builds_dir) or ones
	// defined under [[cache.custom]].
	Profiles []string `toml:"profiles"`
	// Custom defines the admin's own profiles.
	Custom []CustomProfile `toml:"custom"`
	// Pool names the group of caches this runner shares (see gc.go).
	Pool string `toml:"pool"`
	// StateDir keeps warmcache's own record of each cache volume (last
	// use, size, claims), out of the jobs' reach.
	StateDir string `toml:"state_dir"`
	// Fork is what an unprotected job of a project whose protected cache
	// exists starts from: "off" (its own cache), "keep" or "discard" (a
	// copy-on-write fork of the protected cache, its layer of writes kept
	// as the project's unprotected cache or discarded).
	Fork string `toml:"fork"`
	// CommitOnSuccess gives profiles that are unsafe with concurrent
	// writers one shared volume, which each job sees through a layer of
	// its own that is applied to it only when the job's steps succeeded.
	CommitOnSuccess bool `toml:"commit_on_success"`
	// MetricsFile is a Prometheus textfile every job updates; empty: none.
	MetricsFile string `toml:"metrics_file"`
	// GC bounds the disk the caches use.
	GC CacheGC `toml:"gc"`
	CacheMetrics
	CacheQuota
	Remote CacheRemote `toml:"remote"`
}

// CustomProfile is an admin-defined cache profile.
type CustomProfile struct {
	Name string `toml:"name"`
	// Paths are absolute directories in the job container, one volume each.
	Paths []string `toml:"paths"`
	// Env is set on the job containers (job variables still win).
	Env map[string]string `toml:"env"`
	// ConcurrentSafe says the tools tolerate concurrent writers; if false,
	// each concurrency slot gets its own volume.
	ConcurrentSafe bool `toml:"concurrent_safe"`
}

// Docker holds the engine connection and job-container settings.
type Docker struct {
	// Host is the Docker Engine API address.
	Host string `toml:"host"`
	// DefaultImage is used when the job names no image.
	DefaultImage string `toml:"default_image"`
	// HelperImage runs git and cache/artifact stages; empty selects the
	// official helper image for the runner's version.
	HelperImage string `toml:"helper_image"`
	// PullPolicy is tried in order when the job sets none.
	PullPolicy []string `toml:"pull_policy"`
	// AllowedPullPolicies limits what a job may ask for.
	AllowedPullPolicies []string `toml:"allowed_pull_policies"`
	// NetworkMode, when set, is passed to every job container as is
	// ("host", "bridge", "none" or a network name).
	NetworkMode string `toml:"network_mode"`
	// NetworkPerJob gives each job a network made at its prepare and
	// removed at its cleanup, instead of the network of its runner slot,
	// which the slot's successive jobs reuse (see package services).
	NetworkPerJob bool `toml:"network_per_job"`
	// PullAttempts bounds retries of a failing image pull.
	PullAttempts int `toml:"pull_attempts"`
	// CleanupTimeout bounds the cleanup stage.
	CleanupTimeout time.Duration `toml:"cleanup_timeout"`
	// StageAgent runs the stage scripts through an agent (this binary,
	// mounted read-only as each job container's main process) instead of
	// a docker exec per stage; only with a local engine.
	StageAgent bool `toml:"stage_agent"`
	// Registries are logins the admin provides for private job images.
	Registries []Registry `toml:"registry"`
	// Rules: allowed images, services and users, admin services (rules.go).
	Rules
	EngineTLS
	// ContainerOptions are the runner's container and network options
	// (privileged, volumes, cap_add, dns, ...), keys of [docker] itself.
	ContainerOptions
}

// Registry is one registry login. The password lives in a file so that no
// secret sits in the TOML; the file is read at each prepare.
type Registry struct {
	Host         string `toml:"host"`
	Username     string `toml:"username"`
	PasswordFile string `toml:"password_file"`
}

// Log configures the structured log; the job log is always stderr and
// never gets structured lines.
type Log struct {
	// File is appended to by every process. The default, DefaultLogFile,
	// is used only when it can be opened (the package makes its
	// directory); otherwise, and with File "", the admin commands (reap,
	// cache gc, doctor...) log to their stderr and the job stages nowhere.
	// A file the config names must open, or the command fails.
	File  string `toml:"file"`
	Level string `toml:"level"`
	// FileInFile says the config file sets log.file. Not a key.
	FileInFile bool `toml:"-"`
}

// DefaultLogFile is log.file's default; its directory is the package's.
const DefaultLogFile = "/var/log/warmcache/warmcache.log"

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		Docker: Docker{
			Host:                "unix:///var/run/docker.sock",
			DefaultImage:        "debian:bookworm",
			PullPolicy:          []string{PullIfNotPresent},
			AllowedPullPolicies: []string{PullAlways, PullIfNotPresent, PullNever},
			PullAttempts:        3,
			CleanupTimeout:      5 * time.Minute,
			StageAgent:          true,
		},
		Cache:  Cache{Enabled: true, Profiles: []string{"go"}, StateDir: "/var/lib/warmcache", Fork: "off", GC: CacheGC{AtStages: true}, Remote: defaultRemote()},
		Reap:   Reap{Grace: time.Hour, AtPrepare: true},
		Log:    Log{File: DefaultLogFile, Level: "info"},
		Limits: limits.Default(),

		Services: Services{WaitTimeout: 30 * time.Second, MaxPerJob: 10},
		Env:      Env{JobToken: true},
	}
}

// Resolve picks the config file: the flag value, else $WARMCACHE_CONFIG,
// else DefaultPath. optional reports whether the file may be missing.
func Resolve(flag string, getenv func(string) string) (path string, optional bool) {
	if flag != "" {
		return flag, false
	}
	if p := getenv(EnvVar); p != "" {
		return p, false
	}
	return DefaultPath, true
}

// Load reads the file at path over the defaults. A missing file is an
// error unless optional is set, in which case the defaults are returned.
func Load(path string, optional bool) (Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && optional {
		return Default(), nil
	}
	if err != nil {
		return Config{}, fmt.Errorf("reading config: %w", err)
	}
	cfg, err := Parse(string(data))
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes TOML text over the defaults and validates the result,
// reporting every problem at once in a single line.
func Parse(text string) (Config, error) {
	var raw map[string]any
	if _, err := toml.Decode(text, &raw); err != nil {
		return Config{}, oneLine(err)
	}
	// Numbers without a unit first: the decoder would take 720 as 720ns,
	// or stop at the first one it cannot take (1.5 for a duration).
	problems := unitProblems(raw)
	cfg := Default()
	md, err := toml.Decode(text, &cfg)
	if len(problems) > 0 {
		return Config{}, errors.New(strings.Join(problems, "; "))
	}
	if err != nil {
		return Config{}, oneLine(err)
	}
	for _, k := range md.Undecoded() {
		problems = append(problems, fmt.Sprintf("unknown key %s", k))
	}
	cfg.Docker.HostInFile = md.IsDefined("docker", "host")
	cfg.Log.FileInFile = md.IsDefined("log", "file")
	problems = append(problems, cfg.validate()...)
	if len(problems) > 0 {
		return Config{}, errors.New(strings.Join(problems, "; "))
	}
	return cfg, nil
}

func (c Config) validate() []string {
	var p []string
	d := c.Docker
	if problem := hostProblem("docker.host", d.Host); problem != "" {
		p = append(p, problem)
	}
	p = append(p, d.EngineTLS.validate()...)
	if strings.TrimSpace(d.DefaultImage) == "" {
		p = append(p, "docker.default_image: must not be empty")
	}
	policyProblems := append(validPolicies("docker.pull_policy", d.PullPolicy),
		validPolicies("docker.allowed_pull_policies", d.AllowedPullPolicies)...)
	p = append(p, policyProblems...)
	if len(policyProblems) == 0 && len(Intersect(d.PullPolicy, d.AllowedPullPolicies)) == 0 {
		p = append(p, fmt.Sprintf("docker.pull_policy: none of %v is in docker.allowed_pull_policies %v", d.PullPolicy, d.AllowedPullPolicies))
	}
	if d.PullAttempts < 1 || d.PullAttempts > 10 {
		p = append(p, fmt.Sprintf("docker.pull_attempts: %d is out of range 1..10", d.PullAttempts))
	}
	if d.CleanupTimeout < time.Second {
		p = append(p, fmt.Sprintf("docker.cleanup_timeout: %s is too short (at least 1s, e.g. \"5m\")", d.CleanupTimeout))
	}
	for i, r := range d.Registries {
		key := fmt.Sprintf("docker.registry[%d]", i)
		if r.Host == "" || strings.ContainsAny(r.Host, "/ ") {
			p = append(p, fmt.Sprintf("%s.host: %q must be a registry host such as registry.example.com:5000", key, r.Host))
		}
		if r.Username == "" {
			p = append(p, key+".username: must not be empty")
		}
		if r.PasswordFile == "" {
			p = append(p, key+".password_file: must name a file holding the password")
		}
	}
	p = append(p, d.Rules.validate()...)
	p = append(p, c.validateOptions()...)
	p = append(p, c.Cache.validate()...)
	if c.Services.WaitTimeout < 0 || c.Services.WaitTimeout > time.Hour {
		p = append(p, fmt.Sprintf("services.wait_timeout: %s is out of range 0s..1h (0s skips the wait)", c.Services.WaitTimeout))
	}
	if c.Services.MaxPerJob < 0 || c.Services.MaxPerJob > maxServicesLimit {
		p = append(p, fmt.Sprintf("services.max_per_job: %d is out of range 0..%d", c.Services.MaxPerJob, maxServicesLimit))
	}
	p = append(p, c.Env.validate()...)
	p = append(p, c.Limits.Problems()...)
	// A job past its timeout may still run after_script and cleanup.
	if c.Reap.Grace < 15*time.Minute {
		p = append(p, fmt.Sprintf("reap.grace: %s is too short (at least 15m, e.g. \"1h\")", c.Reap.Grace))
	}
	if c.Log.File != "" && !strings.HasPrefix(c.Log.File, "/") {
		p = append(p, fmt.Sprintf("log.file: %q must be an absolute path (\"\" for none)", c.Log.File))
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p = append(p, fmt.Sprintf("log.level: %q is not one of debug, info, warn, error", c.Log.Level))
	}
	return p
}

func validPolicies(key string, list []string) []string {
	var p []string
	if len(list) == 0 {
		p = append(p, key+": must list at least one of always, if-not-present, never")
	}
	for i, v := range list {
		if !IsPullPolicy(v) {
			p = append(p, fmt.Sprintf("%s[%d]: %q is not one of always, if-not-present, never", key, i, v))
		}
	}
	return p
}

// IsPullPolicy reports whether s names a pull policy.
func IsPullPolicy(s string) bool {
	return s == PullAlways || s == PullIfNotPresent || s == PullNever
}

// Intersect keeps the entries of want that allowed contains, in want's order.
func Intersect(want, allowed []string) []string {
	var out []string
	for _, w := range want {
		if slices.Contains(allowed, w) && !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// oneLine flattens a TOML syntax error (which may carry a multi-line
// excerpt of the file) into the one line a job log can show.
func oneLine(err error) error {
	var perr toml.ParseError
	if errors.As(err, &perr) {
		if perr.LastKey != "" {
			return fmt.Errorf("line %d, key %s: %s", perr.Position.Line, perr.LastKey, perr.Message)
		}
		return fmt.Errorf("line %d: %s", perr.Position.Line, perr.Message)
	}
	return errors.New(strings.Join(strings.Fields(err.Error()), " "))
}

// BuiltinProfiles are the cache profiles warmcache knows by name; their
// definitions live in package cache.
var BuiltinProfiles = []string{"go", "npm", "pip", "maven", "gradle", "cargo", "git"}

// reservedPaths cannot hold a cache: the job's own directories.
var reservedPaths = []string{"/", protocol.BuildsDir, protocol.CacheDir, "/proc", "/sys", "/dev", "/etc", "/tmp"}

func (c Cache) validate() []string {
	var p []string
	custom := map[string]bool{}
	for i, cp := range c.Custom {
		key := fmt.Sprintf("cache.custom[%d]", i)
		switch {
		case !validProfileName(cp.Name):
			p = append(p, fmt.Sprintf("%s.name: %q must be 1-20 characters of a-z, 0-9 and -, starting with a letter", key, cp.Name))
		case slices.Contains(BuiltinProfiles, cp.Name) || custom[cp.Name]:
			p = append(p, fmt.Sprintf("%s.name: %q is already defined", key, cp.Name))
		}
		custom[cp.Name] = true
		if len(cp.Paths) == 0 {
			p = append(p, key+".paths: must list at least one absolute directory")
		}
		for j, path := range cp.Paths {
			if !strings.HasPrefix(path, "/") || strings.Contains(path, "..") || slices.Contains(reservedPaths, pathpkg.Clean(path)) {
				p = append(p, fmt.Sprintf("%s.paths[%d]: %q must be an absolute directory other than %v", key, j, path, reservedPaths))
			}
		}
		for k := range cp.Env {
			if !validEnvName(k) {
				p = append(p, fmt.Sprintf("%s.env: %q is not a valid variable name", key, k))
			}
		}
	}
	p = append(p, c.validateGC()...)
	p = append(p, c.CacheQuota.validate()...)
	p = append(p, c.Remote.validate()...)
	for i, name := range c.Profiles {
		if slices.Index(c.Profiles, name) < i {
			p = append(p, fmt.Sprintf("cache.profiles[%d]: %q is listed twice", i, name))
			continue
		}
		if !slices.Contains(BuiltinProfiles, name) && !custom[name] {
			p = append(p, fmt.Sprintf("cache.profiles[%d]: unknown profile %q (built in: %s; or define it under [[cache.custom]])", i, name, strings.Join(BuiltinProfiles, ", ")))
		}
	}
	return p
}

func validProfileName(s string) bool {
	if len(s) == 0 || len(s) > 20 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func validEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}
