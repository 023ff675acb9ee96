package migrate

import (
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/limits"
)

func opts(file, runner string) Options {
	return Options{Source: "testdata/" + file, Runner: runner, Exe: "/usr/local/bin/warmcache", ConfigPath: "/etc/warmcache/config.toml"}
}

func migrateFile(t *testing.T, file, runner string) (Result, string) {
	t.Helper()
	data, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Migrate(string(data), opts(file, runner))
	if err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return res, string(data)
}

// TestFixtures migrates runner configs of the shapes admins have and
// checks, for each: the output loads as warmcache's config as it is; the
// keys warmcache names differently land where they belong with the
// runner's values; and every key of [runners.docker] is accounted for,
// carried under its own name with its own value or named on stderr.
// Which same-name keys warmcache supports is not fixed here: it grows.
func TestFixtures(t *testing.T) {
	for _, tc := range []struct {
		file, runner, wantRunner string
		prepareTimeout           int // 0: the runner's default, 3600
		// check looks at the loaded config: the explicitly mapped keys.
		check func(t *testing.T, cfg config.Config)
		// notes must be among the stderr lines.
		notes []string
	}{
		{
			file: "example.toml", wantRunner: "ruby-3.1-docker",
			check: func(t *testing.T, cfg config.Config) {
				want := config.Default()
				want.Docker.DefaultImage = "ruby:3.1"
				want.Limits.ConcurrentJobs = 4
				if !reflect.DeepEqual(cfg, want) {
					t.Errorf("config:\n got %+v\nwant %+v", cfg, want)
				}
			},
			// host = "", privileged = false, cache_dir = "": the
			// runner's defaults, nothing to carry or say.
			notes: []string{
				"concurrent: carried as limits.concurrent_jobs (jobs the host runs at once; a job's default share of the host is divided by it)",
				"runners.docker.image: carried as docker.default_image (the image of jobs that name none)",
			},
		},
		{
			file: "advanced.toml", wantRunner: "everything",
			check: func(t *testing.T, cfg config.Config) {
				containers := limits.Set{CPUs: "1.5", CpusetCpus: "0,1", Memory: "1g", MemorySwap: "2g", MemoryReservation: "512m", ShmSize: "268435456"}
				services := limits.Set{CPUs: "0.5", CpusetCpus: "1", Memory: "256m", MemorySwap: "512m", MemoryReservation: "128m", ShmSize: "268435456"}
				if cfg.Limits.Build != containers || cfg.Limits.Helper != containers || cfg.Limits.Services != services {
					t.Errorf("limits: build %+v, helper %+v, services %+v", cfg.Limits.Build, cfg.Limits.Helper, cfg.Limits.Services)
				}
				if cfg.Limits.ConcurrentJobs != 8 || cfg.Services.MaxPerJob != 5 || cfg.Services.WaitTimeout != 45*time.Second || cfg.Cache.Enabled {
					t.Errorf("concurrent_jobs %d, max_per_job %d, wait_timeout %s, cache.enabled %v",
						cfg.Limits.ConcurrentJobs, cfg.Services.MaxPerJob, cfg.Services.WaitTimeout, cfg.Cache.Enabled)
				}
				d := cfg.Docker
				if d.DefaultImage != "ruby:3.3" || !slices.Equal(d.PullPolicy, []string{"always", "if-not-present"}) ||
					!slices.Equal(d.AllowedPullPolicies, []string{"always", "if-not-present"}) ||
					d.HelperImage != "registry.example.com/gitlab-runner-helper:x86_64-v19.4.0" || d.NetworkMode != "ci-net" {
					t.Errorf("docker: %+v", d)
				}
			},
			notes: []string{
				"runners.docker.cpus: carried as limits.build.cpus and limits.helper.cpus (warmcache limits each kind of container under [limits]; the Docker executor applies it to both)",
				"runners.docker.disable_cache: carried as cache.enabled = false: no persistent cache_dir and no warm caches, like the runner's jobs had; set it to true for warmcache's caches",
				"runners.docker.service_memory_swap: carried as limits.services.memory_swap",
				"runners.docker.services_limit: carried as services.max_per_job",
				"runners.docker.shm_size: carried as limits.build.shm_size, limits.helper.shm_size and limits.services.shm_size (bytes; the Docker executor gives every container the same)",
				"runners.docker.wait_for_services_timeout: carried as services.wait_timeout = \"45s\"",
			},
		},
		{
			file: "dind.toml", wantRunner: "dind",
			check: func(t *testing.T, cfg config.Config) {
				if cfg.Docker.DefaultImage != "docker:27" || !cfg.Cache.Enabled || cfg.Limits.Build.ShmSize != "" {
					t.Errorf("config: %+v", cfg)
				}
			},
		},
		{
			file: "socket.toml", wantRunner: "socket",
			check: func(t *testing.T, cfg config.Config) {
				if cfg.Docker.DefaultImage != "docker:27" || cfg.Limits.ConcurrentJobs != 1 {
					t.Errorf("config: %+v", cfg)
				}
			},
		},
		{
			file: "allowlist.toml", wantRunner: "shared",
			check: func(t *testing.T, cfg config.Config) {
				d := cfg.Docker
				if !slices.Equal(d.PullPolicy, []string{"always"}) || !slices.Equal(d.AllowedPullPolicies, []string{"always"}) {
					t.Errorf("pull_policy %v, allowed_pull_policies %v", d.PullPolicy, d.AllowedPullPolicies)
				}
				if cfg.Services.MaxPerJob != 0 || cfg.Services.WaitTimeout != 0 {
					t.Errorf("max_per_job %d, wait_timeout %s; want 0 and 0s", cfg.Services.MaxPerJob, cfg.Services.WaitTimeout)
				}
			},
			notes: []string{
				"runners.docker.services_limit: carried as services.max_per_job",
				"runners.docker.wait_for_services_timeout: carried as services.wait_timeout = \"0s\" (-1: no wait)",
			},
		},
		{
			file: "s3.toml", runner: "s3-cached", wantRunner: "s3-cached", prepareTimeout: 600,
			check: func(t *testing.T, cfg config.Config) {
				if cfg.Docker.DefaultImage != "golang:1.26" || cfg.Limits.ConcurrentJobs != 6 || !reflect.DeepEqual(cfg.Env, config.Default().Env) {
					t.Errorf("config: %+v", cfg)
				}
			},
			notes: []string{
				"runners.builds_dir: not carried: warmcache's config stage gives the runner its own builds_dir (inside the job containers), which the custom executor uses instead",
				"runners.cache: kept in gitlab-runner's config.toml: the runner still uploads and downloads the s3 cache of `cache:` itself, under any executor; warmcache's warm caches ([cache]) come on top",
				"runners.cache_dir: not carried: warmcache's config stage gives the runner its own cache_dir (inside the job containers), which the custom executor uses instead",
				"runners.docker.cache_dir: not carried: warmcache keeps cache_dir (/cache in the job containers) and its caches in volumes it manages itself ([cache])",
				"runners.environment: kept in gitlab-runner's config.toml: the runner adds these variables to every job under the custom executor too (copy one to [env] extra only if service containers need it)",
				"runners.feature_flags: kept in gitlab-runner's config.toml; flags of the Docker executor (FF_NETWORK_PER_BUILD and the like) do nothing under the custom executor",
			},
		},
		{
			file: "s3.toml", runner: "autoscaled", wantRunner: "autoscaled",
			check: func(t *testing.T, cfg config.Config) {
				if cfg.Docker.DefaultImage != "alpine:3.20" {
					t.Errorf("config: %+v", cfg)
				}
			},
			notes: []string{"runners.machine: not applicable: the custom executor does not read it; warmcache runs every job on the one engine at docker.host"},
		},
	} {
		t.Run(tc.file+"/"+tc.wantRunner, func(t *testing.T) {
			res, source := migrateFile(t, tc.file, tc.runner)
			if res.Runner != tc.wantRunner {
				t.Errorf("runner %q, want %q", res.Runner, tc.wantRunner)
			}
			// The whole stdout, comments and all, is warmcache's config.
			cfg, err := config.Parse(res.Text)
			if err != nil {
				t.Fatalf("the output does not load: %v\n%s", err, res.Text)
			}
			tc.check(t, cfg)
			for _, n := range tc.notes {
				if !slices.Contains(res.Notes, n) {
					t.Errorf("stderr lacks %q; it has:\n%s", n, strings.Join(res.Notes, "\n"))
				}
			}
			if !slices.IsSorted(res.Notes) {
				t.Errorf("notes are not in key order:\n%s", strings.Join(res.Notes, "\n"))
			}
			checkAccounted(t, source, tc.wantRunner, res)
			if tc.prepareTimeout == 0 {
				tc.prepareTimeout = 3600
			}
			checkBlock(t, res.Text, tc.prepareTimeout)
		})
	}
}

