package services

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
)

// proxyService is an admin service as docker.services gives it.
var proxyService = config.AdminService{
	Name: "registry.example.com/tools/proxy:$MY_VAR", Alias: "proxy, ${CI_PROJECT_NAME}-proxy",
	Entrypoint: []string{"/bin/proxy"}, Command: []string{"--port", "3128"},
	Environment: []string{"PROXY_MODE=cache", "FOR=$CI_PROJECT_PATH"},
}

// The admin's services start first, with their names and aliases
// expanded from the job's variables, their entrypoint, command and
// environment; they count towards services.max_per_job.
func TestPlanAdminServices(t *testing.T) {
	h := newHarness()
	h.cfg.Docker.Services = []config.AdminService{proxyService}
	j := sample(t, nil, nil)
	svcs, err := Plan(h.deps(), j, allowed)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range svcs {
		names = append(names, s.Image.Name)
	}
	if want := []string{"registry.example.com/tools/proxy:my-value", "postgres:16", "redis:7"}; !slices.Equal(names, want) {
		t.Fatalf("services = %q, want %q", names, want)
	}
	specs := ContainerSpecs(sampleKey, j, svcs, "net", sampleMeta)
	proxy := specs[0]
	if proxy.Name != sampleKey.ServiceName(0) || specs[1].Name != sampleKey.ServiceName(1) {
		t.Errorf("names = %s, %s", proxy.Name, specs[1].Name)
	}
	if want := []string{"registry.example.com__tools__proxy", "registry.example.com-tools-proxy", "proxy", "project-proxy"}; !slices.Equal(proxy.NetworkAliases, want) {
		t.Errorf("aliases = %q, want %q", proxy.NetworkAliases, want)
	}
	if !slices.Equal(proxy.Entrypoint, []string{"/bin/proxy"}) || !slices.Equal(proxy.Cmd, []string{"--port", "3128"}) {
		t.Errorf("entrypoint %q, cmd %q", proxy.Entrypoint, proxy.Cmd)
	}
	for _, want := range []string{"PROXY_MODE=cache", "FOR=group/project", "MY_VAR=my-value"} {
		if !slices.Contains(proxy.Env, want) {
			t.Errorf("env lacks %s: %q", want, proxy.Env)
		}
	}

	h.cfg.Services.MaxPerJob = 2
	_, err = Plan(h.deps(), j, allowed)
	var r *Refusal
	want := "the job declares 2 services and the runner adds 1 (docker.services); this runner allows at most 2 (services.max_per_job)"
	if !errors.As(err, &r) || err.Error() != want {
		t.Errorf("Plan = %v, want the refusal %q", err, want)
	}
}

