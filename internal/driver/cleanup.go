package driver

import (
	"context"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/warmcache/warmcache/internal/engine"
	"github.com/warmcache/warmcache/internal/job"
	"github.com/warmcache/warmcache/internal/naming"
	"github.com/warmcache/warmcache/internal/reap"
)

// Cleanup removes every container, volume and network of the job except
// persistent caches, and its cgroup. It runs on its own bounded context
// (the runner calls it after a cancel too), succeeds when there is
// nothing to remove, and reports everything it could not remove.
//
// What must be done before the stage returns is done in it: the commit
// of a cache's writes (which removes the job's containers first, to
// commit their layers), and the release of a kept fork layer (see
// removeLater). The removal of the rest is handed to a detached process
// (see removeJob).
func Cleanup(d Deps) error {
	ctx, cancel := context.WithTimeout(context.Background(), d.Config.Docker.CleanupTimeout)
	defer cancel()
	j, err := job.Load(d.Getenv)
	if err != nil {
		return err
	}
	start := time.Now()
	d.Caches.Commit(ctx, j, stepStages(j.Steps), func(ctx context.Context) error {
		return removeJobContainers(ctx, d.Engine, j.Key())
	})
	err = removeJob(ctx, d, j.Key())
	removed := time.Since(start)
	// Sizes are measured once the job is done, off the job's critical path.
	d.Caches.Measure(ctx, j)
	d.Caches.GCAtStage(ctx, nil)
	d.Log.Debug("cleanup timings", zap.Duration("remove", removed), zap.Duration("total", time.Since(start)))
	if err != nil {
		return fmt.Errorf("cleanup incomplete: %w", err)
	}
	return nil
}

// removeJob removes the job's resources and cgroup. Their removal takes
// longer than anything else in cleanup (a container with a network
// endpoint about 0.1 s, a network more), and nothing needs to wait for it:
// the job's containers get names that say the job ended (see
// reap.EndContainers), and a detached process removes them, then the rest.
// If that process cannot start, everything is removed at once; if it
// fails, the reaper removes what it left.
func removeJob(ctx context.Context, d Deps, key naming.JobKey) error {
	if d.Detached != nil {
		err := removeLater(ctx, d, key)
		if err == nil {
			return nil
		}
		d.Log.Warn("removing the job's resources in the background", zap.Error(err))
	}
	if err := reap.RemoveJob(ctx, d.Engine, key); err != nil {
		return err
	}
	// The cgroup can only go once its containers have.
	return removeCgroup(d, key.Base())
}

// removeLater hands the removal of the job's resources to the detached
// process, with the containers renamed. A fork over a kept layer goes
// first, in the stage, with the containers that mount it: the layer is
// another job's to use only once no fork stands on it (see
// cache.keptLayerFork), and the project's next job, which may well come
// at once, should find it free.
func removeLater(ctx context.Context, d Deps, key naming.JobKey) error {
	rs, err := reap.JobResources(ctx, d.Engine, key)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(rs, holdsKeptLayer) {
		now := slices.DeleteFunc(slices.Clone(rs), func(r engine.Resource) bool { return r.Type != engine.Container && !holdsKeptLayer(r) })
		if err := reap.RemoveAll(ctx, d.Engine, now); err != nil {
			return fmt.Errorf("releasing a kept fork layer: %w", err)
		}
		rs = slices.DeleteFunc(rs, func(r engine.Resource) bool { return r.Type == engine.Container || holdsKeptLayer(r) })
	}
	if len(rs) == 0 { // a second cleanup, or one after a prepare that made nothing
		return removeCgroup(d, key.Base())
	}
	if rs, err = reap.EndContainers(ctx, d.Engine, rs); err != nil {
		return err
	}
	return d.Detached.RemoveJob(key.Base(), rs)
}

// holdsKeptLayer says whether r is a fork volume over a kept layer.
func holdsKeptLayer(r engine.Resource) bool {
	return r.Type == engine.Volume && r.Labels[naming.LabelKind] == string(naming.KindFork) && r.Labels[naming.LabelForkLayer] != ""
}

// removeJobContainers removes the job's containers (which unmounts its
// volumes), and nothing else.
func removeJobContainers(ctx context.Context, e reap.Engine, key naming.JobKey) error {
	rs, err := e.List(ctx, map[string]string{naming.LabelJob: key.Base()})
	if err != nil {
		return fmt.Errorf("listing the job's containers: %w", err)
	}
	rs = slices.DeleteFunc(rs, func(r engine.Resource) bool { return r.Type != engine.Container })
	return reap.RemoveAll(ctx, e, rs)
}
