package driver

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/cache/record"
	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/host"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
)

// sampleJob is the job response a real gitlab-runner 19.4 wrote (image
// golang:1.26 with entrypoint [""], project 1001, job 22961).
const sampleJob = "../job/testdata/job_response.json"

// sampleKey is the JobKey of sampleJob under sampleEnv.
var sampleKey = naming.JobKey{Runner: "t3st", Instance: "127.0.0.1:42891", ProjectID: 1001, Slot: 2, JobID: 22961}

const testHelperImage = "registry.example.com/gitlab-runner-helper:test"

// harness is one job's driver environment over a fake engine.
type harness struct {
	f              *fake.Engine
	env            map[string]string
	stdout, stderr *bytes.Buffer
	cfg            config.Config
}

// newHarness returns a harness for sampleJob without its services
// (services_test.go covers them), changed by edit (nil for none), with the
// default config except a fixed helper image, caches, reaping and
// job-token credentials off.
func newHarness(t *testing.T, edit func(job map[string]any)) *harness {
	t.Helper()
	cfg := config.Default()
	cfg.Cache.StateDir = t.TempDir() // never the host's own records
	cfg.Docker.HelperImage = testHelperImage
	cfg.Cache.Enabled = false
	cfg.Reap.AtPrepare = false // reap_test.go covers it; it would interleave calls
	cfg.Env.JobToken = false   // credentials_test.go covers it; it adds an exec
	return &harness{
		f: fake.New(),
		env: map[string]string{
			"JOB_RESPONSE_FILE": writeJob(t, func(j map[string]any) {
				j["services"] = []any{}
				if edit != nil {
					edit(j)
				}
			}),
			"CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN": "t3st",
			"CUSTOM_ENV_CI_RUNNER_ID":          "12",
			"CUSTOM_ENV_CI_RUNNER_VERSION":     "19.4.0",
			"CUSTOM_ENV_CI_CONCURRENT_ID":      "2",
		},
		stdout: &bytes.Buffer{},
		stderr: &bytes.Buffer{},
		cfg:    cfg,
	}
}

// deps returns the stage dependencies; read them afresh after changing
// h.cfg or h.env.
// Its Host reaches the fake's volume directories when the test gave it
// a volume root, and finds none otherwise (as beside a remote engine).
func (h *harness) deps() Deps {
	hst := host.New(h.f, nil)
	return Deps{
		Config: h.cfg,
		Engine: h.f,
		Getenv: func(k string) string { return h.env[k] },
		Stdout: h.stdout,
		Stderr: h.stderr,
		Log:    zap.NewNop(),
		Host:   hst,
		Caches: cache.New(h.cfg.Cache, h.f, hst, zap.NewNop()),
	}
}

// stderrLines returns the job-log lines written so far.
func (h *harness) stderrLines() []string {
	s := strings.TrimSuffix(h.stderr.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// writeJob writes sampleJob, changed by edit, to a temp file.
func writeJob(t *testing.T, edit func(job map[string]any)) string {
	t.Helper()
	data, err := os.ReadFile(sampleJob)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		if data, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "response.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeFile writes content to a new file in a temp dir.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
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

// cacheRecords are the cache manager's records under the harness config.
func cacheRecords(d Deps) *record.Records {
	return &record.Records{Dir: filepath.Join(d.Config.Cache.StateDir, "caches")}
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

// job is the harness's job, as the stages load it.
func (h *harness) job() job.Job {
	j, err := job.Load(func(k string) string { return h.env[k] })
	if err != nil {
		panic(err)
	}
	return j
}