// checkAccounted: every set key of the runner's [runners.docker] is in
// the output's [docker] with the runner's value, or has a stderr line.
func checkAccounted(t *testing.T, source, runner string, res Result) {
	t.Helper()
	var file struct {
		Runners []struct {
			Name   string
			Docker map[string]any
		}
	}
	if _, err := toml.Decode(source, &file); err != nil {
		t.Fatal(err)
	}
	var out struct{ Docker map[string]any }
	if _, err := toml.Decode(res.Text, &out); err != nil {
		t.Fatal(err)
	}
	for _, r := range file.Runners {
		if r.Name != runner {
			continue
		}
		for _, key := range slices.Sorted(maps.Keys(r.Docker)) {
			v := r.Docker[key]
			if isZero(v) && !slices.Contains(meaningfulZero, key) {
				continue
			}
			from := "runners.docker." + key
			said := slices.ContainsFunc(res.Notes, func(n string) bool {
				return strings.HasPrefix(n, from+":") || strings.HasPrefix(n, from+"[") || strings.HasPrefix(n, from+".")
			})
			got, carried := out.Docker[key]
			switch {
			case said:
			case !carried:
				t.Errorf("%s is neither carried nor named on stderr", from)
			case key == "pull_policy":
			case !reflect.DeepEqual(got, v):
				t.Errorf("%s carried as %#v, want the runner's %#v", from, got, v)
			}
		}
	}
}

