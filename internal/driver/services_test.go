package driver

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/plan"
	"github.com/warmcache/warmcache/internal/protocol"
	"github.com/warmcache/warmcache/internal/reap"
)

// withSampleServices puts back the runner sample's two services:
// postgres:16 (alias db, POSTGRES_PASSWORD=pw) and redis:7.
func withSampleServices(t *testing.T, edit func(j map[string]any)) *harness {
	t.Helper()
	return newHarness(t, func(j map[string]any) {
		j["services"] = []any{
			map[string]any{"name": "postgres:16", "alias": "db", "variables": []any{
				map[string]any{"key": "POSTGRES_PASSWORD", "value": "pw", "public": true},
				map[string]any{"key": "DB_URL", "value": "postgres://$CI_PROJECT_PATH/$SECRET_TOKEN", "public": true},
			}},
			map[string]any{"name": "redis:7"},
		}
		if edit != nil {
			edit(j)
		}
	})
}

// With docker.network_per_job, the job makes a network of its own.
func TestPrepareJobNetwork(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Docker.NetworkPerJob = true
	if err := Prepare(context.Background(), h.deps()); err != nil {
		t.Fatal(err)
	}
	network := sampleKey.Name(naming.KindNetwork)
	calls := h.f.Calls()
	made := slices.Index(calls, fake.Call{Method: fake.MethodCreateNetwork, Name: network})
	helperMade := slices.Index(calls, fake.Call{Method: fake.MethodCreateContainer, Name: sampleKey.Name(naming.KindHelper)})
	if made < 0 || made > helperMade {
		t.Fatalf("calls %v: the network must exist before the helper", calls)
	}
	found, err := h.f.List(context.Background(), map[string]string{naming.LabelKind: string(naming.KindNetwork)})
	if err != nil || len(found) != 1 || found[0].Name != network || found[0].Labels[naming.LabelJob] != sampleKey.Base() {
		t.Fatalf("networks = %+v, %v; want the job's, labelled", found, err)
	}
	helper, _ := h.f.Container(sampleKey.Name(naming.KindHelper))
	build, _ := h.f.Container(sampleKey.Name(naming.KindBuild))
	if helper.Spec.NetworkMode != network || build.Spec.NetworkMode != "container:"+helper.Spec.Name {
		t.Errorf("helper on %q, build on %q: want the job network and the helper's namespace", helper.Spec.NetworkMode, build.Spec.NetworkMode)
	}
}

func TestPrepareNetworkFails(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Docker.NetworkPerJob = true
	h.f.FailNext(fake.MethodCreateNetwork, errors.New("no address pool left"))
	err := Prepare(context.Background(), h.deps())
	if err == nil || err.Error() != "creating the job's network: no address pool left" {
		t.Fatalf("Prepare = %v", err)
	}
	if got := methods(h.f, sampleKey.Name(naming.KindHelper)); len(got) != 0 {
		t.Errorf("helper calls %v without its network", got)
	}
}

func TestPrepareServices(t *testing.T) {
	h := withSampleServices(t, nil)
	from := time.Now()
	if err := Prepare(context.Background(), h.deps()); err != nil {
		t.Fatal(err)
	}
	to := time.Now()
	network := plan.SlotNetwork(h.job(), h.cfg, to).Name
	for i, want := range []struct {
		image   string
		aliases []string
		env     []string // besides the job's public variables
	}{
		{"postgres:16", []string{"postgres", "db"}, []string{"POSTGRES_PASSWORD=pw", "DB_URL=postgres://group/project/"}},
		{"redis:7", []string{"redis"}, nil},
	} {
		c, ok := h.f.Container(sampleKey.ServiceName(i))
		if !ok || c.State != fake.Running {
			t.Fatalf("service %d: %+v, %v; want running", i, c, ok)
		}
		checkLabels(t, c.Spec.Name, c.Spec.Labels, naming.KindService, from, to)
		if c.Spec.Image != want.image || c.Spec.NetworkMode != network || !slices.Equal(c.Spec.NetworkAliases, want.aliases) {
			t.Errorf("service %d: image %s on %s as %q; want %s on %s as %q", i, c.Spec.Image, c.Spec.NetworkMode, c.Spec.NetworkAliases, want.image, network, want.aliases)
		}
		if c.Spec.Entrypoint != nil || c.Spec.Cmd != nil || c.Spec.KeepStdinOpen || len(c.Spec.Mounts) != 0 {
			t.Errorf("service %d keeps neither its image's entrypoint and command nor stays apart: %+v", i, c.Spec)
		}
		env := strings.Join(c.Spec.Env, "\n")
		for _, e := range append([]string{"CI_JOB_ID=22961", "MY_VAR=my-value"}, want.env...) {
			if !slices.Contains(c.Spec.Env, e) {
				t.Errorf("service %d env lacks %q", i, e)
			}
		}
		// Secrets stay in the job: the token and the project's variables.
		for _, secret := range []string{"glcbt-NGMyZWMyNmI1ODdmODJk", "s3cr3t-value-123"} {
			if strings.Contains(env, secret) {
				t.Errorf("service %d env holds the secret %q", i, secret)
			}
		}
	}
	log := h.stderr.String()
	for _, want := range []string{
		"Starting service postgres:16, reachable as postgres, db\n",
		"Starting service redis:7, reachable as redis\n",
		"Services ready in ",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("job log lacks %q:\n%s", want, log)
		}
	}

	// Cleanup removes the services, then the network they were on.
	if err := Cleanup(h.deps()); err != nil {
		t.Fatal(err)
	}
	if left, _ := h.f.List(context.Background(), map[string]string{naming.LabelJob: sampleKey.Base()}); len(left) != 0 {
		t.Errorf("left after cleanup: %+v", left)
	}
}

