package images

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/engine/fake"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/protocol"
)

func TestPullPolicies(t *testing.T) {
	all := []string{config.PullAlways, config.PullIfNotPresent, config.PullNever}
	tests := []struct {
		name             string
		job, admin, allo []string
		want             []string
		wantErr          string
	}{
		{"admin's when the job has none", nil, []string{"if-not-present"}, all, []string{"if-not-present"}, ""},
		{"job's overrides admin's", []string{"always"}, []string{"if-not-present"}, all, []string{"always"}, ""},
		{"job's list keeps its order", []string{"never", "always"}, []string{"if-not-present"}, all, []string{"never", "always"}, ""},
		{"limited to allowed", []string{"always", "if-not-present"}, []string{"never"}, []string{"if-not-present", "never"}, []string{"if-not-present"}, ""},
		{"admin's limited to allowed", nil, []string{"always", "never"}, []string{"never"}, []string{"never"}, ""},
		{"job asks for nothing allowed", []string{"always"}, []string{"if-not-present"}, []string{"if-not-present"}, nil,
			"pull policy [always] from image:pull_policy is not allowed; the runner allows [if-not-present] (docker.allowed_pull_policies)"},
		{"job asks for unknown policy", []string{"sometimes"}, []string{"if-not-present"}, all, nil,
			"pull policy [sometimes] from image:pull_policy is not allowed; the runner allows [always if-not-present never] (docker.allowed_pull_policies)"},
		{"admin's not allowed", nil, []string{"always"}, []string{"never"}, nil,
			"pull policy [always] from docker.pull_policy is not allowed; the runner allows [never] (docker.allowed_pull_policies)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Docker.PullPolicy, cfg.Docker.AllowedPullPolicies = tt.admin, tt.allo
			got, err := PullPolicies(tt.job, cfg)
			if tt.wantErr == "" {
				if err != nil || !slices.Equal(got, tt.want) {
					t.Fatalf("PullPolicies = %v, %v; want %v", got, err, tt.want)
				}
				return
			}
			var bf *protocol.BuildFailure
			if !errors.As(err, &bf) {
				t.Fatalf("error %v (%T) is not a *protocol.BuildFailure: the job's choice fails the job, not the runner", err, err)
			}
			if bf.Reason != tt.wantErr || bf.Code != 0 || got != nil {
				t.Errorf("PullPolicies = %v, %+v; want reason %q and no code", got, bf, tt.wantErr)
			}
		})
	}
}

// pullTest is a Puller over a fake with a recorded job log and backoff.
type pullTest struct {
	f       *fake.Engine
	p       Puller
	log     []string
	backoff []int
}

func newPullTest(attempts int) *pullTest {
	pt := &pullTest{f: fake.New()}
	pt.p = Puller{
		Engine:   pt.f,
		Attempts: attempts,
		Say:      func(format string, args ...any) { pt.log = append(pt.log, fmt.Sprintf(format, args...)) },
		Auth:     func(string) (*engine.RegistryAuth, error) { return nil, nil },
		Backoff:  func(n int) time.Duration { pt.backoff = append(pt.backoff, n); return 0 },
	}
	return pt
}