// checkBlock: the commented [runners.custom] block, uncommented, is the
// runner's TOML pointing every stage at warmcache with --config.
func checkBlock(t *testing.T, text string, prepareTimeout int) {
	t.Helper()
	_, block, ok := strings.Cut(text, "# ---- gitlab-runner's config.toml ----\n")
	if !ok {
		t.Fatalf("no runner block in:\n%s", text)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(block, "\n"), "\n") {
		if !strings.HasPrefix(l, "#") {
			t.Fatalf("block line %q is not a comment", l)
		}
		if s, ok := strings.CutPrefix(l, "#   "); ok {
			lines = append(lines, "  "+s)
		}
	}
	var runner struct {
		Runners []struct {
			Custom map[string]any
		}
	}
	pasted := "[[runners]]\n" + strings.Join(lines, "\n")
	if _, err := toml.Decode(pasted, &runner); err != nil || len(runner.Runners) != 1 {
		t.Fatalf("the uncommented block does not decode: %v\n%s", err, pasted)
	}
	want := map[string]any{
		"config_exec_timeout": int64(60), "prepare_exec_timeout": int64(prepareTimeout), "cleanup_exec_timeout": int64(360),
		"graceful_kill_timeout": int64(60), "force_kill_timeout": int64(10),
	}
	for _, stage := range []string{"config", "prepare", "run", "cleanup"} {
		want[stage+"_exec"] = "/usr/local/bin/warmcache"
		want[stage+"_args"] = []any{"--config", "/etc/warmcache/config.toml", stage}
	}
	if got := runner.Runners[0].Custom; !reflect.DeepEqual(got, want) {
		t.Errorf("[runners.custom]:\n got %v\nwant %v", got, want)
	}
}

// TestPrepareTimeout: the runner's prepare_timeout, when it has one,
// bounds prepare_exec.
func TestPrepareTimeout(t *testing.T) {
	data, err := os.ReadFile("testdata/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), `  name = "ruby-3.1-docker"`, `  name = "ruby-3.1-docker"`+"\n  prepare_timeout = \"15m\"", 1)
	res, err := Migrate(text, opts("example.toml", ""))
	if err != nil {
		t.Fatal(err)
	}
	checkBlock(t, res.Text, 900)
	if !strings.Contains(res.Text, "#     prepare_exec_timeout = 900  # the runner's prepare_timeout\n") {
		t.Errorf("no prepare_timeout comment in:\n%s", res.Text)
	}
}

// TestErrors: each problem with the file or the choice of runner is one
// line naming the file and what to do.
func TestErrors(t *testing.T) {
	for _, tc := range []struct{ name, file, text, runner, want string }{
		{"not TOML", "bad.toml", "[[runners]\nname = 1", "", `testdata/bad.toml: expected end of table array name delimiter ']', but got '\n' instead`},
		{"no runners", "empty.toml", "concurrent = 1\n", "", `testdata/empty.toml has no [[runners]]`},
		{"two docker runners", "s3.toml", "", "", `testdata/s3.toml has 2 docker runners ("s3-cached", "spare"); choose one with --runner NAME`},
		{"unknown runner", "s3.toml", "", "nope", `testdata/s3.toml has no runner named "nope"; its runners: "s3-cached" (docker), "autoscaled" (docker+machine), "spare" (docker)`},
		{"no docker runner", "shell.toml", "[[runners]]\nname = \"sh\"\nexecutor = \"shell\"\n", "", `testdata/shell.toml has no runner with executor = "docker"; its runners: "sh" (shell)`},
		{"not a docker runner", "example.toml", "", "production-server", `testdata/example.toml: runner "production-server" has executor = "ssh"; only docker, docker+machine, docker-autoscaler runners can be migrated`},
		{"no docker section", "nodocker.toml", "[[runners]]\nname = \"d\"\nexecutor = \"docker\"\n", "", `testdata/nodocker.toml: runner "d" has no [runners.docker] section`},
		{"same name twice", "twice.toml", "[[runners]]\nname = \"d\"\nexecutor = \"docker\"\n[[runners]]\nname = \"d\"\nexecutor = \"docker\"\n", "d", `testdata/twice.toml has 2 runners named "d"; give each its own name first`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := tc.text
			if text == "" {
				data, err := os.ReadFile("testdata/" + tc.file)
				if err != nil {
					t.Fatal(err)
				}
				text = string(data)
			}
			_, err := Migrate(text, opts(tc.file, tc.runner))
			if err == nil || err.Error() != tc.want {
				t.Errorf("error %v\n want %s", err, tc.want)
			}
		})
	}
}

