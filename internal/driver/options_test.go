package driver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/credentials"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/plan"
	"github.com/warmcache/warmcache/internal/protocol"
)

// TestPrepareWithOptions: the runner's options reach the engine as plan
// decides them, the job's own volumes are made, labelled as the job's, and
// go at cleanup, while a named volume the admin binds stays.
func TestPrepareWithOptions(t *testing.T) {
	h := newHarness(t, func(j map[string]any) {
		j["services"] = []any{map[string]any{"name": "docker:27-dind", "alias": "docker"}}
	})
	h.cfg.Docker.ContainerOptions = config.ContainerOptions{
		Volumes:       []string{"/srv/ref:/ref:ro", "ccache:/ccache", "/scratch"},
		VolumeDriver:  "local",
		CapAdd:        []string{"NET_ADMIN"},
		DNS:           []string{"10.0.0.53"},
		ExtraHosts:    []string{"gitlab.corp.example:10.0.0.7"},
		Sysctls:       map[string]string{"net.ipv4.ip_unprivileged_port_start": "80"},
		Tmpfs:         map[string]string{"/tmp/fast": "rw,size=64m"},
		ServicesTmpfs: map[string]string{"/var/lib/docker": ""},
		NetworkMTU:    1400,
		EnableIPv6:    true,
	}
	h.f.AddImage("docker:27-dind")
	if err := Prepare(context.Background(), h.deps()); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	helper, _ := h.f.Container(sampleKey.Name(naming.KindHelper))
	build, _ := h.f.Container(sampleKey.Name(naming.KindBuild))
	svc, _ := h.f.Container(sampleKey.ServiceName(0))
	if !slices.Equal(helper.Spec.DNS, []string{"10.0.0.53"}) || len(build.Spec.DNS) != 0 || !slices.Equal(svc.Spec.DNS, []string{"10.0.0.53"}) {
		t.Errorf("dns: helper %v, build %v, service %v; want the helper's (the build container shares its network) and the service's",
			helper.Spec.DNS, build.Spec.DNS, svc.Spec.DNS)
	}
	if !slices.Equal(build.Spec.CapAdd, []string{"NET_ADMIN"}) || build.Spec.Sysctls["net.ipv4.ip_unprivileged_port_start"] != "80" ||
		build.Spec.Tmpfs["/tmp/fast"] != "rw,size=64m" || len(svc.Spec.CapAdd) != 0 || svc.Spec.Tmpfs["/var/lib/docker"] != "" || len(svc.Spec.Tmpfs) != 1 {
		t.Errorf("build %+v\nservice %+v", build.Spec, svc.Spec)
	}
	anon := sampleKey.IndexedName(naming.KindVolume, 0)
	for _, c := range []fake.Container{helper, build, svc} {
		if !slices.Contains(c.Spec.Mounts, engine.Mount{Volume: anon, Target: "/scratch"}) ||
			!reflect.DeepEqual(c.Spec.Binds, []engine.Bind{{Source: "/srv/ref", Target: "/ref", ReadOnly: true}, {Source: "ccache", Target: "/ccache"}}) {
			t.Errorf("%s: mounts %+v, binds %+v", c.Spec.Name, c.Spec.Mounts, c.Spec.Binds)
		}
	}
	if v, ok := h.f.Volume(anon); !ok || v.Labels[naming.LabelJob] != sampleKey.Base() || v.Labels[naming.LabelKind] != string(naming.KindVolume) || h.f.VolumeDriver(anon) != "local" {
		t.Errorf("the job's volume: %+v, %v, driver %q", v, ok, h.f.VolumeDriver(anon))
	}
	if n, ok := h.f.Network(plan.SlotNetwork(h.job(), h.cfg, time.Now()).Name); !ok || n.MTU != 1400 || !n.EnableIPv6 {
		t.Errorf("the job's network: %+v, %v; want MTU 1400 and IPv6", n, ok)
	}

	if err := Cleanup(h.deps()); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if _, ok := h.f.Volume(anon); ok {
		t.Error("cleanup left the job's own volume")
	}
	if _, ok := h.f.Volume("ccache"); !ok {
		t.Error("cleanup removed the admin's named volume")
	}
}

// TestPrepareRefusedPrivileged: an engine that cannot run a privileged
// container fails prepare with one line naming the cause, a system
// failure, whichever container it was.
func TestPrepareRefusedPrivileged(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  func(*config.Config)
		want string
	}{
		{"build container", func(c *config.Config) { c.Docker.Privileged, c.Docker.ServicesPrivileged = true, new(false) },
			"the engine refused a privileged container: the build container (unable to apply caps: operation not permitted); this host's Docker cannot run privileged containers"},
		{"service", func(c *config.Config) { c.Docker.ServicesPrivileged = new(true) },
			"the engine refused a privileged container: service docker:27-dind (unable to apply caps: operation not permitted); this host's Docker cannot run privileged containers"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(j map[string]any) {
				j["services"] = []any{map[string]any{"name": "docker:27-dind"}}
			})
			tt.cfg(&h.cfg)
			h.f.AddImage("docker:27-dind")
			h.f.RefusePrivileged(true)
			err := Prepare(context.Background(), h.deps())
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Prepare = %v\nwant it to start with %q", err, tt.want)
			}
			var bf *protocol.BuildFailure
			if errors.As(err, &bf) {
				t.Errorf("a refused privileged container is a build failure: %v", err)
			}
		})
	}
}