func TestPlanAllowedServices(t *testing.T) {
	tests := []struct {
		name    string
		allowed []string
		admin   []config.AdminService
		want    string // "" when allowed
	}{
		{"empty list allows all", nil, nil, ""},
		{"every service matches", []string{"postgres:*", "redis:7"}, nil, ""},
		{"one does not", []string{"postgres:*", "mysql:*"}, nil,
			`service "redis:7" is not allowed by docker.allowed_services (allowed: "postgres:*", "mysql:*")`},
		{"an admin service's image is allowed", []string{"postgres:*"}, []config.AdminService{{Name: "redis:7"}}, ""},
		{"admin services themselves are not checked", []string{"postgres:*", "redis:*"}, []config.AdminService{{Name: "evil/x:1"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness()
			h.cfg.Docker.AllowedServices = tt.allowed
			h.cfg.Docker.Services = tt.admin
			svcs, err := Plan(h.deps(), sample(t, nil, nil), allowed)
			if tt.want == "" {
				if err != nil || len(svcs) != 2+len(tt.admin) {
					t.Fatalf("Plan = %d services, %v", len(svcs), err)
				}
				return
			}
			var r *Refusal
			if !errors.As(err, &r) || err.Error() != tt.want {
				t.Fatalf("Plan = %v, want the refusal %q", err, tt.want)
			}
		})
	}
}

func TestPlanDisableEntrypointOverwrite(t *testing.T) {
	h := newHarness()
	h.cfg.Docker.DisableEntrypointOverwrite = true
	j := sample(t, func(j map[string]any) {
		j["services"].([]any)[1].(map[string]any)["entrypoint"] = []any{"/bin/sh", "-c"}
		j["services"].([]any)[1].(map[string]any)["command"] = []any{"redis-server"}
	}, nil)
	svcs, err := Plan(h.deps(), j, allowed)
	if err != nil {
		t.Fatal(err)
	}
	specs := ContainerSpecs(sampleKey, j, svcs, "net", sampleMeta)
	if specs[1].Entrypoint != nil || !slices.Equal(specs[1].Cmd, []string{"redis-server"}) {
		t.Errorf("entrypoint %q, cmd %q; want the image's entrypoint and the job's command", specs[1].Entrypoint, specs[1].Cmd)
	}
	want := []string{`WARNING: service redis:7: entrypoint ["/bin/sh" "-c"] is ignored: docker.disable_entrypoint_overwrite is set`}
	if !slices.Equal(h.jobLogLines(), want) {
		t.Errorf("job log = %q, want %q", h.jobLogLines(), want)
	}
}

func TestWaitPorts(t *testing.T) {
	tcp := func(n ...int) []engine.Port {
		var out []engine.Port
		for _, p := range n {
			out = append(out, engine.Port{Number: p, Protocol: "tcp"})
		}
		return out
	}
	tests := []struct {
		name     string
		env      []string
		declared []job.Port
		want     []engine.Port
		err      string
	}{
		{"nothing: the image's", []string{"A=1"}, nil, nil, ""},
		{"ports:", nil, []job.Port{{Number: 8080, Protocol: "http"}, {Number: 8443, Protocol: "https"}, {Number: 8080}}, tcp(8080, 8443), ""},
		{"HEALTHCHECK_TCP_PORT wins", []string{"HEALTHCHECK_TCP_PORT=27017"}, []job.Port{{Number: 80}}, tcp(27017), ""},
		{"any case, the last one wins", []string{"HEALTHCHECK_TCP_PORT=1", "healthcheck_tcp_port= 2 "}, nil, tcp(2), ""},
		{"not a number", []string{"HEALTHCHECK_TCP_PORT=mongo"}, nil, nil, `HEALTHCHECK_TCP_PORT "mongo" is not a port number (1-65535)`},
		{"out of range", []string{"HEALTHCHECK_TCP_PORT=70000"}, nil, nil, `HEALTHCHECK_TCP_PORT "70000" is not a port number (1-65535)`},
		{"bad ports:", nil, []job.Port{{Number: 0}}, nil, "ports: 0 is not a port number (1-65535)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := waitPorts(tt.env, tt.declared)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("waitPorts = %v, %v; want the error %q", got, err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("waitPorts = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestExposedTCPAtMost20(t *testing.T) {
	var exposed []engine.Port
	for p := 1000; p < 1030; p++ {
		exposed = append(exposed, engine.Port{Number: p, Protocol: "udp"}, engine.Port{Number: p, Protocol: "tcp"})
	}
	got := exposedTCP(exposed)
	if len(got) != 20 || got[0].Number != 1000 || got[19].Number != 1019 || got[19].Protocol != "tcp" {
		t.Errorf("exposedTCP = %v, want the 20 lowest TCP ports", got)
	}
}

// HEALTHCHECK_TCP_PORT makes the wait try that port only, though the
// image EXPOSEs another one that never opens; an invalid one refuses the
// job before anything is created.
func TestServiceWaitHealthcheckPort(t *testing.T) {
	open, closed := listen(t)
	h := newHarness()
	h.cfg.Services.WaitTimeout = 2 * time.Second
	j := sample(t, func(j map[string]any) {
		j["services"].([]any)[1].(map[string]any)["variables"] = []any{
			map[string]any{"key": "HEALTHCHECK_TCP_PORT", "value": strconv.Itoa(open), "public": true},
		}
	}, nil)
	helper, svcs, specs := h.start(t, j, map[string][]engine.Port{"redis:7": {{Number: closed, Protocol: "tcp"}}})
	h.f.SetIP(sampleKey.ServiceName(0), "127.0.0.1")
	h.f.SetIP(sampleKey.ServiceName(1), "127.0.0.1")
	Wait(context.Background(), h.deps(), helper, svcs, specs)
	if !strings.Contains(h.jobLog(), "Services ready in ") || strings.Contains(h.jobLog(), "WARNING") {
		t.Errorf("job log:\n%s", h.jobLog())
	}

	bad := sample(t, func(j map[string]any) {
		j["services"].([]any)[0].(map[string]any)["variables"] = []any{
			map[string]any{"key": "HEALTHCHECK_TCP_PORT", "value": "db", "public": true},
		}
	}, nil)
	_, err := Plan(newHarness().deps(), bad, allowed)
	var r *Refusal
	if want := `service postgres:16: HEALTHCHECK_TCP_PORT "db" is not a port number (1-65535)`; !errors.As(err, &r) || err.Error() != want {
		t.Errorf("Plan = %v, want the refusal %q", err, want)
	}
}
