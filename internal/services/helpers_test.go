package services

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
)

// sampleJob is the job response a real gitlab-runner 19.4 wrote (project
// 1001, job 22961).
const sampleJob = "../job/testdata/job_response.json"

// sampleKey is the JobKey of sampleJob under the runner's variables that
// sample sets.
var sampleKey = naming.JobKey{Runner: "t3st", Instance: "127.0.0.1:42891", ProjectID: 1001, Slot: 2, JobID: 22961}

// sampleMeta is what the labels of the sample job's resources carry.
var sampleMeta = naming.JobMeta{PipelineID: 1461, RunnerID: "12", TimeoutSeconds: 3600, Created: time.Now()}

const testHelperImage = "registry.example.com/gitlab-runner-helper:test"

// sample returns sampleJob with the runner sample's two services,
// postgres:16 (alias db, POSTGRES_PASSWORD=pw) and redis:7, changed by
// edit (nil for none), loaded as a stage loads it. env adds to the
// runner's variables.
func sample(t *testing.T, edit func(j map[string]any), env map[string]string) job.Job {
	t.Helper()
	data, err := os.ReadFile(sampleJob)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	m["services"] = []any{
		map[string]any{"name": "postgres:16", "alias": "db", "variables": []any{
			map[string]any{"key": "POSTGRES_PASSWORD", "value": "pw", "public": true},
			map[string]any{"key": "DB_URL", "value": "postgres://$CI_PROJECT_PATH/$SECRET_TOKEN", "public": true},
		}},
		map[string]any{"name": "redis:7"},
	}
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
	vars := map[string]string{
		"JOB_RESPONSE_FILE":                path,
		"CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN": "t3st",
		"CUSTOM_ENV_CI_RUNNER_ID":          "12",
		"CUSTOM_ENV_CI_RUNNER_VERSION":     "19.4.0",
		"CUSTOM_ENV_CI_CONCURRENT_ID":      "2",
	}
	for k, v := range env {
		vars[k] = v
	}
	j, err := job.Load(func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// harness is the services of one job over a fake engine.
type harness struct {
	f   *fake.Engine
	cfg config.Config
	mu  sync.Mutex // the services are waited for at once
	log strings.Builder
}

// newHarness returns a harness with the default config.
func newHarness() *harness {
	return &harness{f: fake.New(), cfg: config.Default()}
}

// deps returns the services' dependencies; read them afresh after
// changing h.cfg.
func (h *harness) deps() Deps {
	return Deps{
		Engine:   h.f,
		Docker:   h.cfg.Docker,
		Services: h.cfg.Services,
		Say: func(format string, args ...any) {
			h.mu.Lock()
			defer h.mu.Unlock()
			fmt.Fprintf(&h.log, format+"\n", args...)
		},
		Log: zap.NewNop(),
	}
}

// jobLog returns what was written to the job log so far.
func (h *harness) jobLog() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.log.String()
}

// jobLogLines returns the job-log lines written so far.
func (h *harness) jobLogLines() []string {
	s := strings.TrimSuffix(h.jobLog(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// allowed is the pull policies of a runner that allows every one.
func allowed(jobPolicies []string) ([]string, error) {
	if len(jobPolicies) == 0 {
		return []string{"if-not-present"}, nil
	}
	return jobPolicies, nil
}

// start does what prepare does before the wait: it plans the services of
// j, makes the job's network, and starts the helper container and the
// services on it. The services' images are present, with the ports
// ports gives them.
func (h *harness) start(t *testing.T, j job.Job, ports map[string][]engine.Port) (helper string, svcs []Service, specs []engine.ContainerSpec) {
	t.Helper()
	ctx := context.Background()
	d := h.deps()
	svcs, err := Plan(d, j, allowed)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	for i, s := range svcs {
		h.f.AddImage(s.Image.Name)
		svcs[i].Info = &engine.ImageInfo{ExposedPorts: ports[s.Image.Name]}
	}
	network, err := MakeNetwork(ctx, d, Networks{Own: ownNetwork()}).Name()
	if err != nil {
		t.Fatalf("MakeNetwork: %v", err)
	}
	helper = sampleKey.Name(naming.KindHelper)
	h.f.AddImage(testHelperImage)
	if err := h.f.CreateContainer(ctx, engine.ContainerSpec{Name: helper, Image: testHelperImage, NetworkMode: network}); err != nil {
		t.Fatal(err)
	}
	if err := h.f.StartContainer(ctx, helper); err != nil {
		t.Fatal(err)
	}
	specs = Specs(d, sampleKey, j, svcs, network, sampleMeta)
	if err := Start(ctx, h.f, specs); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return helper, svcs, specs
}

// methods returns the method names of the fake's calls, optionally only
// those about name.
func methods(f *fake.Engine, name string) []string {
	var out []string
	for _, c := range f.Calls() {
		if name == "" || c.Name == name {
			out = append(out, c.Method)
		}
	}
	return out
}

// ownNetwork is the sample job's own network.
func ownNetwork() engine.NetworkSpec {
	return engine.NetworkSpec{Name: sampleKey.Name(naming.KindNetwork), Labels: sampleKey.Labels(naming.KindNetwork, sampleMeta)}
}

// slotNetwork is the sample job's slot network.
func slotNetwork() *engine.NetworkSpec {
	return &engine.NetworkSpec{Name: naming.SlotNetwork("runner", "7", sampleKey.Slot, "opts"),
		Labels: naming.SlotNetworkLabels("7", sampleKey.Slot, "opts", sampleMeta.Created)}
}
