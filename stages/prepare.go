package stages

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/job"
	"github.com/warmcache/warmcache/naming"
	"github.com/warmcache/warmcache/runtime"
)

// Prepare pulls the images and starts the job's helper and build
// containers, which then live until cleanup; each run stage execs its
// script in one of them.
//
// Image entrypoints: each container starts once with its image entrypoint
// (or the job's image:entrypoint) and a keep-alive shell as its command, so
// an entrypoint that sets things up and then execs its arguments works as
// under the Docker executor; what it exports is not seen by the stage
// scripts, which run through exec.
func Prepare(ctx context.Context, d Deps) error {
	start := time.Now()
	j, err := job.Load(d.Getenv)
	if err != nil {
		return err
	}
	key := j.Key()
	d.Log.Info("prepare", zap.String("job", key.Base()), zap.Int64("project_id", j.ProjectID))

	image := buildImage(j, d.Config, d.Getenv)
	helper, err := helperImage(j, d.Config)
	if err != nil {
		return err
	}
	policies, err := pullPolicies(j.Image.PullPolicy, d.Config)
	if err != nil {
		return err
	}
	d.say("Preparing job %d of %s on warmcache (image %s)", j.ID, j.ProjectPath, image)

	// A leftover of an earlier attempt whose cleanup failed would make
	// every create below conflict.
	if err := removeJobResources(ctx, d.Engine, key); err != nil {
		return fmt.Errorf("removing leftovers of an earlier attempt: %w", err)
	}

	p := puller{engine: d.Engine, attempts: d.Config.Docker.PullAttempts, say: d.say,
		auth: registryAuth(j, d.Config), backoff: jitteredBackoff}
	if err := p.ensure(ctx, image, policies); err != nil {
		return err
	}
	if helper != image {
		if err := p.ensure(ctx, helper, d.Config.Docker.PullPolicy); err != nil {
			return fmt.Errorf("helper image: %w", err)
		}
	}

	meta := naming.JobMeta{PipelineID: j.PipelineID, RunnerID: j.RunnerID, TimeoutSeconds: j.Timeout, Created: time.Now()}
	builds := key.Name(naming.KindBuilds)
	if err := d.Engine.EnsureVolume(ctx, runtime.VolumeSpec{Name: builds, Labels: key.Labels(naming.KindBuilds, meta)}); err != nil {
		return err
	}
	caches, err := claimCaches(ctx, d, j)
	if err != nil {
		return err
	}
	buildMounts := []runtime.Mount{{Volume: builds, Target: BuildsDir}}
	helperMounts := []runtime.Mount{{Volume: builds, Target: BuildsDir}}
	for _, c := range caches.mounts {
		buildMounts = append(buildMounts, c)
		if c.Target == CacheDir {
			helperMounts = append(helperMounts, c)
		}
	}

	specs := []runtime.ContainerSpec{
		{
			Name: key.Name(naming.KindHelper), Image: helper, Cmd: keepAlive,
			Labels: key.Labels(naming.KindHelper, meta), Mounts: helperMounts,
			NetworkMode: d.Config.Docker.NetworkMode, KeepStdinOpen: true,
		},
		{
			Name: key.Name(naming.KindBuild), Image: image, Cmd: keepAlive,
			Entrypoint: j.Image.Entrypoint, Labels: key.Labels(naming.KindBuild, meta),
			Env: caches.env, Mounts: buildMounts, NetworkMode: d.Config.Docker.NetworkMode, KeepStdinOpen: true,
		},
	}
	if err := inParallel(specs, func(s runtime.ContainerSpec) error {
		if err := d.Engine.CreateContainer(ctx, s); err != nil {
			return err
		}
		return d.Engine.StartContainer(ctx, s.Name)
	}); err != nil {
		return err
	}
	d.say("Job containers ready in %.1fs", time.Since(start).Seconds())
	return nil
}

// inParallel runs f on every item at once and joins the errors.
func inParallel[T any](items []T, f func(T) error) error {
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	for i, it := range items {
		wg.Go(func() { errs[i] = f(it) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
