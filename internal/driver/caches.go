package driver

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/cache"
	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/reap"
)

// jobCaches is what the job containers get from the cache volumes.
type jobCaches struct {
	mounts []engine.Mount
	env    []string
	// persistent names the claimed cache volumes.
	persistent []string
	// sizes are the sizes at the start of the volumes the job writes to.
	sizes []startSize
}

// plannedCaches lists the persistent cache volumes of the job; the same
// list in prepare and cleanup, since it depends only on the job and config.
func plannedCaches(d Deps, j job.Job) ([]cache.Volume, []cache.Profile, error) {
	profiles, err := cache.Profiles(d.Config.Cache)
	if err != nil {
		return nil, nil, err
	}
	named := profiles
	if d.Config.Cache.CommitOnSuccess {
		named = cache.SharedProfiles(profiles)
	}
	return cache.Plan(cacheKey(d, j), named), profiles, nil
}

// cacheKey is the job's cache key in the configured pool.
func cacheKey(d Deps, j job.Job) cache.Key {
	key := cache.KeyFor(j)
	key.Pool = d.Config.Cache.Pool
	return key
}

// cacheRecords is where the driver keeps its own record of each cache.
func cacheRecords(d Deps) *cache.Records {
	return &cache.Records{Dir: filepath.Join(d.Config.Cache.StateDir, "caches")}
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
		meta := jobMeta(j, time.Now())
		if err := d.Engine.EnsureVolume(ctx, engine.VolumeSpec{Name: name, Labels: key.Labels("cachedir", meta)}); err != nil {
			return jobCaches{}, err
		}
		return jobCaches{mounts: []engine.Mount{{Volume: name, Target: CacheDir}}}, nil
	}
	now := time.Now()
	commits := commitProfiles(d, profiles)
	forks := findForks(ctx, d, j, profiles, commits, now)
	var plain []cache.Volume
	for i, v := range vols {
		if forks == nil || forks[i] == nil {
			plain = append(plain, v)
		}
	}
	statuses, err := cache.Claim(ctx, d.Engine, cacheRecords(d), plain, j.ID, now)
	if err != nil {
		return jobCaches{}, fmt.Errorf("claiming cache volumes: %w", err)
	}
	var c jobCaches
	var uses []cache.Status
	var sizes []startSize
	for i, v := range vols {
		if forks != nil && forks[i] != nil {
			f, err := makeFork(ctx, d, j, i, *forks[i], now)
			if err != nil {
				return jobCaches{}, fmt.Errorf("forking the protected cache of %s: %w", v.Path, err)
			}
			d.say("%s", f.line)
			c.mounts = append(c.mounts, engine.Mount{Volume: f.volume, Target: cache.Target(v.Path, nonRoot), NoCopy: true})
			uses, sizes = append(uses, f.lower), append(sizes, f.size)
			continue
		}
		st := statuses[0]
		statuses = statuses[1:]
		d.say("%s", cache.Describe(st, now))
		if st.StampErr != nil {
			d.Log.Warn("cache stamp not updated", zap.String("volume", st.Name), zap.Error(st.StampErr))
		}
		if st.RecordErr != nil {
			d.Log.Warn("cache claim not recorded: no lease against the GC", zap.String("volume", st.Name), zap.Error(st.RecordErr))
		}
		mount, size := st.Name, sizeAtStart(st)
		if commits[v.Profile] {
			if mount, size, err = makeCommitLayer(ctx, d, j, i, st, now); err != nil {
				return jobCaches{}, fmt.Errorf("layer over the cache of %s: %w", v.Path, err)
			}
			d.say("Cache %s %s: the job writes to a layer of its own, applied to the cache only if its steps succeed", v.Profile, v.Path)
		}
		c.mounts = append(c.mounts, engine.Mount{Volume: mount, Target: cache.Target(st.Path, nonRoot), NoCopy: true})
		c.persistent = append(c.persistent, st.Name)
		uses, sizes = append(uses, st), append(sizes, size)
	}
	recordClaims(d, uses)
	c.sizes = sizes
	c.env = cache.Env(profiles, nonRoot)
	return c, nil
}

// verifyCaches checks, once the job's containers hold them, that the cache
// volumes are still warmcache's. One removed between the claim and the
// creation of the containers (by hand, or by a GC that ignored the lease)
// was re-created empty and unlabelled by the engine, out of reach of every
// later job: such a volume is removed with the job's containers, and the
// prepare fails as a system failure, which the runner retries.
func verifyCaches(ctx context.Context, d Deps, key naming.JobKey, c jobCaches) error {
	for _, name := range c.persistent {
		info, err := d.Engine.InspectVolume(ctx, name)
		if err != nil {
			return fmt.Errorf("checking cache volume %s: %w", name, err)
		}
		if info.Labels[naming.LabelKind] == string(naming.KindCache) {
			continue
		}
		rerr := reap.RemoveJob(ctx, d.Engine, key)
		if rerr == nil {
			rerr = d.Engine.Remove(ctx, engine.Resource{Type: engine.Volume, Name: name})
		}
		if rerr != nil {
			d.Log.Warn("removing an unlabelled cache volume", zap.String("volume", name), zap.Error(rerr))
		}
		return fmt.Errorf("cache volume %s was removed while the job was being prepared; the job can be retried", name)
	}
	return nil
}