func TestPullerEnsure(t *testing.T) {
	const ref = "registry.example.com/app:1"
	boom := errors.New("boom")
	unreachable := fmt.Errorf("pulling image %s: %w: dial unix: no such file", ref, engine.ErrUnreachable)
	denied := fmt.Errorf("pulling image %s: %w: unauthorized", ref, engine.ErrDenied)
	missing := fmt.Errorf("pulling image %s: %w: manifest unknown", ref, engine.ErrNotFound)
	tests := []struct {
		name      string
		policies  []string
		present   bool
		failPulls int // how many pulls fail with boom (-1: all)
		failWith  error
		wantErr   string
		wantCalls []string
		wantOff   []int
		wantLog   []string
	}{
		{
			name: "never, missing", policies: []string{"never"},
			wantErr:   "image " + ref + " is not present locally and the pull policy is never: load it on the runner host or allow another pull policy",
			wantCalls: []string{"InspectImage"},
		},
		{
			name: "never, present", policies: []string{"never"}, present: true,
			wantCalls: []string{"InspectImage"},
			wantLog:   []string{"Using image " + ref + " (present locally, pull policy never)"},
		},
		{
			name: "if-not-present, present: no pull", policies: []string{"if-not-present"}, present: true,
			wantCalls: []string{"InspectImage"},
			wantLog:   []string{"Using image " + ref + " (present locally, pull policy if-not-present)"},
		},
		{
			name: "if-not-present, missing: pull", policies: []string{"if-not-present"},
			wantCalls: []string{"InspectImage", "PullImage"},
			wantLog:   []string{"Pulling image " + ref + " (attempt 1 of 3)", "  Status: Downloaded newer image for " + ref},
		},
		{
			name: "always pulls even when present", policies: []string{"always"}, present: true,
			wantCalls: []string{"PullImage"},
			wantLog:   []string{"Pulling image " + ref + " (attempt 1 of 3)", "  Status: Downloaded newer image for " + ref},
		},
		{
			name: "always retries with backoff", policies: []string{"always"}, failPulls: 2,
			wantCalls: []string{"PullImage", "PullImage", "PullImage"},
			wantOff:   []int{1, 2},
			wantLog: []string{
				"Pulling image " + ref + " (attempt 1 of 3)", "Pull failed: boom; retrying in 0s",
				"Pulling image " + ref + " (attempt 2 of 3)", "Pull failed: boom; retrying in 0s",
				"Pulling image " + ref + " (attempt 3 of 3)", "  Status: Downloaded newer image for " + ref,
			},
		},
		{
			name: "always gives up after the attempts", policies: []string{"always"}, failPulls: -1,
			wantErr:   "boom", // the engine, not the Puller, names the image
			wantCalls: []string{"PullImage", "PullImage", "PullImage"},
			wantOff:   []int{1, 2},
		},
		{
			name: "no retry when the engine is unreachable", policies: []string{"always"}, failPulls: -1, failWith: unreachable,
			wantErr:   unreachable.Error(),
			wantCalls: []string{"PullImage"},
		},
		{
			name: "no retry when the registry refuses the login", policies: []string{"always"}, failPulls: -1, failWith: denied,
			wantErr:   denied.Error(),
			wantCalls: []string{"PullImage"},
		},
		{
			name: "no retry when the image does not exist", policies: []string{"always"}, failPulls: -1, failWith: missing,
			wantErr:   missing.Error(),
			wantCalls: []string{"PullImage"},
		},
		{
			name: "always then if-not-present falls back to the local image", policies: []string{"always", "if-not-present"},
			present: true, failPulls: -1,
			wantCalls: []string{"PullImage", "PullImage", "PullImage", "InspectImage"},
			wantOff:   []int{1, 2},
			wantLog: []string{
				"Pulling image " + ref + " (attempt 1 of 3)", "Pull failed: boom; retrying in 0s",
				"Pulling image " + ref + " (attempt 2 of 3)", "Pull failed: boom; retrying in 0s",
				"Pulling image " + ref + " (attempt 3 of 3)",
				"Pull policy always failed: boom; trying if-not-present",
				"Using image " + ref + " (present locally, pull policy if-not-present)",
			},
		},
		{
			name: "fallback without a local image returns the last error", policies: []string{"always", "if-not-present"},
			failPulls: -1,
			wantErr:   "boom",
			wantCalls: []string{"PullImage", "PullImage", "PullImage", "InspectImage", "PullImage", "PullImage", "PullImage"},
			wantOff:   []int{1, 2, 1, 2},
		},
		{
			name: "if-not-present then never, missing: the never error", policies: []string{"if-not-present", "never"},
			failPulls: -1,
			wantErr:   "image " + ref + " is not present locally and the pull policy is never: load it on the runner host or allow another pull policy",
			wantCalls: []string{"InspectImage", "PullImage", "PullImage", "PullImage", "InspectImage"},
			wantOff:   []int{1, 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt := newPullTest(3)
			if tt.present {
				pt.f.AddImage(ref)
			}
			failWith := tt.failWith
			if failWith == nil {
				failWith = boom
			}
			failed := 0
			pt.f.SetHook(func(method, _ string) error {
				if method == fake.MethodPullImage && (tt.failPulls < 0 || failed < tt.failPulls) {
					failed++
					return failWith
				}
				return nil
			})
			_, err := pt.p.Ensure(context.Background(), ref, tt.policies)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
				t.Fatalf("ensure = %v, want %q", err, tt.wantErr)
			}
			if tt.failWith != nil && !errors.Is(err, tt.failWith) {
				t.Errorf("error %v does not wrap %v", err, tt.failWith)
			}
			if got := methods(pt.f, ""); !slices.Equal(got, tt.wantCalls) {
				t.Errorf("calls = %v, want %v", got, tt.wantCalls)
			}
			if !slices.Equal(pt.backoff, tt.wantOff) {
				t.Errorf("backoff calls = %v, want %v", pt.backoff, tt.wantOff)
			}
			if tt.wantLog != nil && !slices.Equal(pt.log, tt.wantLog) {
				t.Errorf("job log =\n%q\nwant\n%q", pt.log, tt.wantLog)
			}
		})
	}
}

