package services

import (
	"context"
	"errors"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/naming"
)

func TestPlanRefuses(t *testing.T) {
	errPolicy := errors.New("pull policy [always] from image:pull_policy is not allowed")
	tests := []struct {
		name    string
		edit    func(j map[string]any)
		env     map[string]string
		max     int
		refusal bool // else the pull policies' error, wrapped
		want    string
	}{
		{"more than allowed", nil, nil, 1, true,
			"the job declares 2 services; this runner allows at most 1 (services.max_per_job)"},
		{"no services allowed", nil, nil, 0, true,
			"the job declares 2 services; this runner allows at most 0 (services.max_per_job)"},
		{"pull policy not allowed", func(j map[string]any) {
			j["services"].([]any)[1].(map[string]any)["pull_policy"] = []any{"always"}
		}, nil, 10, false, "service redis:7: " + errPolicy.Error()},
		{"no image name", func(j map[string]any) {
			j["services"].([]any)[1].(map[string]any)["name"] = " "
		}, nil, 10, true, "service 2 has no image name"},
		{"broken CUSTOM_ENV_CI_JOB_SERVICES", func(j map[string]any) { delete(j, "services") },
			map[string]string{"CUSTOM_ENV_CI_JOB_SERVICES": "[{"}, 10, true,
			"CUSTOM_ENV_CI_JOB_SERVICES is not a JSON list of services: unexpected end of JSON input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness()
			h.cfg.Services.MaxPerJob = tt.max
			policies := func(p []string) ([]string, error) {
				if len(p) > 0 {
					return nil, errPolicy
				}
				return allowed(p)
			}
			svcs, err := Plan(h.deps(), sample(t, tt.edit, tt.env), policies)
			var r *Refusal
			if err == nil || err.Error() != tt.want || errors.As(err, &r) != tt.refusal || !tt.refusal && !errors.Is(err, errPolicy) {
				t.Fatalf("Plan = %v, want %q (a refusal: %v)", err, tt.want, tt.refusal)
			}
			if svcs != nil || len(h.f.Calls()) != 0 || h.jobLog() != "" {
				t.Errorf("Plan refused, but planned %+v, called the engine %v, wrote %q", svcs, h.f.Calls(), h.jobLog())
			}
		})
	}
}

func TestServiceAliasWarnings(t *testing.T) {
	h := newHarness()
	j := sample(t, func(j map[string]any) {
		svc := j["services"].([]any)[0].(map[string]any)
		svc["alias"] = "db,bad!alias"
		svc["executor_opts"] = map[string]any{"docker": map[string]any{"platform": "linux/arm64"}}
	}, nil)
	svcs, err := Plan(h.deps(), j, allowed)
	if err != nil {
		t.Fatal(err)
	}
	Specs(h.deps(), sampleKey, j, svcs, sampleKey.Name(naming.KindNetwork), sampleMeta)
	for _, want := range []string{
		`WARNING: service postgres:16: alias "bad!alias" is not a valid host name and is ignored`,
		`WARNING: service postgres:16: platform "linux/arm64" is ignored: the engine's own platform is used`,
		"Starting service postgres:16, reachable as postgres, db",
	} {
		if !slices.Contains(h.jobLogLines(), want) {
			t.Errorf("job log lacks %q:\n%s", want, h.jobLog())
		}
	}
}