// TestCarrier drives the carrier with warmcache's real loader on keys
// whose support is settled today.
func TestCarrier(t *testing.T) {
	docker := func(key string, v any) entry {
		return entry{from: "runners.docker." + key, to: [][]string{{"docker", key}}, value: v}
	}
	for _, tc := range []struct {
		name    string
		entries []entry
		runner  map[string]any // [runners.docker], for entries of its own
		want    string         // the [docker] table of the result, as TOML
		notes   []string
	}{
		{
			name: "a key that needs another waits for it",
			// allowed_pull_policies = ["always"] alone clashes with the
			// default pull_policy; once pull_policy is in, it goes in.
			entries: []entry{docker("allowed_pull_policies", []any{"always"}), docker("pull_policy", []any{"always"})},
			want:    `allowed_pull_policies = ["always"] pull_policy = ["always"]`,
		},
		{
			name:    "a list keeps the elements warmcache takes",
			entries: []entry{docker("allowed_pull_policies", []any{"if-not-present", "sometimes", "never"})},
			want:    `allowed_pull_policies = ["if-not-present", "never"]`,
			notes:   []string{`runners.docker.allowed_pull_policies[1] = "sometimes": not carried: warmcache refuses it: docker.allowed_pull_policies[0]: "sometimes" is not one of always, if-not-present, never`},
		},
		{
			name:    "a value warmcache refuses",
			entries: []entry{docker("host", "ssh://ci@build-host")},
			notes:   []string{`runners.docker.host: not carried: warmcache refuses it: docker.host: "ssh://ci@build-host" must start with unix:// or tcp://`},
		},
		{
			name:    "a value of another type",
			entries: []entry{docker("network_mode", int64(5))},
			notes:   []string{`runners.docker.network_mode: not carried: warmcache's docker.network_mode takes another shape (toml: line 2 (last key "docker.network_mode"): incompatible types: TOML value has type int64; destination has type string)`},
		},
		{
			name:   "a helper image with the runner's variables",
			runner: map[string]any{"helper_image": "registry.example.com/helper:x86_64-${CI_RUNNER_REVISION}"},
			notes:  []string{"runners.docker.helper_image: not carried: warmcache does not expand variables in docker.helper_image; leave it out for the official helper image of the runner's version, or write the tag out"},
		},
		{
			name:    "a key warmcache lacks",
			entries: []entry{docker("links", []any{"mysql_container:mysql"})},
			notes:   []string{`runners.docker.links: not carried: warmcache has no docker.links`},
		},
		{
			name: "parts of tables warmcache lacks are dropped, the rest carried",
			entries: []entry{{from: "runners.docker.registry", to: [][]string{{"docker", "registry"}}, value: []map[string]any{
				{"host": "registry.example.com", "username": "ci", "password_file": "/etc/pw", "token": "x"},
			}}},
			want:  `[[docker.registry]] host = "registry.example.com" password_file = "/etc/pw" username = "ci"`,
			notes: []string{`runners.docker.registry.token: not carried: warmcache's docker.registry has no token`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCarrier()
			c.carryAll(append(tc.entries, dockerEntries(tc.runner, c)...))
			var got string
			if d, ok := c.doc["docker"].(map[string]any); ok {
				text, err := encode(map[string]any{"docker": d})
				if err != nil {
					t.Fatal(err)
				}
				got = strings.Join(strings.Fields(strings.TrimPrefix(text, "[docker]\n")), " ")
			}
			if got != tc.want {
				t.Errorf("carried %q, want %q", got, tc.want)
			}
			var notes []string
			for _, n := range c.notes {
				notes = append(notes, n.String())
			}
			if !slices.Equal(notes, tc.notes) {
				t.Errorf("notes:\n got %q\nwant %q", notes, tc.notes)
			}
			if err := check(c.doc); err != nil {
				t.Errorf("the result does not load: %v", err)
			}
		})
	}
}