func TestPullerStopsOnCancel(t *testing.T) {
	pt := newPullTest(3)
	pt.p.Backoff = func(int) time.Duration { return time.Hour }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pt.f.SetHook(func(method, _ string) error {
		cancel() // the job is cancelled while the pull fails
		return errors.New("boom")
	})
	_, err := pt.p.Ensure(ctx, "alpine", []string{"always", "if-not-present"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ensure = %v, want context.Canceled", err)
	}
	// Neither a retry nor the next policy after the cancel.
	if got := methods(pt.f, ""); !slices.Equal(got, []string{"PullImage"}) {
		t.Errorf("calls = %v", got)
	}
}

func TestPullerAuth(t *testing.T) {
	pt := newPullTest(3)
	login := &engine.RegistryAuth{Username: "u", Password: "p", Server: "registry.example.com"}
	pt.p.Auth = func(ref string) (*engine.RegistryAuth, error) {
		if ref == "registry.example.com/app" {
			return login, nil
		}
		return nil, errors.New("docker.registry[0].password_file: permission denied")
	}
	if _, err := pt.p.Ensure(context.Background(), "registry.example.com/app", []string{"always"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := pt.f.PullAuth("registry.example.com/app"); got != login {
		t.Errorf("pull used login %v, want %v", got, login)
	}
	_, err := pt.p.Ensure(context.Background(), "other.example.com/app", []string{"always"})
	if err == nil || err.Error() != "docker.registry[0].password_file: permission denied" {
		t.Errorf("ensure = %v, want the login error", err)
	}
	if _, pulled := pt.f.PullAuth("other.example.com/app"); pulled {
		t.Error("pulled without the login")
	}
}

func TestJitteredBackoff(t *testing.T) {
	for n := 1; n <= 5; n++ {
		base := time.Second << (n - 1)
		for range 200 {
			if d := JitteredBackoff(n); d < base/2 || d >= base*3/2 {
				t.Fatalf("JitteredBackoff(%d) = %s, want within [%s, %s)", n, d, base/2, base*3/2)
			}
		}
	}
}

func TestBuildImage(t *testing.T) {
	cfg := config.Default()
	cfg.Docker.DefaultImage = "debian:admin"
	tests := []struct {
		name, jobImage, envImage, want string
	}{
		{"job response wins", "golang:1.26", "ruby:3", "golang:1.26"},
		{"CI_JOB_IMAGE next", "", "ruby:3", "ruby:3"},
		{"blank job image is none", "  ", " ", "debian:admin"},
		{"admin default last", "", "", "debian:admin"},
		{"trimmed", " golang:1.26\n", "", "golang:1.26"},
	}
	for _, tt := range tests {
		j := job.Job{Image: job.Image{Name: tt.jobImage}}
		getenv := func(k string) string {
			if k == "CUSTOM_ENV_CI_JOB_IMAGE" {
				return tt.envImage
			}
			return ""
		}
		if got := Build(j, cfg, getenv); got != tt.want {
			t.Errorf("%s: Build = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestHelperImage(t *testing.T) {
	arch := goruntime.GOARCH
	if arch == "amd64" {
		arch = "x86_64"
	}
	official := "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper:" + arch + "-v19.4.0"
	tests := []struct {
		name, admin, version, want, wantErr string
	}{
		{"admin's image", "registry.example.com/helper:1", "19.4.0", "registry.example.com/helper:1", ""},
		{"admin's image without a runner version", "registry.example.com/helper:1", "", "registry.example.com/helper:1", ""},
		{"official for the runner version", "", "19.4.0", official, ""},
		{"version with a v", "", "v19.4.0", official, ""},
		{"no version, no admin image", "", "", "",
			"cannot choose the helper image: CUSTOM_ENV_CI_RUNNER_VERSION is not set; set docker.helper_image in the warmcache config"},
		{"a release candidate", "", "19.5.0-rc1", strings.TrimSuffix(official, "19.4.0") + "19.5.0-rc1", ""},
		{"a version that is not one", "", "19.4.0@sha256:evil", "",
			`cannot choose the helper image: runner version "19.4.0@sha256:evil" is not a version number; set docker.helper_image in the warmcache config`},
		{"a path in the version", "", "1.2.3/../../other", "",
			`cannot choose the helper image: runner version "1.2.3/../../other" is not a version number; set docker.helper_image in the warmcache config`},
	}
	for _, tt := range tests {
		cfg := config.Default()
		cfg.Docker.HelperImage = tt.admin
		got, err := Helper(job.Job{RunnerVersion: tt.version}, cfg)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("%s: error = %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: Helper = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
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