// TestSpecs: the service containers keep their images' entrypoints and
// commands, get the job's public variables and their own, and are
// reachable by their aliases on a user-defined network only.
func TestSpecs(t *testing.T) {
	j := sample(t, nil, nil)
	for _, tt := range []struct {
		network     string
		wantAliases bool
	}{
		{sampleKey.Name(naming.KindNetwork), true},
		{"ci-services", true}, // the admin's own network
		{"host", false},
		{"bridge", false},
	} {
		t.Run(tt.network, func(t *testing.T) {
			h := newHarness()
			svcs, err := Plan(h.deps(), j, allowed)
			if err != nil {
				t.Fatal(err)
			}
			specs := Specs(h.deps(), sampleKey, j, svcs, tt.network, sampleMeta)
			var wantLog []string
			for i, want := range []struct {
				image   string
				aliases []string
				env     []string // besides the job's public variables
			}{
				{"postgres:16", []string{"postgres", "db"}, []string{"POSTGRES_PASSWORD=pw", "DB_URL=postgres://group/project/"}},
				{"redis:7", []string{"redis"}, nil},
			} {
				s := specs[i]
				if !tt.wantAliases {
					want.aliases = nil
				}
				if s.Name != sampleKey.ServiceName(i) || s.Image != want.image || s.NetworkMode != tt.network || !slices.Equal(s.NetworkAliases, want.aliases) {
					t.Errorf("service %d: %s, image %s on %s as %q; want %s, %s on %s as %q", i, s.Name, s.Image, s.NetworkMode, s.NetworkAliases,
						sampleKey.ServiceName(i), want.image, tt.network, want.aliases)
				}
				if s.Entrypoint != nil || s.Cmd != nil || s.KeepStdinOpen || len(s.Mounts) != 0 {
					t.Errorf("service %d keeps neither its image's entrypoint and command nor stays apart: %+v", i, s)
				}
				if want := sampleKey.Labels(naming.KindService, sampleMeta); !maps.Equal(s.Labels, want) {
					t.Errorf("service %d: labels =\n%v\nwant\n%v", i, s.Labels, want)
				}
				env := strings.Join(s.Env, "\n")
				for _, e := range append([]string{"CI_JOB_ID=22961", "MY_VAR=my-value"}, want.env...) {
					if !slices.Contains(s.Env, e) {
						t.Errorf("service %d env lacks %q", i, e)
					}
				}
				// Secrets stay in the job: the token and the project's variables.
				for _, secret := range []string{"glcbt-NGMyZWMyNmI1ODdmODJk", "s3cr3t-value-123"} {
					if strings.Contains(env, secret) {
						t.Errorf("service %d env holds the secret %q", i, secret)
					}
				}
				if tt.wantAliases {
					wantLog = append(wantLog, "Starting service "+want.image+", reachable as "+strings.Join(want.aliases, ", "))
				} else {
					wantLog = append(wantLog, "Starting service "+want.image)
				}
			}
			if len(specs) != 2 || !slices.Equal(h.jobLogLines(), wantLog) {
				t.Errorf("%d specs, job log %q; want 2 and %q", len(specs), h.jobLogLines(), wantLog)
			}
		})
	}
}

// The job gets a network of its own, labelled as its, unless the admin
// set network_mode.
func TestMakeNetwork(t *testing.T) {
	for _, mode := range []string{"", "host", "ci-services"} {
		h := newHarness()
		h.cfg.Docker.NetworkMode = mode
		network, err := MakeNetwork(context.Background(), h.deps(), Networks{Own: ownNetwork()}).Name()
		if err != nil {
			t.Fatalf("network_mode %q: %v", mode, err)
		}
		found, _ := h.f.List(context.Background(), map[string]string{naming.LabelKind: string(naming.KindNetwork)})
		if mode != "" {
			if network != mode || len(found) != 0 {
				t.Errorf("network_mode %q: joins %q, made %+v", mode, network, found)
			}
			continue
		}
		if want := sampleKey.Name(naming.KindNetwork); network != want || len(found) != 1 || found[0].Name != want || found[0].Labels[naming.LabelJob] != sampleKey.Base() {
			t.Errorf("joins %q, networks %+v; want the job's, labelled", network, found)
		}
	}

	h := newHarness()
	h.f.FailNext(fake.MethodCreateNetwork, errors.New("no address pool left"))
	if _, err := MakeNetwork(context.Background(), h.deps(), Networks{Own: ownNetwork()}).Name(); err == nil || err.Error() != "creating the job's network: no address pool left" {
		t.Errorf("MakeNetwork = %v", err)
	}
}

// The slot's network is made by the slot's first job, and made again if
// it was removed; a later job of the slot reuses it with one inspect.
func TestMakeNetworkSlot(t *testing.T) {
	h := newHarness()
	ctx := context.Background()
	slot := slotNetwork()
	for i, want := range []string{fake.MethodCreateNetwork, "", fake.MethodCreateNetwork} {
		if i == 2 {
			if err := h.f.Remove(ctx, engine.Resource{Type: engine.Network, Name: slot.Name}); err != nil {
				t.Fatal(err)
			}
		}
		before := len(h.f.Calls())
		network, err := MakeNetwork(ctx, h.deps(), Networks{Slot: slot, Own: ownNetwork()}).Name()
		if err != nil || network != slot.Name {
			t.Fatalf("job %d: MakeNetwork = %q, %v; want the slot's network", i, network, err)
		}
		var created []string
		for _, c := range h.f.Calls()[before:] {
			if c.Method == fake.MethodCreateNetwork {
				created = append(created, c.Method)
			}
		}
		if (want == "") != (len(created) == 0) {
			t.Errorf("job %d: calls %v; want a network created: %v", i, h.f.Calls()[before:], want != "")
		}
		if spec, ok := h.f.Network(slot.Name); !ok || spec.Labels[naming.LabelJob] != "" {
			t.Errorf("job %d: slot network %+v, %v; want one with no job label", i, spec, ok)
		}
	}
	if h.f.HasNetwork(ownNetwork().Name) {
		t.Error("the job's own network was made besides the slot's")
	}
}

