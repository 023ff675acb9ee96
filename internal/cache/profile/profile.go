// Package profile says which directories of a job are cached, by
// ecosystem: the built-in profiles (go, npm, pip, maven, gradle, cargo, git
// and the runner's cache_dir) and the admin's own, where each is mounted
// for a root or non-root job, and the variables that point the tools at it.
package profile

import (
	"fmt"
	pathpkg "path"
	"regexp"
	"slices"
	"strings"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/protocol"
)

// Profile is a set of cache directories for one ecosystem.
type Profile struct {
	Name string
	// Paths are directories in the job container, one volume each.
	Paths []string
	// Env points the tools at Paths; it is set on the container, so a
	// variable from the job's YAML (exported by the script) still wins.
	Env map[string]string
	// ConcurrentSafe says concurrent jobs may share the volumes; if not,
	// each concurrency slot gets its own.
	ConcurrentSafe bool
	// ProjectSlot gives each of the project's concurrency slots
	// (CI_CONCURRENT_PROJECT_ID) its own volume, as the runner keeps one
	// build directory per slot of a project; commit layers and forks
	// never apply.
	ProjectSlot bool
	// ReadOnly mounts the volumes read-only: the job reads them, and only
	// warmcache writes them, once the job is done (the git object store).
	ReadOnly bool
}

// CacheDir is the runner's own cache_dir, where GitLab's `cache:`
// keyword keeps its archives; it gets the same isolation as tool caches.
var CacheDir = Profile{Name: "cache-dir", Paths: []string{protocol.CacheDir}, ConcurrentSafe: true}

// Git is the warm git checkout: the builds directory itself, kept
// for each project, trust class and project concurrency slot, so that
// GIT_STRATEGY=fetch fetches into the checkout an earlier job left. Only
// jobs whose strategy is fetch mount it (Manager.planned).
var Git = Profile{Name: "git", Paths: []string{protocol.BuildsDir}, ProjectSlot: true}

// GitStore is the object store the project's warm checkouts share, one
// per project and trust class: each checkout's objects/info/alternates
// names it, so a slot's first fetch asks only for what no slot of the
// project has had yet. Jobs read it; warmcache moves the objects a job's
// fetch added into it once the job is done (Manager.Measure). It comes
// with Git, and is mounted with it.
var GitStore = Profile{Name: Git.Name, Paths: []string{protocol.GitStoreDir}, ConcurrentSafe: true, ReadOnly: true}

// builtins are the profiles known by name. Go's caches and npm's cacache
// are built for concurrent use; Maven's local repository is not.
var builtins = map[string]Profile{
	"go": {Name: "go", Paths: []string{"/go/pkg/mod", "/root/.cache/go-build"},
		Env:            map[string]string{"GOMODCACHE": "/go/pkg/mod", "GOCACHE": "/root/.cache/go-build"},
		ConcurrentSafe: true},
	"npm": {Name: "npm", Paths: []string{"/root/.npm"},
		Env: map[string]string{"npm_config_cache": "/root/.npm"}, ConcurrentSafe: true},
	"pip": {Name: "pip", Paths: []string{"/root/.cache/pip"},
		Env: map[string]string{"PIP_CACHE_DIR": "/root/.cache/pip"}, ConcurrentSafe: true},
	"maven": {Name: "maven", Paths: []string{"/root/.m2/repository"},
		Env: map[string]string{"MAVEN_OPTS": "-Dmaven.repo.local=/root/.m2/repository"}, ConcurrentSafe: false},
	"gradle": {Name: "gradle", Paths: []string{"/root/.gradle/caches"},
		Env: map[string]string{"GRADLE_USER_HOME": "/root/.gradle"}, ConcurrentSafe: true},
	"cargo": {Name: "cargo", Paths: []string{"/usr/local/cargo/registry"},
		Env: map[string]string{"CARGO_HOME": "/usr/local/cargo"}, ConcurrentSafe: false},
	Git.Name: Git,
}

// Load resolves the enabled profile names of cfg, plus the cache_dir
// profile, or nothing when caches are off.
func Load(cfg config.Cache) ([]Profile, error) {
	if !cfg.Enabled {
		return nil, nil
	}
	out := []Profile{CacheDir}
	for _, name := range cfg.Profiles {
		if p, ok := builtins[name]; ok {
			out = append(out, p)
			if p.Name == Git.Name {
				out = append(out, GitStore)
			}
			continue
		}
		i := slices.IndexFunc(cfg.Custom, func(c config.CustomProfile) bool { return c.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("cache.profiles: unknown profile %q", name)
		}
		c := cfg.Custom[i]
		out = append(out, Profile{Name: c.Name, Paths: c.Paths, Env: c.Env, ConcurrentSafe: c.ConcurrentSafe})
	}
	if err := checkMounts(out); err != nil {
		return nil, err
	}
	return out, nil
}

// checkMounts refuses two volumes mounted at one path: Docker would refuse
// every job container ("duplicate mount point"), failing each prepare.
// Paths below /root move for jobs that do not run as root (Target), so the
// paths are checked for both kinds of job.
func checkMounts(profiles []Profile) error {
	for _, nonRoot := range []bool{false, true} {
		owners := map[string]string{}
		for _, p := range profiles {
			for _, path := range p.Paths {
				target := Target(pathpkg.Clean(path), nonRoot)
				owner, taken := owners[target]
				if !taken {
					owners[target] = p.Name
					continue
				}
				which := ""
				if nonRoot {
					which = " for jobs that do not run as root"
				}
				if owner == p.Name {
					return fmt.Errorf("cache.profiles: profile %q mounts %s twice%s", p.Name, target, which)
				}
				return fmt.Errorf("cache.profiles: profiles %q and %q both mount %s%s", owner, p.Name, target, which)
			}
		}
	}
	return nil
}

// relocatedRoot replaces /root in cache paths for jobs that run as another
// user: /root is usually mode 0700, so such a user could not reach a cache
// mounted below it. The volume stays the same, so root and non-root jobs
// of a project share their caches.
const relocatedRoot = "/var/cache/warmcache/root"

// rootPathRE finds paths under /root at the start of a value or after a
// separator (":" in lists, "=" in -Dkey=/root/..., spaces between flags).
var rootPathRE = regexp.MustCompile(`(^|[:=\s])/root/`)

// Target is where a cache path is mounted for a job.
func Target(path string, nonRoot bool) string {
	if rest, ok := strings.CutPrefix(path, "/root/"); ok && nonRoot {
		return relocatedRoot + "/" + rest
	}
	return path
}

// Env merges the environment of profiles in a stable order, pointing at
// the paths Target mounts.
func Env(profiles []Profile, nonRoot bool) []string {
	var env []string
	for _, p := range profiles {
		keys := make([]string, 0, len(p.Env))
		for k := range p.Env {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			v := p.Env[k]
			if nonRoot {
				v = rootPathRE.ReplaceAllString(v, "${1}"+relocatedRoot+"/")
			}
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Shared returns profiles with every one marked safe for concurrent
// writers: under commit-on-success, jobs never write the shared volume
// itself, only layers of their own, so one volume serves every concurrency
// slot.
func Shared(profiles []Profile) []Profile {
	out := make([]Profile, len(profiles))
	for i, p := range profiles {
		p.ConcurrentSafe = !p.ProjectSlot // a checkout is never layered
		out[i] = p
	}
	return out
}