func TestServicesOnConfiguredNetwork(t *testing.T) {
	for _, tt := range []struct {
		mode        string
		wantAliases bool
	}{
		{"host", false},
		{"bridge", false},
		{"ci-services", true}, // the admin's own network
	} {
		t.Run(tt.mode, func(t *testing.T) {
			h := withSampleServices(t, nil)
			h.cfg.Docker.NetworkMode = tt.mode
			h.f.AddNetwork("ci-services", nil)
			if err := Prepare(context.Background(), h.deps()); err != nil {
				t.Fatal(err)
			}
			if slices.Contains(methods(h.f, ""), fake.MethodCreateNetwork) {
				t.Error("a job network was made although network_mode is set")
			}
			c, _ := h.f.Container(sampleKey.ServiceName(0))
			if c.Spec.NetworkMode != tt.mode || (len(c.Spec.NetworkAliases) > 0) != tt.wantAliases {
				t.Errorf("service on %q with aliases %q", c.Spec.NetworkMode, c.Spec.NetworkAliases)
			}
		})
	}
}

func TestPlanServicesRefuses(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(j map[string]any)
		setup func(h *harness)
		want  string
	}{
		{"more than allowed", nil, func(h *harness) { h.cfg.Services.MaxPerJob = 1 },
			"the job declares 2 services; this runner allows at most 1 (services.max_per_job)"},
		{"no services allowed", nil, func(h *harness) { h.cfg.Services.MaxPerJob = 0 },
			"the job declares 2 services; this runner allows at most 0 (services.max_per_job)"},
		{"pull policy not allowed", func(j map[string]any) {
			j["services"].([]any)[1].(map[string]any)["pull_policy"] = []any{"always"}
		}, func(h *harness) { h.cfg.Docker.AllowedPullPolicies = []string{"if-not-present"} },
			"service redis:7: pull policy [always] from image:pull_policy is not allowed; the runner allows [if-not-present] (docker.allowed_pull_policies)"},
		{"no image name", func(j map[string]any) {
			j["services"].([]any)[1].(map[string]any)["name"] = " "
		}, nil, "service 2 has no image name"},
		{"service not allowed", nil, func(h *harness) { h.cfg.Docker.AllowedServices = []string{"postgres:*"} },
			`service "redis:7" is not allowed by docker.allowed_services (allowed: "postgres:*")`},
		{"broken CUSTOM_ENV_CI_JOB_SERVICES", func(j map[string]any) { delete(j, "services") }, func(h *harness) {
			h.env["CUSTOM_ENV_CI_JOB_SERVICES"] = "[{"
		}, "CUSTOM_ENV_CI_JOB_SERVICES is not a JSON list of services: unexpected end of JSON input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := withSampleServices(t, tt.edit)
			if tt.setup != nil {
				tt.setup(h)
			}
			err := Prepare(context.Background(), h.deps())
			var bf *protocol.BuildFailure
			if err == nil || err.Error() != tt.want || !errors.As(err, &bf) {
				t.Fatalf("Prepare = %v, want the build failure %q", err, tt.want)
			}
			for _, c := range methods(h.f, "") {
				if c != fake.MethodPing { // the full-disk check of a failure
					t.Errorf("engine calls before the refusal: %v", methods(h.f, ""))
					break
				}
			}
		})
	}
}

// A service image that was present is inspected once: the inspect of its
// pull policy also gives the ports the wait tries.
func TestPrepareInspectsServiceImageOnce(t *testing.T) {
	h := withSampleServices(t, nil)
	h.f.AddImage("postgres:16", "redis:7")
	h.f.SetImageInfo("postgres:16", engine.ImageInfo{ExposedPorts: []engine.Port{{Number: 5432, Protocol: "udp"}}})
	if err := Prepare(context.Background(), h.deps()); err != nil {
		t.Fatal(err)
	}
	if got := methods(h.f, "postgres:16"); !slices.Equal(got, []string{"InspectImage"}) {
		t.Errorf("service image calls = %v, want one InspectImage", got)
	}
	if !strings.Contains(h.stderr.String(), "Services ready in ") {
		t.Errorf("job log lacks the wait:\n%s", h.stderr)
	}
}