// The containers of an ended job (renamed by its cleanup) are taken off
// the slot's network; a container of a job that has not ended is left
// alone, and the job gets a network of its own.
func TestMakeNetworkSlotLeftovers(t *testing.T) {
	ctx := context.Background()
	slot := slotNetwork()
	earlier := naming.JobKey{Runner: "runner", Instance: "gitlab.example.com", ProjectID: 9, Slot: sampleKey.Slot, JobID: 1}
	for _, ended := range []bool{true, false} {
		h := newHarness()
		if err := h.f.CreateNetwork(ctx, *slot); err != nil {
			t.Fatal(err)
		}
		left := earlier.Name(naming.KindHelper)
		h.f.AddImage(testHelperImage)
		if err := h.f.CreateContainer(ctx, engine.ContainerSpec{Name: left, Image: testHelperImage, NetworkMode: slot.Name}); err != nil {
			t.Fatal(err)
		}
		if err := h.f.StartContainer(ctx, left); err != nil {
			t.Fatal(err)
		}
		if ended {
			left = naming.Ended(left, "x1")
			if err := h.f.RenameContainer(ctx, earlier.Name(naming.KindHelper), left); err != nil {
				t.Fatal(err)
			}
		}
		made := MakeNetwork(ctx, h.deps(), Networks{Slot: slot, Own: ownNetwork()})
		network, err := made.Name()
		if err != nil {
			t.Fatal(err)
		}
		if err := made.Ready(); err != nil {
			t.Fatal(err)
		}
		info, err := h.f.InspectNetwork(ctx, slot.Name)
		if err != nil {
			t.Fatal(err)
		}
		if ended && (network != slot.Name || len(info.Containers) != 0) {
			t.Errorf("an ended job's container: joins %q, slot network has %v; want the slot's, emptied", network, info.Containers)
		}
		if !ended && (network != ownNetwork().Name || !h.f.HasNetwork(network) || !slices.Equal(info.Containers, []string{left})) {
			t.Errorf("a live job's container: joins %q, slot network has %v; want a network of the job's own, the other left alone", network, info.Containers)
		}
	}
}

// Once the job runs on the slot's network, a container of another job
// that is not over fails the check; an ended one is taken off.
func TestCheckAlone(t *testing.T) {
	ctx := context.Background()
	slot := slotNetwork()
	h := newHarness()
	if err := h.f.CreateNetwork(ctx, *slot); err != nil {
		t.Fatal(err)
	}
	h.f.AddImage(testHelperImage)
	other := naming.JobKey{Runner: "runner", Instance: "gitlab.example.com", ProjectID: 9, Slot: sampleKey.Slot, JobID: 1}.Name(naming.KindHelper)
	for _, name := range []string{sampleKey.Name(naming.KindHelper), naming.Ended("warmcache-r-abc-p1-c0-j1-helper", "x"), other} {
		if err := h.f.CreateContainer(ctx, engine.ContainerSpec{Name: name, Image: testHelperImage, NetworkMode: slot.Name}); err != nil {
			t.Fatal(err)
		}
		if err := h.f.StartContainer(ctx, name); err != nil {
			t.Fatal(err)
		}
		err := CheckAlone(ctx, h.deps(), slot.Name, sampleKey.Base())
		if (name == other) != (err != nil) {
			t.Errorf("with %s on the network: CheckAlone = %v", name, err)
		}
	}
	if info, _ := h.f.InspectNetwork(ctx, slot.Name); slices.Contains(info.Containers, naming.Ended("warmcache-r-abc-p1-c0-j1-helper", "x")) {
		t.Errorf("the ended job's container is still on the network: %v", info.Containers)
	}
}