// The build container is created privileged, the helper never is; a
// service is as services_privileged says, else as privileged.
func TestPrivilegedPlan(t *testing.T) {
	for _, tt := range []struct {
		privileged        bool
		services          *bool
		build, helper, sv bool
	}{
		{false, nil, false, false, false},
		{true, nil, true, false, true},
		{true, new(false), true, false, false},
		{false, new(true), false, false, true},
	} {
		h := newHarness(t, func(j map[string]any) {
			j["services"] = []any{map[string]any{"name": "docker:27-dind"}}
		})
		h.cfg.Docker.Privileged, h.cfg.Docker.ServicesPrivileged = tt.privileged, tt.services
		h.f.AddImage("docker:27-dind")
		if err := Prepare(context.Background(), h.deps()); err != nil {
			t.Fatal(err)
		}
		b, _ := h.f.Container(sampleKey.Name(naming.KindBuild))
		hp, _ := h.f.Container(sampleKey.Name(naming.KindHelper))
		s, _ := h.f.Container(sampleKey.ServiceName(0))
		if b.Spec.Privileged != tt.build || hp.Spec.Privileged != tt.helper || s.Spec.Privileged != tt.sv {
			t.Errorf("privileged %v, services_privileged %v: build %v, helper %v, service %v; want %v, %v, %v",
				tt.privileged, tt.services, b.Spec.Privileged, hp.Spec.Privileged, s.Spec.Privileged, tt.build, tt.helper, tt.sv)
		}
	}
}

// A volume over a cache's mount point is refused before anything is made,
// for the paths a job that does not run as root has its caches at too.
func TestPrepareRefusesVolumesOverCaches(t *testing.T) {
	for spec, want := range map[string]string{
		"/srv/mod:/go/pkg/mod":                      `docker.volumes[0]: "/srv/mod:/go/pkg/mod" would hide or bind the cache mounted at /go/pkg/mod (cache.profiles); mount it elsewhere`,
		"/srv/x:/root":                              `docker.volumes[0]: "/srv/x:/root" would hide or bind the cache mounted at /root/.cache/go-build (cache.profiles); mount it elsewhere`,
		"/var/cache/warmcache":                      `docker.volumes[0]: "/var/cache/warmcache" would hide or bind the cache mounted at /var/cache/warmcache/root/.cache/go-build (cache.profiles); mount it elsewhere`,
		"/srv/ok:/srv/ok":                           "",
		"/var/run/docker.sock:/var/run/docker.sock": "",
	} {
		h := newHarness(t, nil)
		h.cfg.Cache.Enabled = true
		h.cfg.Docker.Volumes = []string{spec}
		err := checkVolumeTargets(h.cfg)
		if got := errString(err); got != want {
			t.Errorf("%s: %q, want %q", spec, got, want)
		}
		if want == "" {
			continue
		}
		if err := Prepare(context.Background(), h.deps()); err == nil || err.Error() != want {
			t.Errorf("Prepare = %v", err)
		}
		for _, c := range h.f.Calls() {
			if c.Method != fake.MethodPing { // the full-disk check of a failed prepare
				t.Errorf("%s: prepare called the engine: %v", spec, c)
			}
		}
	}
	h := newHarness(t, nil)
	h.cfg.Cache.Enabled = true
	h.cfg.Docker.Tmpfs = map[string]string{"/root/.npm": ""}
	h.cfg.Cache.Profiles = []string{"npm"}
	if err := checkVolumeTargets(h.cfg); errString(err) != `docker.tmpfs: "/root/.npm" would hide or bind the cache mounted at /root/.npm (cache.profiles); mount it elsewhere` {
		t.Errorf("tmpfs over a cache: %v", err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// The config's reserved targets include where the credentials go.
func TestReservedTargetsHoldTheCredentials(t *testing.T) {
	if config.SecretsDir != credentials.SecretsDir || !slices.Contains(config.ReservedVolumeTargets, credentials.SecretsDir) {
		t.Errorf("config reserves %v; the credentials are mounted at %s", config.ReservedVolumeTargets, credentials.SecretsDir)
	}
}

func TestSecurityOpts(t *testing.T) {
	dir := t.TempDir()
	profile := filepath.Join(dir, "seccomp.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := securityOpts("docker.security_opt", []string{"seccomp=" + profile, "seccomp=unconfined", "no-new-privileges", `seccomp={"a":1}`, "apparmor=x"})
	want := []string{`seccomp={"defaultAction":"SCMP_ACT_ALLOW"}`, "seccomp=unconfined", "no-new-privileges", `seccomp={"a":1}`, "apparmor=x"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("securityOpts = %q, %v; want %q", got, err, want)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := securityOpts("docker.security_opt", []string{"seccomp=" + bad}); errString(err) != "docker.security_opt: the seccomp profile "+bad+" is not JSON" {
		t.Errorf("bad profile: %v", err)
	}
	if _, err := securityOpts("docker.security_opt", []string{"seccomp=" + filepath.Join(dir, "none")}); err == nil || !strings.HasPrefix(err.Error(), "docker.security_opt: reading the seccomp profile: ") {
		t.Errorf("missing profile: %v", err)
	}
}