// With a background starter, cleanup marks the job's containers ended
// (renames them) and hands everything of the job to a detached process,
// the job's own network by its id; if that process cannot start,
// everything goes at once.
func TestCleanupRemovesInBackground(t *testing.T) {
	for _, startFails := range []bool{false, true} {
		h := withSampleServices(t, nil)
		h.cfg.Docker.NetworkPerJob = true
		if err := Prepare(context.Background(), h.deps()); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		id := h.f.NetworkID(sampleKey.Name(naming.KindNetwork))
		background := &detachedRecorder{}
		if startFails {
			background.err = errors.New("fork failed")
		}
		d := h.deps()
		d.Detached = background
		if err := Cleanup(d); err != nil {
			t.Fatal(err)
		}
		left, _ := h.f.List(ctx, map[string]string{naming.LabelJob: sampleKey.Base()})
		if startFails {
			if len(left) != 0 || len(background.removed) != 0 {
				t.Errorf("start fails: left %+v, background %+v; want everything removed at once", left, background.removed)
			}
			continue
		}
		if len(background.removed) != 1 || background.removed[0].base != sampleKey.Base() {
			t.Fatalf("background removals %+v, want one of the job", background.removed)
		}
		rs := background.removed[0].rs
		if len(rs) != len(left) || len(left) != 7 { // 4 containers, 2 volumes, the network
			t.Errorf("handed %d resources, %d left: want the 7 of the job, all left for the detached process", len(rs), len(left))
		}
		for _, r := range rs {
			if r.Type == engine.Container && !naming.IsEnded(r.Name) || r.Type == engine.Network && r.ID != id {
				t.Errorf("handed %+v: want containers marked ended, the network by its id %s", r, id)
			}
		}
		// What the detached process does.
		if err := reap.RemoveEnded(ctx, h.f, nil, sampleKey.Base(), rs, time.Now()); err != nil {
			t.Fatalf("RemoveJob: %v", err)
		}
		if left, _ := h.f.List(ctx, map[string]string{naming.LabelJob: sampleKey.Base()}); len(left) != 0 {
			t.Errorf("left after the detached removal: %+v", left)
		}
	}
}

// The detached removal of attempt 1's resources may run after the runner
// retried the preparation: attempt 2's containers and network, of the
// same names as attempt 1's first ones, stay.
func TestBackgroundRemovalSparesTheRetry(t *testing.T) {
	for _, perJob := range []bool{true, false} {
		h := withSampleServices(t, nil)
		h.cfg.Docker.NetworkPerJob = perJob
		if err := Prepare(context.Background(), h.deps()); err != nil {
			t.Fatal(err)
		}
		background := &detachedRecorder{}
		d := h.deps()
		d.Detached = background
		if err := Cleanup(d); err != nil {
			t.Fatal(err)
		}
		if len(background.removed) != 1 {
			t.Fatalf("background removals %+v, want one", background.removed)
		}
		// The hand-over, seconds before the runner's retry (labels say
		// when a volume was made to the second).
		endedAt := time.Now().Add(-2 * time.Second)
		if err := Prepare(context.Background(), h.deps()); err != nil { // the retry
			t.Fatal(err)
		}
		// What the detached process does, late: attempt 2's volumes are
		// younger than the hand-over, and stay.
		if err := reap.RemoveEnded(context.Background(), h.f, nil, sampleKey.Base(), background.removed[0].rs, endedAt); err != nil {
			t.Errorf("network per job %v: the late removal: %v", perJob, err)
		}
		for _, v := range []string{sampleKey.Name(naming.KindBuilds), sampleKey.Name("cachedir")} {
			if _, ok := h.f.Volume(v); !ok {
				t.Errorf("network per job %v: the late removal of attempt 1's volumes removed attempt 2's %s", perJob, v)
			}
		}
		for _, name := range []string{sampleKey.Name(naming.KindHelper), sampleKey.Name(naming.KindBuild), sampleKey.ServiceName(0)} {
			if c, ok := h.f.Container(name); !ok || c.State != fake.Running {
				t.Errorf("network per job %v: attempt 2's %s after the late removal: %+v", perJob, name, c)
			}
		}
		if perJob && !h.f.HasNetwork(sampleKey.Name(naming.KindNetwork)) {
			t.Error("the late removal of attempt 1's network removed attempt 2's")
		}
		if err := Run(context.Background(), h.deps(), writeFile(t, "script", "true\n"), "build_script"); err != nil {
			t.Errorf("network per job %v: attempt 2 after the late removal: %v", perJob, err)
		}
	}
}

