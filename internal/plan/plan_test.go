package plan

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/cache/profile"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/credentials"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/limits"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/services"
)

// TestPlanGolden: a table of jobs, configs and Facts in, every container
// prepare creates out, with every option, compared with
// testdata/plan.golden (rewrite it with -update and read the diff).
func TestPlanGolden(t *testing.T) {
	meta := naming.JobMeta{PipelineID: 7, RunnerID: "12", TimeoutSeconds: 3600, Created: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	goCaches := func(nonRoot bool) cache.JobCaches {
		profiles := []cache.Profile{profile.CacheDir, {Name: "go", Paths: []string{"/go/pkg/mod", "/root/.cache/go-build"},
			Env: map[string]string{"GOMODCACHE": "/go/pkg/mod", "GOCACHE": "/root/.cache/go-build"}, ConcurrentSafe: true}}
		var c cache.JobCaches
		for i, path := range []string{"/cache", "/go/pkg/mod", "/root/.cache/go-build"} {
			c.Mounts = append(c.Mounts, engine.Mount{Volume: fmt.Sprintf("warmcache-cache-%d", i), Target: profile.Target(path, nonRoot), NoCopy: true})
		}
		c.Env = profile.Env(profiles, nonRoot)
		return c
	}
	ownNetwork := sampleKey.Name(naming.KindNetwork)
	tests := []struct {
		name  string
		job   func(map[string]any)
		cfg   func(*config.Config)
		Facts func(j job.Job, f *Facts)
	}{
		{name: "defaults: caches off, own network, root"},
		{
			name:  "caches, non-root user from the job",
			job:   func(j map[string]any) { setJobUser(j, "1000:1000") },
			Facts: func(_ job.Job, f *Facts) { f.User, f.Caches = "1000:1000", goCaches(true) },
		},
		{
			name:  "non-root user from the image",
			Facts: func(_ job.Job, f *Facts) { f.User, f.Caches = "nobody", goCaches(false) },
		},
		{
			name:  "host network",
			cfg:   func(c *config.Config) { c.Docker.NetworkMode = "host" },
			Facts: func(_ job.Job, f *Facts) { f.Network = "host" },
		},
		{
			name: "services on the job's network, with limits under the job's cgroup",
			job: func(j map[string]any) {
				j["services"] = []any{
					map[string]any{"name": "postgres:16", "alias": "db"},
					map[string]any{"name": "registry.example.com:5000/team/cache:1", "entrypoint": []any{"/bin/sh", "-c"}, "command": []any{"redis-server"}},
				}
			},
			Facts: func(j job.Job, f *Facts) {
				for _, s := range j.Services {
					f.Services = append(f.Services, services.Service{Image: s, Aliases: job.ServiceAliases(s)})
				}
				f.Limits = limits.Plan{
					Job:      limits.Job{NanoCPUs: 2e9, Memory: 4 << 30},
					Build:    limits.Container{Memory: 8 << 30, ShmSize: 64 << 20, PidsLimit: 1000},
					Helper:   limits.Container{NanoCPUs: 5e8, Memory: 256 << 20},
					Services: limits.Container{Memory: 1 << 30},
				}
				f.CgroupParent = "/warmcache/" + sampleKey.Base()
			},
		},
		{
			name: "warm git checkout at builds_dir, in both containers",
			Facts: func(_ job.Job, f *Facts) {
				f.Caches = goCaches(false)
				f.Caches.Mounts = append(f.Caches.Mounts, engine.Mount{Volume: "warmcache-git-0123456789ab", Target: "/builds", NoCopy: true})
			},
		},
		{
			name: "credentials in the job's tmpfs",
			Facts: func(_ job.Job, f *Facts) {
				f.Env = []string{"NETRC=/run/warmcache/netrc", "HTTPS_PROXY=http://proxy.example:3128"}
				f.Secrets = &engine.Mount{Volume: sampleKey.Name(naming.KindSecrets), Target: credentials.SecretsDir, NoCopy: true}
			},
		},
		{
			name: "docker executor options",
			job: func(j map[string]any) {
				j["services"] = []any{
					map[string]any{"name": "docker:27-dind", "alias": "docker"},
					map[string]any{"name": "registry.example.com/emulator:3"},
				}
			},
			cfg: func(c *config.Config) { c.Docker.ContainerOptions = everyOption() },
			Facts: func(j job.Job, f *Facts) {
				for _, s := range j.Services {
					f.Services = append(f.Services, services.Service{Image: s, Aliases: job.ServiceAliases(s)})
				}
				f.SecurityOpt = []string{"seccomp=unconfined", "no-new-privileges"}
				f.ServicesSecurityOpt = []string{"apparmor=unconfined"}
			},
		},
		{
			// The build image and the second service are not in the
			// allow-lists: they run unprivileged, and the plan says so.
			name: "privileged, gated by allowed_privileged_images and _services",
			job: func(j map[string]any) {
				j["services"] = []any{
					map[string]any{"name": "docker:27-dind", "alias": "docker"},
					map[string]any{"name": "redis:7"},
				}
			},
			cfg: func(c *config.Config) {
				c.Docker.Privileged = true
				c.Docker.AllowedPrivilegedImages = []string{"docker:*"}
				c.Docker.AllowedPrivilegedServices = []string{"docker:*-dind"}
			},
			Facts: func(j job.Job, f *Facts) {
				for _, s := range j.Services {
					f.Services = append(f.Services, services.Service{Image: s, Aliases: job.ServiceAliases(s)})
				}
			},
		},
		{
			name: "docker executor options on the host network",
			cfg: func(c *config.Config) {
				c.Docker.NetworkMode = "host"
				c.Docker.DNS, c.Docker.ExtraHosts, c.Docker.MacAddress = []string{"10.0.0.53"}, []string{"gitlab.corp.example:10.0.0.7"}, "92:d0:c6:0a:29:33"
			},
			Facts: func(_ job.Job, f *Facts) { f.Network = "host" },
		},
	}
	var out strings.Builder
	for _, tt := range tests {
		cfg := testConfig()
		if tt.cfg != nil {
			tt.cfg(&cfg)
		}
		j, err := job.Load(sampleEnv(t, tt.job))
		if err != nil {
			t.Fatal(err)
		}
		f := Facts{Image: "golang:1.26", Helper: testHelperImage, Network: ownNetwork, Meta: meta,
			Caches: cache.JobCaches{Mounts: []engine.Mount{{Volume: sampleKey.Name("cachedir"), Target: "/cache"}}}}
		if tt.Facts != nil {
			tt.Facts(j, &f)
		}
		data, err := json.MarshalIndent(Make(j, cfg, f), "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "== %s\n%s\n", tt.name, data)
		if n := Network(sampleKey, cfg, meta); n.MTU != 0 || n.EnableIPv6 {
			data, err := json.MarshalIndent(n, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&out, "-- the job's network\n%s\n", data)
		}
	}
	const golden = "testdata/plan.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != string(want) {
		t.Errorf("plans differ from %s (run with -update and read the diff):\n%s", golden, out.String())
	}
}

// setJobUser sets the job's image:docker:user.
func setJobUser(j map[string]any, user string) {
	img, _ := j["image"].(map[string]any)
	if img == nil {
		img = map[string]any{}
		j["image"] = img
	}
	img["executor_opts"] = map[string]any{"docker": map[string]any{"user": user}}
}

// everyOption sets every container and network option of the runner.
func everyOption() config.ContainerOptions {
	no := false
	return config.ContainerOptions{
		Privileged:          true,
		ServicesPrivileged:  &no,
		Volumes:             []string{"/var/run/docker.sock:/var/run/docker.sock", "/usr/bin/docker:/usr/bin/docker:ro", "/srv/ref:/ref:ro,z,rslave", "ccache:/ccache", "/scratch", "/certs/client"},
		VolumeDriver:        "local",
		CapAdd:              []string{"NET_ADMIN", "SYS_PTRACE"},
		CapDrop:             []string{"MKNOD"},
		SecurityOpt:         []string{"seccomp=unconfined", "no-new-privileges"},
		ServicesSecurityOpt: []string{"apparmor=unconfined"},
		Devices:             []string{"/dev/kvm", "/dev/sda:/dev/xvda:r"},
		ServicesDevices:     map[string][]string{"registry.example.com/emulator:*": {"/dev/kvm"}, "docker:*": {"/dev/fuse"}, "nomatch/*": {"/dev/null"}},
		DeviceCgroupRules:   []string{"c 10:232 rwm"},
		Runtime:             "runc",
		Gpus:                `"device=0,1"`,
		GroupAdd:            []string{"kvm", "993"},
		UsernsMode:          "host",
		Sysctls:             map[string]string{"net.ipv4.ip_forward": "1", "kernel.msgmax": "65536"},
		Ulimit:              map[string]string{"nofile": "1024:2048", "core": "0"},
		OomKillDisable:      true,
		OomScoreAdjust:      500,
		DNS:                 []string{"10.0.0.53", "fd00::53"},
		DNSSearch:           []string{"corp.example"},
		ExtraHosts:          []string{"gitlab.corp.example:10.0.0.7"},
		NetworkMTU:          1400,
		EnableIPv6:          true,
		Tmpfs:               map[string]string{"/var/lib/mysql": "rw,noexec"},
		ServicesTmpfs:       map[string]string{"/var/lib/docker": "rw,size=1g"},
		MacAddress:          "92:d0:c6:0a:29:33",
	}
}

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// sampleJob is the job response a real gitlab-runner 19.4 wrote (image
// golang:1.26 with entrypoint [""], project 1001, job 22961).
const sampleJob = "../job/testdata/job_response.json"

// sampleKey is the JobKey of sampleJob under sampleEnv.
var sampleKey = naming.JobKey{Runner: "t3st", Instance: "127.0.0.1:42891", ProjectID: 1001, Slot: 2, JobID: 22961}

const testHelperImage = "registry.example.com/gitlab-runner-helper:test"

// testConfig is the default config with a fixed helper image and caches
// off, as the driver's stage tests use.
func testConfig() config.Config {
	cfg := config.Default()
	cfg.Docker.HelperImage = testHelperImage
	cfg.Cache.Enabled = false
	return cfg
}

// sampleEnv is the runner's environment for sampleJob without its
// services, changed by edit (nil for none).
func sampleEnv(t *testing.T, edit func(job map[string]any)) func(string) string {
	t.Helper()
	data, err := os.ReadFile(sampleJob)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	m["services"] = []any{}
	if edit != nil {
		edit(m)
	}
	if data, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "response.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"JOB_RESPONSE_FILE":                path,
		"CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN": "t3st",
		"CUSTOM_ENV_CI_RUNNER_ID":          "12",
		"CUSTOM_ENV_CI_RUNNER_VERSION":     "19.4.0",
		"CUSTOM_ENV_CI_CONCURRENT_ID":      "2",
	}
	return func(k string) string { return env[k] }
}
