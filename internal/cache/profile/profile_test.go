package profile

import (
	"reflect"
	"slices"
	"strings"
	"testing"

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
	ps, err := Load(config.Cache{Enabled: true, Profiles: config.BuiltinProfiles})
	if err != nil {
		t.Fatalf("Profiles: %v", err)
	}
	return ps
}

func TestProfiles(t *testing.T) {
	ccache := config.CustomProfile{Name: "ccache", Paths: []string{"/ccache", "/root/.ccache"},
		Env: map[string]string{"CCACHE_DIR": "/ccache"}, ConcurrentSafe: true}
	sbt := config.CustomProfile{Name: "sbt", Paths: []string{"/root/.ivy2"}}
	tests := []struct {
		name    string
		cfg     config.Cache
		want    []Profile
		wantErr string
	}{
		{name: "disabled", cfg: config.Cache{Enabled: false, Profiles: []string{"go", "npm"}}, want: nil},
		{name: "disabled with an unknown profile", cfg: config.Cache{Profiles: []string{"nope"}}, want: nil},
		{name: "default config", cfg: config.Default().Cache, want: []Profile{wantCacheDir, wantGo}},
		{name: "enabled without profiles", cfg: config.Cache{Enabled: true}, want: []Profile{wantCacheDir}},
		{
			name: "every built-in, in the order asked",
			cfg:  config.Cache{Enabled: true, Profiles: []string{"cargo", "maven", "npm", "pip", "gradle", "go"}},
			want: []Profile{wantCacheDir, wantCargo, wantMaven, wantNpm, wantPip, wantGradle, wantGo},
		},
		{
			name: "custom profiles beside built-ins",
			cfg: config.Cache{Enabled: true, Profiles: []string{"sbt", "go", "ccache"},
				Custom: []config.CustomProfile{ccache, sbt}},
			want: []Profile{wantCacheDir,
				{Name: "sbt", Paths: []string{"/root/.ivy2"}},
				wantGo,
				{Name: "ccache", Paths: []string{"/ccache", "/root/.ccache"},
					Env: map[string]string{"CCACHE_DIR": "/ccache"}, ConcurrentSafe: true}},
		},
		{
			name: "a custom profile not asked for is not mounted",
			cfg:  config.Cache{Enabled: true, Profiles: []string{"go"}, Custom: []config.CustomProfile{ccache}},
			want: []Profile{wantCacheDir, wantGo},
		},
		{
			name:    "unknown name",
			cfg:     config.Cache{Enabled: true, Profiles: []string{"go", "nope"}},
			wantErr: `cache.profiles: unknown profile "nope"`,
		},
		{
			name:    "names are case-sensitive",
			cfg:     config.Cache{Enabled: true, Profiles: []string{"Go"}},
			wantErr: `cache.profiles: unknown profile "Go"`,
		},
		{
			name:    "cache-dir is not a profile one can ask for",
			cfg:     config.Cache{Enabled: true, Profiles: []string{"cache-dir"}},
			wantErr: `cache.profiles: unknown profile "cache-dir"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("Profiles error = %v, want %q", err, tt.wantErr)
				}
				if got != nil {
					t.Errorf("Profiles = %+v with an error, want nil", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Profiles: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Profiles =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// TestBuiltinsMatchConfig checks that every name config accepts as built in
// resolves here to a profile of that name, and in that order.
func TestBuiltinsMatchConfig(t *testing.T) {
	ps := allProfiles(t)
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
	}
	// git brings its object store, a second profile of the name.
	want := append(append([]string{"cache-dir"}, config.BuiltinProfiles...), "git")
	if !slices.Equal(names, want) {
		t.Errorf("profile names = %q, want %q", names, want)
	}
}

func TestTarget(t *testing.T) {
	tests := []struct {
		path    string
		nonRoot bool
		want    string
	}{
		{"/root/.npm", false, "/root/.npm"},
		{"/root/.npm", true, "/var/cache/warmcache/root/.npm"},
		{"/root/.cache/go-build", false, "/root/.cache/go-build"},
		{"/root/.cache/go-build", true, "/var/cache/warmcache/root/.cache/go-build"},
		{"/root/.m2/repository", true, "/var/cache/warmcache/root/.m2/repository"},
		{"/go/pkg/mod", false, "/go/pkg/mod"},
		{"/go/pkg/mod", true, "/go/pkg/mod"},
		{"/cache", true, "/cache"},
		{"/usr/local/cargo/registry", true, "/usr/local/cargo/registry"},
		// Only paths below /root move: not /root itself, not look-alikes.
		{"/root", true, "/root"},
		{"/rootfs/cache", true, "/rootfs/cache"},
		{"/opt/root/cache", true, "/opt/root/cache"},
		{"/home/root/.npm", true, "/home/root/.npm"},
	}
	for _, tt := range tests {
		if got := Target(tt.path, tt.nonRoot); got != tt.want {
			t.Errorf("Target(%q, %v) = %q, want %q", tt.path, tt.nonRoot, got, tt.want)
		}
	}
}

func TestEnv(t *testing.T) {
	custom := Profile{Name: "custom", Env: map[string]string{
		"ZED": "/root/z", "ALPHA": "/a", "MID": "/root", "LIST": "/root/one:/root/two",
	}}
	tests := []struct {
		name     string
		profiles []Profile
		nonRoot  bool
		want     []string
	}{
		{name: "no profiles", profiles: nil, want: nil},
		{name: "cache-dir sets nothing", profiles: []Profile{wantCacheDir}, nonRoot: true, want: nil},
		{
			name:     "default profiles as root",
			profiles: []Profile{wantCacheDir, wantGo},
			want:     []string{"GOCACHE=/root/.cache/go-build", "GOMODCACHE=/go/pkg/mod"},
		},
		{
			name:     "default profiles as non-root",
			profiles: []Profile{wantCacheDir, wantGo}, nonRoot: true,
			want: []string{"GOCACHE=/var/cache/warmcache/root/.cache/go-build", "GOMODCACHE=/go/pkg/mod"},
		},
		{
			name:     "every built-in as root",
			profiles: []Profile{wantCacheDir, wantGo, wantNpm, wantPip, wantMaven, wantGradle, wantCargo},
			want: []string{
				"GOCACHE=/root/.cache/go-build", "GOMODCACHE=/go/pkg/mod",
				"npm_config_cache=/root/.npm",
				"PIP_CACHE_DIR=/root/.cache/pip",
				"MAVEN_OPTS=-Dmaven.repo.local=/root/.m2/repository",
				"GRADLE_USER_HOME=/root/.gradle",
				"CARGO_HOME=/usr/local/cargo",
			},
		},
		{
			name:     "every built-in as non-root",
			profiles: []Profile{wantCacheDir, wantGo, wantNpm, wantPip, wantMaven, wantGradle, wantCargo}, nonRoot: true,
			want: []string{
				"GOCACHE=/var/cache/warmcache/root/.cache/go-build", "GOMODCACHE=/go/pkg/mod",
				"npm_config_cache=/var/cache/warmcache/root/.npm",
				"PIP_CACHE_DIR=/var/cache/warmcache/root/.cache/pip",
				"MAVEN_OPTS=-Dmaven.repo.local=/var/cache/warmcache/root/.m2/repository",
				"GRADLE_USER_HOME=/var/cache/warmcache/root/.gradle",
				"CARGO_HOME=/usr/local/cargo",
			},
		},
		{
			name:     "sorted within a profile, as root",
			profiles: []Profile{custom},
			want:     []string{"ALPHA=/a", "LIST=/root/one:/root/two", "MID=/root", "ZED=/root/z"},
		},
		{
			name:     "sorted within a profile, as non-root",
			profiles: []Profile{custom}, nonRoot: true,
			want: []string{"ALPHA=/a", "LIST=/var/cache/warmcache/root/one:/var/cache/warmcache/root/two",
				"MID=/root", "ZED=/var/cache/warmcache/root/z"},
		},
		{
			name: "profiles keep their order",
			profiles: []Profile{
				{Name: "b", Env: map[string]string{"B2": "2", "B1": "1"}},
				{Name: "a", Env: map[string]string{"A2": "2", "A1": "1"}},
			},
			want: []string{"B1=1", "B2=2", "A1=1", "A2=2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Env(tt.profiles, tt.nonRoot)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Env =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// TestEnvPointsAtTargets checks that wherever a built-in profile's variable
// names one of its cache paths, the variable and the mount agree, for root
// and non-root jobs.
func TestEnvPointsAtTargets(t *testing.T) {
	for _, p := range allProfiles(t) {
		for _, nonRoot := range []bool{false, true} {
			env := Env([]Profile{p}, nonRoot)
			for _, path := range p.Paths {
				for k, v := range p.Env {
					if v != path {
						continue
					}
					want := k + "=" + Target(path, nonRoot)
					if !slices.Contains(env, want) {
						t.Errorf("profile %s, nonRoot %v: Env = %q lacks %q", p.Name, nonRoot, env, want)
					}
				}
			}
			// No variable of a non-root job may still point below /root.
			for _, kv := range env {
				if nonRoot && strings.Contains(kv, "=/root/") {
					t.Errorf("profile %s: non-root Env has %q", p.Name, kv)
				}
			}
		}
	}
}

// TestProfilesRejectSharedPaths: Docker refuses a container with two mounts
// at one path, so such a configuration would fail every job's prepare.
func TestProfilesRejectSharedPaths(t *testing.T) {
	custom := func(name string, paths ...string) config.CustomProfile {
		return config.CustomProfile{Name: name, Paths: paths}
	}
	tests := []struct {
		name    string
		cfg     config.Cache
		wantErr string
	}{
		{
			name: "a custom profile on a built-in's path",
			cfg: config.Cache{Enabled: true, Profiles: []string{"go", "gomod"},
				Custom: []config.CustomProfile{custom("gomod", "/go/pkg/mod")}},
			wantErr: `cache.profiles: profiles "go" and "gomod" both mount /go/pkg/mod`,
		},
		{
			name: "the same path spelled differently",
			cfg: config.Cache{Enabled: true, Profiles: []string{"gomod", "go"},
				Custom: []config.CustomProfile{custom("gomod", "/go/pkg/mod/")}},
			wantErr: `cache.profiles: profiles "gomod" and "go" both mount /go/pkg/mod`,
		},
		{
			name: "two custom profiles",
			cfg: config.Cache{Enabled: true, Profiles: []string{"one", "two"},
				Custom: []config.CustomProfile{custom("one", "/a", "/srv/x"), custom("two", "/b", "/srv/./x")}},
			wantErr: `cache.profiles: profiles "one" and "two" both mount /srv/x`,
		},
		{
			name:    "a custom profile on cache_dir",
			cfg:     config.Cache{Enabled: true, Profiles: []string{"c"}, Custom: []config.CustomProfile{custom("c", "/cache")}},
			wantErr: `cache.profiles: profiles "cache-dir" and "c" both mount /cache`,
		},
		{
			name:    "one profile, one path twice",
			cfg:     config.Cache{Enabled: true, Profiles: []string{"c"}, Custom: []config.CustomProfile{custom("c", "/x", "/x/")}},
			wantErr: `cache.profiles: profile "c" mounts /x twice`,
		},
		{
			name: "only where /root is relocated",
			cfg: config.Cache{Enabled: true, Profiles: []string{"npm", "relo"},
				Custom: []config.CustomProfile{custom("relo", "/var/cache/warmcache/root/.npm")}},
			wantErr: `cache.profiles: profiles "npm" and "relo" both mount /var/cache/warmcache/root/.npm for jobs that do not run as root`,
		},
		{
			name: "nested paths are fine",
			cfg: config.Cache{Enabled: true, Profiles: []string{"go", "gopkg"},
				Custom: []config.CustomProfile{custom("gopkg", "/go/pkg")}},
		},
		{
			name:    "a profile disabled does not count",
			cfg:     config.Cache{Enabled: true, Profiles: []string{"go"}, Custom: []config.CustomProfile{custom("gomod", "/go/pkg/mod")}},
			wantErr: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Load(tt.cfg)
			if tt.wantErr == "" {
				if err != nil || len(got) == 0 {
					t.Errorf("Profiles = %+v, %v; want profiles", got, err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("Profiles error = %v, want %q", err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("Profiles = %+v with an error, want nil", got)
			}
		})
	}
}

func TestEnvRewritesOnlyRootPaths(t *testing.T) {
	p := Profile{Env: map[string]string{
		"A": "/opt/root/cache",
		"B": "/root/x:/srv/root/y:/root/z",
		"C": "-Dk=/root/m2 -Dother=/home/root/q",
	}}
	got := strings.Join(Env([]Profile{p}, true), "\n")
	want := "A=/opt/root/cache\n" +
		"B=/var/cache/warmcache/root/x:/srv/root/y:/var/cache/warmcache/root/z\n" +
		"C=-Dk=/var/cache/warmcache/root/m2 -Dother=/home/root/q"
	if got != want {
		t.Errorf("Env:\n got %q\nwant %q", got, want)
	}
}
