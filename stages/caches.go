package stages

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/cachevol"
	"github.com/warmcache/warmcache/job"
	"github.com/warmcache/warmcache/naming"
	"github.com/warmcache/warmcache/runtime"
)

// jobCaches is what the job containers get from the cache volumes.
type jobCaches struct {
	mounts []runtime.Mount
	env    []string
}

// plannedCaches lists the persistent cache volumes of the job; the same
// list in prepare and cleanup, since it depends only on the job and config.
func plannedCaches(d Deps, j job.Job) ([]cachevol.Volume, []cachevol.Profile, error) {
	profiles, err := cachevol.Profiles(d.Config.Cache)
	if err != nil {
		return nil, nil, err
	}
	return cachevol.Plan(cachevol.KeyFor(j), profiles), profiles, nil
}

// claimCaches creates or reuses the job's cache volumes and says in the job
// log how warm each one is. nonRoot moves caches out of /root for jobs
// that run as another user. With caches off, cache_dir is a volume of the
// job's own, removed at cleanup.
func claimCaches(ctx context.Context, d Deps, j job.Job, nonRoot bool) (jobCaches, error) {
	vols, profiles, err := plannedCaches(d, j)
	if err != nil {
		return jobCaches{}, err
	}
	if len(vols) == 0 {
		key := j.Key()
		name := key.Name("cachedir")
		meta := naming.JobMeta{PipelineID: j.PipelineID, RunnerID: j.RunnerID, TimeoutSeconds: j.Timeout, Created: time.Now()}
		if err := d.Engine.EnsureVolume(ctx, runtime.VolumeSpec{Name: name, Labels: key.Labels("cachedir", meta)}); err != nil {
			return jobCaches{}, err
		}
		return jobCaches{mounts: []runtime.Mount{{Volume: name, Target: CacheDir}}}, nil
	}
	now := time.Now()
	statuses, err := cachevol.Claim(ctx, d.Engine, vols, j.ID, now)
	if err != nil {
		return jobCaches{}, fmt.Errorf("claiming cache volumes: %w", err)
	}
	var c jobCaches
	for _, st := range statuses {
		d.say("%s", cachevol.Describe(st, now))
		if st.StampErr != nil {
			d.Log.Warn("cache stamp not updated", zap.String("volume", st.Name), zap.Error(st.StampErr))
		}
		c.mounts = append(c.mounts, runtime.Mount{Volume: st.Name, Target: cachevol.Target(st.Path, nonRoot), NoCopy: true})
	}
	c.env = cachevol.Env(profiles, nonRoot)
	return c, nil
}
