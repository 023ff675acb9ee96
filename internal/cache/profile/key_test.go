package profile

import (
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
)

var update = flag.Bool("update", false, "rewrite testdata/plan.golden")

// responseFixture is the job response a real gitlab-runner 19.4 wrote for
// the sample job (a copy of the runner samples).
const responseFixture = "testdata/job_response.json"

// sampleKey is the key of the unmodified fixture.
var sampleKey = Key{Instance: "127.0.0.1:42891", ProjectID: 1001, ProjectPath: "group/project", Trust: Unprotected}

func TestKeyFor(t *testing.T) {
	tests := []struct {
		name string
		job  job.Job
		want Key
	}{
		{
			name: "host and port from repo_url, credentials stripped, lower-cased",
			job: job.Job{ProjectID: 1001, ProjectPath: "group/project", ServerHost: "ignored.example.com",
				RepoURL: "https://gitlab-ci-token:glcbt-SECRET@GitLab.Example.COM:8443/group/project.git"},
			want: Key{Instance: "gitlab.example.com:8443", ProjectID: 1001, ProjectPath: "group/project", Trust: Unprotected},
		},
		{
			name: "no port in repo_url",
			job:  job.Job{ProjectID: 7, RepoURL: "http://gitlab.example.com/g/p.git", ServerHost: "other"},
			want: Key{Instance: "gitlab.example.com", ProjectID: 7, Trust: Unprotected},
		},
		{
			name: "user without password",
			job:  job.Job{ProjectID: 7, RepoURL: "https://oauth2@gitlab.example.com/g/p.git"},
			want: Key{Instance: "gitlab.example.com", ProjectID: 7, Trust: Unprotected},
		},
		{
			name: "IPv6 host",
			job:  job.Job{ProjectID: 7, RepoURL: "https://u:p@[2001:DB8::1]:8443/g/p.git"},
			want: Key{Instance: "[2001:db8::1]:8443", ProjectID: 7, Trust: Unprotected},
		},
		{
			name: "empty repo_url falls back to CI_SERVER_HOST, lower-cased",
			job:  job.Job{ProjectID: 7, ServerHost: "GitLab.Example.com"},
			want: Key{Instance: "gitlab.example.com", ProjectID: 7, Trust: Unprotected},
		},
		{
			name: "scp-like repo_url is invalid",
			job:  job.Job{ProjectID: 7, RepoURL: "git@evil.example.com:g/p.git", ServerHost: "gitlab.example.com"},
			want: Key{Instance: "gitlab.example.com", ProjectID: 7, Trust: Unprotected},
		},
		{
			name: "repo_url without a scheme has no host",
			job:  job.Job{ProjectID: 7, RepoURL: "evil.example.com/g/p.git", ServerHost: "gitlab.example.com"},
			want: Key{Instance: "gitlab.example.com", ProjectID: 7, Trust: Unprotected},
		},
		{
			name: "repo_url with a bad escape is invalid",
			job:  job.Job{ProjectID: 7, RepoURL: "https://evil.example.com/%zz", ServerHost: "gitlab.example.com"},
			want: Key{Instance: "gitlab.example.com", ProjectID: 7, Trust: Unprotected},
		},
		{
			name: "nothing to go on",
			job:  job.Job{ProjectID: 7},
			want: Key{Instance: "", ProjectID: 7, Trust: Unprotected},
		},
		{
			name: "protected",
			job:  job.Job{ProjectID: 7, RepoURL: "https://gitlab.example.com/g/p.git", Protected: true},
			want: Key{Instance: "gitlab.example.com", ProjectID: 7, Trust: Protected},
		},
		{
			name: "slot from the concurrency id",
			job:  job.Job{ProjectID: 7, RepoURL: "https://gitlab.example.com/g/p.git", ConcurrentID: 3},
			want: Key{Instance: "gitlab.example.com", ProjectID: 7, Trust: Unprotected, Slot: 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := KeyFor(tt.job); got != tt.want {
				t.Errorf("KeyFor = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// response returns the fixture as generic JSON, for a test to change.
func response(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(responseFixture)
	if err != nil {
		t.Fatal(err)
	}
	var r map[string]any
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func encode(t *testing.T, r map[string]any) []byte {
	t.Helper()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// setVariable sets the value of the job variable key in a response.
func setVariable(t *testing.T, r map[string]any, key, value string) {
	t.Helper()
	for _, v := range r["variables"].([]any) {
		if v := v.(map[string]any); v["key"] == key {
			v["value"] = value
			return
		}
	}
	t.Fatalf("response has no variable %s", key)
}

func TestKeyForResponse(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, r map[string]any)
		want   Key
	}{
		{name: "runner sample", change: func(*testing.T, map[string]any) {}, want: sampleKey},
		{
			name:   "protected ref",
			change: func(_ *testing.T, r map[string]any) { r["git_info"].(map[string]any)["protected"] = true },
			want:   Key{Instance: "127.0.0.1:42891", ProjectID: 1001, ProjectPath: "group/project", Trust: Protected},
		},
		{
			name: "protected is null: the payload's own CI_COMMIT_REF_PROTECTED decides",
			change: func(t *testing.T, r map[string]any) {
				r["git_info"].(map[string]any)["protected"] = nil
				setVariable(t, r, "CI_COMMIT_REF_PROTECTED", "true")
			},
			want: Key{Instance: "127.0.0.1:42891", ProjectID: 1001, ProjectPath: "group/project", Trust: Protected},
		},
		{
			name: "protected false wins over the variable",
			change: func(t *testing.T, r map[string]any) {
				setVariable(t, r, "CI_COMMIT_REF_PROTECTED", "true")
			},
			want: sampleKey,
		},
		{
			name: "other project",
			change: func(_ *testing.T, r map[string]any) {
				info := r["job_info"].(map[string]any)
				info["project_id"], info["project_full_path"] = 2002, "other/thing"
			},
			want: Key{Instance: "127.0.0.1:42891", ProjectID: 2002, ProjectPath: "other/thing", Trust: Unprotected},
		},
		{
			name: "other instance",
			change: func(_ *testing.T, r map[string]any) {
				r["git_info"].(map[string]any)["repo_url"] = "https://gitlab-ci-token:x@GitLab.Example.com/group/project.git"
			},
			want: Key{Instance: "gitlab.example.com", ProjectID: 1001, ProjectPath: "group/project", Trust: Unprotected},
		},
		{
			name: "no repo_url: CI_SERVER_HOST of the payload",
			change: func(t *testing.T, r map[string]any) {
				r["git_info"].(map[string]any)["repo_url"] = ""
				setVariable(t, r, "CI_SERVER_HOST", "GitLab.Example.com")
			},
			want: Key{Instance: "gitlab.example.com", ProjectID: 1001, ProjectPath: "group/project", Trust: Unprotected},
		},
		{
			name: "no repo_url in the sample",
			change: func(_ *testing.T, r map[string]any) {
				delete(r["git_info"].(map[string]any), "repo_url")
			},
			want: Key{Instance: "127.0.0.1", ProjectID: 1001, ProjectPath: "group/project", Trust: Unprotected},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := response(t)
			tt.change(t, r)
			j, err := job.Parse(encode(t, r))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := KeyFor(j); got != tt.want {
				t.Errorf("KeyFor = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestKeyIgnoresCustomEnv loads the job as the stages do and gives every
// CUSTOM_ENV_ variable that could name another project, instance or trust
// class a hostile value: a job's YAML can set those, so the key must not
// follow them. Only the concurrency slot comes from there.
func TestKeyIgnoresCustomEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "response.json")
	if err := os.WriteFile(path, encode(t, response(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	hostile := map[string]string{
		"CUSTOM_ENV_CI_SERVER_HOST":            "victim.example.com",
		"CUSTOM_ENV_CI_SERVER_PORT":            "443",
		"CUSTOM_ENV_CI_SERVER_URL":             "https://victim.example.com",
		"CUSTOM_ENV_CI_REPOSITORY_URL":         "https://gitlab-ci-token:x@victim.example.com/victim/project.git",
		"CUSTOM_ENV_CI_PROJECT_ID":             "1",
		"CUSTOM_ENV_CI_PROJECT_PATH":           "victim/project",
		"CUSTOM_ENV_CI_PROJECT_URL":            "https://victim.example.com/victim/project",
		"CUSTOM_ENV_CI_COMMIT_REF_PROTECTED":   "true",
		"CUSTOM_ENV_CI_CONCURRENT_PROJECT_ID":  "9",
		"CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN":     "t3st",
		"CUSTOM_ENV_CI_JOB_ID":                 "1",
		"CUSTOM_ENV_CI_PROJECT_ROOT_NAMESPACE": "victim",
	}
	tests := []struct {
		name string
		env  map[string]string
		want Key
	}{
		{name: "no CUSTOM_ENV", env: map[string]string{}, want: sampleKey},
		// The project slot names only which of the project's checkouts a
		// job gets: within its own project and trust class.
		{name: "hostile CUSTOM_ENV", env: hostile, want: withProjectSlot(sampleKey, 9)},
		{
			name: "slot from CUSTOM_ENV_CI_CONCURRENT_ID",
			env:  map[string]string{"CUSTOM_ENV_CI_CONCURRENT_ID": "4"},
			want: Key{Instance: "127.0.0.1:42891", ProjectID: 1001, ProjectPath: "group/project", Trust: Unprotected, Slot: 4},
		},
		{
			name: "hostile CUSTOM_ENV with a slot",
			env:  mergeEnv(hostile, map[string]string{"CUSTOM_ENV_CI_CONCURRENT_ID": "4"}),
			want: Key{Instance: "127.0.0.1:42891", ProjectID: 1001, ProjectPath: "group/project", Trust: Unprotected, Slot: 4, ProjectSlot: 9},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := mergeEnv(tt.env, map[string]string{"JOB_RESPONSE_FILE": path})
			j, err := job.Load(func(k string) string { return env[k] })
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := KeyFor(j); got != tt.want {
				t.Errorf("KeyFor = %+v, want %+v", got, tt.want)
			}
			if got, want := Plan(KeyFor(j), []Profile{wantGo}), Plan(tt.want, []Profile{wantGo}); !reflect.DeepEqual(got, want) {
				t.Errorf("Plan =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func withProjectSlot(k Key, slot int) Key {
	k.ProjectSlot = slot
	return k
}

func mergeEnv(a, b map[string]string) map[string]string {
	m := maps.Clone(a)
	maps.Copy(m, b)
	return m
}

var testKey = Key{Instance: "gitlab.example.com", ProjectID: 1001, ProjectPath: "group/project", Trust: Unprotected}

func TestPlanVolumes(t *testing.T) {
	vols := Plan(testKey, allProfiles(t))
	type pp struct{ profile, path string }
	var got []pp
	for _, v := range vols {
		got = append(got, pp{v.Profile, v.Path})
	}
	want := []pp{
		{"cache-dir", "/cache"},
		{"go", "/go/pkg/mod"}, {"go", "/root/.cache/go-build"},
		{"npm", "/root/.npm"},
		{"pip", "/root/.cache/pip"},
		{"maven", "/root/.m2/repository"},
		{"gradle", "/root/.gradle/caches"},
		{"cargo", "/usr/local/cargo/registry"},
		{"git", "/builds"}, {"git", "/var/cache/warmcache/git"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Plan volumes =\n%v\nwant\n%v", got, want)
	}
	seen := map[string]bool{}
	for _, v := range vols {
		re := regexp.MustCompile(`^warmcache-` + regexp.QuoteMeta(v.Profile) + `-[0-9a-f]{12}$`)
		if !re.MatchString(v.Name) {
			t.Errorf("volume name %q does not match %s", v.Name, re)
		}
		if seen[v.Name] {
			t.Errorf("volume name %q planned twice", v.Name)
		}
		seen[v.Name] = true
	}
	if again := Plan(testKey, allProfiles(t)); !reflect.DeepEqual(again, vols) {
		t.Errorf("Plan is not deterministic:\n%+v\nthen\n%+v", vols, again)
	}
	if got := Plan(testKey, nil); got != nil {
		t.Errorf("Plan without profiles = %+v, want nil", got)
	}
}

func TestPlanLabels(t *testing.T) {
	key := Key{Instance: "gitlab.example.com:8443", ProjectID: 1001, ProjectPath: "group/project", Trust: Protected, Slot: 3}
	tests := []struct {
		profile Profile
		path    string
		slot    string
	}{
		{wantCacheDir, "/cache", "shared"},
		{wantGo, "/go/pkg/mod", "shared"},
		{wantGo, "/root/.cache/go-build", "shared"},
		{wantMaven, "/root/.m2/repository", "3"},
		{wantCargo, "/usr/local/cargo/registry", "3"},
	}
	vols := Plan(key, []Profile{wantCacheDir, wantGo, wantMaven, wantCargo})
	if len(vols) != len(tests) {
		t.Fatalf("Plan returned %d volumes, want %d", len(vols), len(tests))
	}
	for i, tt := range tests {
		v := vols[i]
		if v.Profile != tt.profile.Name || v.Path != tt.path {
			t.Errorf("volume %d is %s %s, want %s %s", i, v.Profile, v.Path, tt.profile.Name, tt.path)
		}
		want := map[string]string{
			"io.warmcache.managed":            "true",
			"io.warmcache.kind":               "cache",
			"io.warmcache.cache.instance":     "gitlab.example.com:8443",
			"io.warmcache.cache.project.id":   "1001",
			"io.warmcache.cache.project.path": "group/project",
			"io.warmcache.cache.profile":      tt.profile.Name,
			"io.warmcache.cache.path":         tt.path,
			"io.warmcache.cache.trust":        "protected",
			"io.warmcache.cache.slot":         tt.slot,
		}
		if !reflect.DeepEqual(v.Labels, want) {
			t.Errorf("labels of %s %s =\n%v\nwant\n%v", v.Profile, v.Path, v.Labels, want)
		}
	}
}

// TestPlanIsolation compares the names planned for two keys, profile path
// by profile path: which differences in the key give a project new volumes.
func TestPlanIsolation(t *testing.T) {
	with := func(change func(*Key)) Key {
		k := testKey
		change(&k)
		return k
	}
	const (
		same   = "same"
		differ = "differ"
	)
	tests := []struct {
		name string
		b    Key
		// safe is the expectation for concurrent-safe profiles, unsafe for
		// the others (maven, cargo), git for the checkout.
		safe, unsafe, git string
	}{
		{"same key", testKey, same, same, same},
		{"protected vs unprotected", with(func(k *Key) { k.Trust = Protected }), differ, differ, differ},
		{"other project", with(func(k *Key) { k.ProjectID = 1002 }), differ, differ, differ},
		{"other instance", with(func(k *Key) { k.Instance = "gitlab.example.org" }), differ, differ, differ},
		{"other port of the instance", with(func(k *Key) { k.Instance = "gitlab.example.com:8443" }), differ, differ, differ},
		{"other slot", with(func(k *Key) { k.Slot = 1 }), same, differ, same},
		{"other project slot", with(func(k *Key) { k.ProjectSlot = 1 }), same, same, differ},
		{"other pool", with(func(k *Key) { k.Pool = "team-b" }), differ, differ, differ},
		{"renamed project keeps its caches", with(func(k *Key) { k.ProjectPath = "group/renamed" }), same, same, same},
	}
	profiles := allProfiles(t)
	a := Plan(testKey, profiles)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Plan(tt.b, profiles)
			if len(a) != len(b) {
				t.Fatalf("%d volumes vs %d", len(a), len(b))
			}
			aNames := map[string]bool{}
			for _, v := range a {
				aNames[v.Name] = true
			}
			for i := range a {
				want := tt.safe
				switch {
				case a[i].Profile == Git.Name && a[i].Path == Git.Paths[0]:
					want = tt.git
				case a[i].Profile == Git.Name: // the store: one for every slot
					want = tt.safe
				case !isConcurrentSafe(t, profiles, a[i].Profile):
					want = tt.unsafe
				}
				got := same
				if a[i].Name != b[i].Name {
					got = differ
				}
				if got != want {
					t.Errorf("%s %s: %s vs %s: names %s, want %s", a[i].Profile, a[i].Path, a[i].Name, b[i].Name, got, want)
				}
				if want == differ && aNames[b[i].Name] {
					t.Errorf("%s %s: %s is also a volume of the other key", b[i].Profile, b[i].Path, b[i].Name)
				}
			}
		})
	}
}

func isConcurrentSafe(t *testing.T, profiles []Profile, name string) bool {
	t.Helper()
	for _, p := range profiles {
		if p.Name == name {
			return p.ConcurrentSafe
		}
	}
	t.Fatalf("no profile %s", name)
	return false
}

// TestPlanGolden pins the planned names: a changed name makes every
// project's cache cold and strands the old volumes, so it must be
// deliberate (go test ./cachevol -update).
func TestPlanGolden(t *testing.T) {
	keys := []Key{
		testKey,
		{Instance: "gitlab.example.com", ProjectID: 1001, ProjectPath: "group/project", Trust: Protected},
		{Instance: "gitlab.example.com:8443", ProjectID: 1001, ProjectPath: "group/project", Trust: Unprotected, Slot: 3},
		sampleKey,
		{Instance: "gitlab.example.com", ProjectID: 1001, ProjectPath: "group/project", Trust: Protected, Pool: "team-a"},
		{Instance: "gitlab.example.com", ProjectID: 1001, ProjectPath: "group/project", Trust: Protected, Slot: 1, ProjectSlot: 2},
	}
	var b strings.Builder
	b.WriteString("# Plan(key, cache-dir + every built-in profile). Regenerate with: go test ./cachevol -update\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "\n%+v\n", k)
		for _, v := range Plan(k, allProfiles(t)) {
			fmt.Fprintf(&b, "  %-9s %-26s %-6s %s\n", v.Profile, v.Path, v.Labels[naming.LabelCacheSlot], v.Name)
		}
	}
	got := b.String()
	const path = "testdata/plan.golden"
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cachevol -update once)", err)
	}
	if got != string(want) {
		t.Errorf("planned names changed; got:\n%s\nwant:\n%s", got, want)
	}
}

// TestPlanNameInputs checks the name against naming.CacheVolume directly,
// so the golden file above is known to hash the documented inputs.
func TestPlanNameInputs(t *testing.T) {
	key := Key{Instance: "gitlab.example.com", ProjectID: 1001, Trust: Protected, Slot: 2}
	vols := Plan(key, []Profile{wantGo, wantMaven})
	want := []string{
		naming.CacheVolume("go", "gitlab.example.com", "1001", "protected", "go", "/go/pkg/mod", "shared"),
		naming.CacheVolume("go", "gitlab.example.com", "1001", "protected", "go", "/root/.cache/go-build", "shared"),
		naming.CacheVolume("maven", "gitlab.example.com", "1001", "protected", "maven", "/root/.m2/repository", "2"),
	}
	if len(vols) != len(want) {
		t.Fatalf("Plan returned %d volumes, want %d", len(vols), len(want))
	}
	for i, v := range vols {
		if v.Name != want[i] {
			t.Errorf("volume %d: %s, want %s", i, v.Name, want[i])
		}
	}
	key.Pool = "team-a"
	pooled := Plan(key, []Profile{wantGo})[0]
	if w := naming.CacheVolume("go", "gitlab.example.com", "1001", "protected", "go", "/go/pkg/mod", "shared", "pool=team-a"); pooled.Name != w || pooled.Labels[naming.LabelCachePool] != "team-a" {
		t.Errorf("pooled volume %s %v, want %s labelled with the pool", pooled.Name, pooled.Labels, w)
	}
}