// listen returns a loopback port that accepts connections, and one that
// refuses them.
func listen(t *testing.T) (open, closed int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	c, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed = c.Addr().(*net.TCPAddr).Port
	c.Close()
	return l.Addr().(*net.TCPAddr).Port, closed
}

// TestServiceWait dials the services' exposed TCP ports (here on
// loopback, where the fake says the services are).
func TestServiceWait(t *testing.T) {
	open, closed := listen(t)
	tests := []struct {
		name     string
		ports    []engine.Port
		stop     bool // the service exits while it is waited for
		wantLog  []string
		wantSlow bool // the wait runs into its timeout
	}{
		{"port open", []engine.Port{{Number: open, Protocol: "tcp"}, {Number: closed, Protocol: "udp"}},
			false, []string{"Services ready in "}, false},
		{"port never opens", []engine.Port{{Number: open, Protocol: "tcp"}, {Number: closed, Protocol: "tcp"}}, false, []string{
			"WARNING: service postgres:16 is not ready: port " + engine.Port{Number: closed, Protocol: "tcp"}.String() + " did not open within 1s (last try: connection refused); the job goes on\n" +
				"  Last lines of its output:\n  | starting\n  | listening on a unix socket only\n",
		}, true},
		{"service exits", []engine.Port{{Number: closed, Protocol: "tcp"}}, true, []string{
			"WARNING: service postgres:16 is not ready: it stopped (exited) before port " + engine.Port{Number: closed, Protocol: "tcp"}.String() + " opened; the job goes on\n",
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness()
			// Long enough for a loaded machine to try the port at least
			// once before the end.
			h.cfg.Services.WaitTimeout = time.Second
			svc := sampleKey.ServiceName(0)
			helper, svcs, specs := h.start(t, sample(t, nil, nil), map[string][]engine.Port{"postgres:16": tt.ports})
			h.f.SetIP(svc, "127.0.0.1")
			h.f.SetLogs(svc, "starting\nlistening on a unix socket only\n")
			if tt.stop {
				h.f.SetHook(func(method, name string) error {
					if method == fake.MethodContainerState && name == svc {
						h.f.Stop(svc)
					}
					return nil
				})
			}
			start := time.Now()
			Wait(context.Background(), h.deps(), helper, svcs, specs)
			if slow := time.Since(start) >= time.Second; slow != tt.wantSlow {
				t.Errorf("the wait took %s; want the timeout reached: %v", time.Since(start), tt.wantSlow)
			}
			for _, want := range tt.wantLog {
				if !strings.Contains(h.jobLog(), want) {
					t.Errorf("job log lacks %q:\n%s", want, h.jobLog())
				}
			}
			if !tt.stop && !tt.wantSlow && strings.Contains(h.jobLog(), "WARNING") {
				t.Errorf("unexpected warning:\n%s", h.jobLog())
			}
			// The image was present: prepare's inspect of it gave its
			// ports, and the wait inspects it no more.
			if got := methods(h.f, "postgres:16"); len(got) != 0 {
				t.Errorf("service image calls = %v, want none", got)
			}
		})
	}
}

func TestServiceWaitSkipped(t *testing.T) {
	for _, tt := range []struct {
		name  string
		setup func(h *harness)
		want  string // "" : no line at all
	}{
		{"no network", func(h *harness) { h.cfg.Docker.NetworkMode = "none" }, "Not waiting for services: network_mode is none"},
		{"wait off", func(h *harness) { h.cfg.Services.WaitTimeout = 0 }, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness()
			tt.setup(h)
			helper, svcs, specs := h.start(t, sample(t, nil, nil), map[string][]engine.Port{"postgres:16": {{Number: 5432, Protocol: "tcp"}}})
			Wait(context.Background(), h.deps(), helper, svcs, specs)
			if got := methods(h.f, sampleKey.ServiceName(0)); !slices.Equal(got, []string{"CreateContainer", "StartContainer"}) {
				t.Errorf("service calls %v: it was waited for", got)
			}
			if tt.want != "" && !slices.Contains(h.jobLogLines(), tt.want) {
				t.Errorf("job log lacks %q:\n%s", tt.want, h.jobLog())
			}
			if strings.Contains(h.jobLog(), "Services ready") || strings.Contains(h.jobLog(), "WARNING") {
				t.Errorf("job log:\n%s", h.jobLog())
			}
		})
	}
}
