package cache

import (
	"testing"

	"github.com/warmcache/warmcache/internal/cache/profile"
	"github.com/warmcache/warmcache/internal/config"
)

// The built-in profiles as the README documents them, spelled out here so a
// change to a definition (which changes where jobs find their caches) is a
// deliberate one.
var (
	wantCacheDir = Profile{Name: "cache-dir", Paths: []string{"/cache"}, ConcurrentSafe: true}
	wantGo       = Profile{Name: "go", Paths: []string{"/go/pkg/mod", "/root/.cache/go-build"},
		Env: map[string]string{"GOMODCACHE": "/go/pkg/mod", "GOCACHE": "/root/.cache/go-build"}, ConcurrentSafe: true}
	wantNpm = Profile{Name: "npm", Paths: []string{"/root/.npm"},
		Env: map[string]string{"npm_config_cache": "/root/.npm"}, ConcurrentSafe: true}
	wantPip = Profile{Name: "pip", Paths: []string{"/root/.cache/pip"},
		Env: map[string]string{"PIP_CACHE_DIR": "/root/.cache/pip"}, ConcurrentSafe: true}
	wantMaven = Profile{Name: "maven", Paths: []string{"/root/.m2/repository"},
		Env: map[string]string{"MAVEN_OPTS": "-Dmaven.repo.local=/root/.m2/repository"}, ConcurrentSafe: false}
	wantGradle = Profile{Name: "gradle", Paths: []string{"/root/.gradle/caches"},
		Env: map[string]string{"GRADLE_USER_HOME": "/root/.gradle"}, ConcurrentSafe: true}
	wantCargo = Profile{Name: "cargo", Paths: []string{"/usr/local/cargo/registry"},
		Env: map[string]string{"CARGO_HOME": "/usr/local/cargo"}, ConcurrentSafe: false}
)

// allProfiles resolves cache-dir and every built-in profile, in the order
// config.BuiltinProfiles lists them.
func allProfiles(t *testing.T) []Profile {
	t.Helper()
	ps, err := profile.Load(config.Cache{Enabled: true, Profiles: config.BuiltinProfiles})
	if err != nil {
		t.Fatalf("Profiles: %v", err)
	}
	return ps
}

var testKey = Key{Instance: "gitlab.example.com", ProjectID: 1001, ProjectPath: "group/project", Trust: Unprotected}