// The next job of the slot may prepare while the last one's containers,
// marked ended, are still being removed: it runs on the slot's network,
// and they are taken off it.
func TestNextJobWhileBackgroundRemovalRuns(t *testing.T) {
	first := withSampleServices(t, nil)
	if err := Prepare(context.Background(), first.deps()); err != nil {
		t.Fatal(err)
	}
	d := first.deps()
	d.Detached = &detachedRecorder{} // records, removes nothing: still to come
	if err := Cleanup(d); err != nil {
		t.Fatal(err)
	}
	second := withSampleServices(t, func(j map[string]any) { j["id"] = 22962 })
	second.f = first.f
	if err := Prepare(context.Background(), second.deps()); err != nil {
		t.Fatal(err)
	}
	network := plan.SlotNetwork(second.job(), second.cfg, time.Now()).Name
	info, err := second.f.InspectNetwork(context.Background(), network)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range info.Containers {
		if !strings.HasPrefix(c, second.job().Key().Base()+"-") {
			t.Errorf("on the slot's network with the second job: %s", c)
		}
	}
	if svc, _ := second.f.Container(second.job().Key().ServiceName(0)); svc.Spec.NetworkMode != network {
		t.Errorf("the second job's service is on %s, want the slot's network", svc.Spec.NetworkMode)
	}
	// They are off it before the second job's containers start on it.
	calls := second.f.Calls()
	off := -1 // the last disconnect
	for i, c := range calls {
		if c.Method == fake.MethodDisconnect {
			off = i
		}
	}
	helperStart := slices.Index(calls, fake.Call{Method: fake.MethodStartContainer, Name: second.job().Key().Name(naming.KindHelper)})
	for i := range 2 {
		if s := slices.Index(calls, fake.Call{Method: fake.MethodStartContainer, Name: second.job().Key().ServiceName(i)}); s < off {
			t.Errorf("service %d started at call %d, before the ended job's containers were taken off (%d)", i, s, off)
		}
	}
	if off < 0 || helperStart < off {
		t.Errorf("calls %v: the ended job's containers must be taken off before the helper starts", calls)
	}
}

// The services start before the build container, as under the Docker
// executor; the helper does not wait for them.
func TestServicesStartBeforeBuild(t *testing.T) {
	h := withSampleServices(t, nil)
	if err := Prepare(context.Background(), h.deps()); err != nil {
		t.Fatal(err)
	}
	calls := h.f.Calls()
	buildStart := slices.Index(calls, fake.Call{Method: fake.MethodStartContainer, Name: sampleKey.Name(naming.KindBuild)})
	for i := range 2 {
		if s := slices.Index(calls, fake.Call{Method: fake.MethodStartContainer, Name: sampleKey.ServiceName(i)}); s < 0 || s > buildStart {
			t.Errorf("service %d started at call %d, the build container at %d", i, s, buildStart)
		}
	}
}

// The jobs of one slot run on the slot's network one after the other: the
// first makes it, the next finds it with one inspect, and each job's
// service keeps its alias on it.
func TestPrepareReusesSlotNetwork(t *testing.T) {
	first := withSampleServices(t, nil)
	second := withSampleServices(t, func(j map[string]any) { j["id"] = 22962 })
	second.f = first.f
	for i, h := range []*harness{first, second} {
		before := len(h.f.Calls())
		if err := Prepare(context.Background(), h.deps()); err != nil {
			t.Fatalf("job %d: %v", i, err)
		}
		network := plan.SlotNetwork(h.job(), h.cfg, time.Now()).Name
		made := slices.Contains(h.f.Calls()[before:], fake.Call{Method: fake.MethodCreateNetwork, Name: network})
		if made != (i == 0) {
			t.Errorf("job %d: made the slot's network: %v", i, made)
		}
		svc, _ := h.f.Container(h.job().Key().ServiceName(0))
		if svc.Spec.NetworkMode != network || !slices.Contains(svc.Spec.NetworkAliases, "db") {
			t.Errorf("job %d: service on %s as %v, want on %s as db", i, svc.Spec.NetworkMode, svc.Spec.NetworkAliases, network)
		}
		if err := Cleanup(h.deps()); err != nil {
			t.Fatalf("job %d: Cleanup: %v", i, err)
		}
	}
	if nets, _ := first.f.List(context.Background(), map[string]string{naming.LabelManaged: "true"}); len(nets) != 1 || nets[0].Labels[naming.LabelKind] != string(naming.KindSlotNetwork) {
		t.Errorf("left after both jobs: %+v, want the slot's network only", nets)
	}
}
