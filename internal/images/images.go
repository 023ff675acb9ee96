// Package images decides which images a job runs (the build image, the
// helper image for the runner's version) and how they are fetched: pull
// policies as the job and the admin allow them, pulls retried with
// backoff, registry logins from the config.
package images

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	goruntime "runtime"
	"strings"
	"time"

	"github.com/warmcache/warmcache/internal/config"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/protocol"
)

// officialHelperRepo is GitLab's helper image, tagged <arch>-v<runner version>.
const officialHelperRepo = "registry.gitlab.com/gitlab-org/gitlab-runner/gitlab-runner-helper"

// runnerVersionRE is what may go into the official helper image's tag; the
// version comes from a variable the job could override.
var runnerVersionRE = regexp.MustCompile(`^v?\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?$`)

// Build picks the job image: the job response's, else the job's
// CI_JOB_IMAGE, else the admin's default.
func Build(j job.Job, cfg config.Config, getenv func(string) string) string {
	if name := strings.TrimSpace(j.Image.Name); name != "" {
		return name
	}
	if name := strings.TrimSpace(getenv(protocol.EnvJobImage)); name != "" {
		return name
	}
	return cfg.Docker.DefaultImage
}

// Helper picks the helper image: the admin's, else the official one
// for this runner's version and architecture.
func Helper(j job.Job, cfg config.Config) (string, error) {
	if cfg.Docker.HelperImage != "" {
		return cfg.Docker.HelperImage, nil
	}
	if j.RunnerVersion == "" {
		return "", errors.New("cannot choose the helper image: " + protocol.EnvRunnerVersion + " is not set; set docker.helper_image in the warmcache config")
	}
	if !runnerVersionRE.MatchString(j.RunnerVersion) {
		return "", fmt.Errorf("cannot choose the helper image: runner version %q is not a version number; set docker.helper_image in the warmcache config", j.RunnerVersion)
	}
	arch := goruntime.GOARCH
	if arch == "amd64" {
		arch = "x86_64"
	}
	return fmt.Sprintf("%s:%s-v%s", officialHelperRepo, arch, strings.TrimPrefix(j.RunnerVersion, "v")), nil
}

// PullPolicies returns the policies to try for the job image: the job's
// list if it has one, else the admin's, limited to what the admin allows.
// An empty result is the job's configuration error, not the system's.
func PullPolicies(jobPolicies []string, cfg config.Config) ([]string, error) {
	want := cfg.Docker.PullPolicy
	source := "docker.pull_policy"
	if len(jobPolicies) > 0 {
		want, source = jobPolicies, "image:pull_policy"
	}
	got := config.Intersect(want, cfg.Docker.AllowedPullPolicies)
	if len(got) == 0 {
		return nil, &protocol.BuildFailure{Reason: fmt.Sprintf("pull policy %v from %s is not allowed; the runner allows %v (docker.allowed_pull_policies)",
			want, source, cfg.Docker.AllowedPullPolicies)}
	}
	return got, nil
}

// Source is how ensureImage reaches an image.
type Source interface {
	InspectImage(ctx context.Context, ref string) (engine.ImageInfo, error)
	PullImage(ctx context.Context, ref string, auth *engine.RegistryAuth, status func(string)) error
}

// Puller makes images available under a list of pull policies.
type Puller struct {
	Engine   Source
	Attempts int
	Say      func(format string, args ...any)
	Auth     func(ref string) (*engine.RegistryAuth, error)
	// Backoff returns how long to wait before retry n (1-based).
	Backoff func(n int) time.Duration
}

// Ensure tries each policy in order until one yields the image, as the
// Docker executor does; the last policy's error is returned. It returns
// the image's description when it found the image present, nil after a
// pull (which does not describe it), so callers inspect only then.
func (p Puller) Ensure(ctx context.Context, ref string, policies []string) (*engine.ImageInfo, error) {
	if len(policies) == 0 {
		return nil, fmt.Errorf("no allowed pull policy for image %s", ref)
	}
	var err error
	for i, policy := range policies {
		var info *engine.ImageInfo
		if info, err = p.try(ctx, ref, policy); err == nil || ctx.Err() != nil {
			return info, err
		}
		if i+1 < len(policies) {
			p.Say("Pull policy %s failed: %v; trying %s", policy, err, policies[i+1])
		}
	}
	return nil, err
}

func (p Puller) try(ctx context.Context, ref, policy string) (*engine.ImageInfo, error) {
	if policy != config.PullAlways {
		info, err := p.Engine.InspectImage(ctx, ref)
		if err != nil && !errors.Is(err, engine.ErrNotFound) {
			return nil, err
		}
		if err == nil {
			p.Say("Using image %s (present locally, pull policy %s)", ref, policy)
			return &info, nil
		}
		if policy == config.PullNever {
			return nil, fmt.Errorf("image %s is not present locally and the pull policy is never: load it on the runner host or allow another pull policy", ref)
		}
	}
	return nil, p.pull(ctx, ref)
}

// pull retries a failing pull with exponential backoff and jitter.
func (p Puller) pull(ctx context.Context, ref string) error {
	auth, err := p.Auth(ref)
	if err != nil {
		return err
	}
	var last error
	for n := 1; n <= p.Attempts; n++ {
		p.Say("Pulling image %s (attempt %d of %d)", ref, n, p.Attempts)
		last = p.Engine.PullImage(ctx, ref, auth, func(line string) { p.Say("  %s", line) })
		if last == nil {
			return nil
		}
		if n == p.Attempts || !retryable(last) {
			break
		}
		wait := p.Backoff(n)
		p.Say("Pull failed: %v; retrying in %s", last, wait.Round(time.Millisecond))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return last
}

// retryable says whether another pull attempt could succeed: not when the
// engine is gone, the image does not exist or the login is refused.
func retryable(err error) bool {
	return !errors.Is(err, engine.ErrUnreachable) && !errors.Is(err, engine.ErrNotFound) && !errors.Is(err, engine.ErrDenied)
}

// JitteredBackoff waits about 1s, 2s, 4s... each scaled by 0.5-1.5 so
// runners that failed together do not retry together.
func JitteredBackoff(n int) time.Duration {
	base := time.Second << (n - 1)
	return time.Duration(float64(base) * (0.5 + rand.Float64()))
}

// canonicalRegistry spells Docker Hub one way, whatever alias names it.
func canonicalRegistry(host string) string {
	if host == "index.docker.io" || host == "registry-1.docker.io" {
		return "docker.io"
	}
	return host
}
